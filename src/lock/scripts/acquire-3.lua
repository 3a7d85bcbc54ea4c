--[[
  Takes a lock, unless the work it guards is done already.

  Input:
    KEYS[1] the lock (mp:lock:<key>): the holder's token, with a PX expiry
    KEYS[2] the fence (mp:fence:<key>): the last fencing token issued for the key
    KEYS[3] a processed marker ('' = none): when it exists, nothing is locked
    ARGV[1] the token of the new holder
    ARGV[2] the lease (ms)
    ARGV[3] the fence's expiry (ms)

  Output:
    {1, fence}  acquired; fence: the fencing token minted for this holder
    {0, pttl}   held by another token for pttl more ms
    {2, 0}      the marker exists: nothing locked
]]
-- @include next-fence
if KEYS[3] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  return {2, 0}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, nextFence(KEYS[2], ARGV[3])}
end
return {0, redis.call('PTTL', KEYS[1])}
