--[[
  Extends a lock held by the given token.

  Input:
    KEYS[1] the lock (mp:lock:<key>)
    ARGV[1] the holder's token
    ARGV[2] the new lease (ms from now)

  Output:
    1 extended, 0 no lock at all (expired), -1 held by another token
]]
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return -1 end
return 0
