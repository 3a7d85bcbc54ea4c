--[[
  Redlock only: raises the fence of a server that granted the lock to the fencing token chosen
  for the quorum (the highest one granted), while the lock is still ours. The next holder's
  quorum shares at least one server with ours, so its token is then higher than ours.

  Input:
    KEYS[1] the lock (mp:lock:<key>)
    KEYS[2] the fence (mp:fence:<key>)
    ARGV[1] the holder's token
    ARGV[2] the fencing token to raise the fence to
    ARGV[3] the fence's expiry (ms)

  Output:
    1 raised (or already higher), 0 the lock is no longer ours
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
return 1
