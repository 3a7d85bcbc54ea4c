--[[
  Releases a lock held by the given token.

  Input:
    KEYS[1] the lock (mp:lock:<key>)
    ARGV[1] the holder's token

  Output:
    1 released, 0 no lock at all (expired), -1 held by another token (left alone)
]]
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
if holder then return -1 end
return 0
