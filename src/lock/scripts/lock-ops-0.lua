--[[
  The lock operations one process asked of this server in one turn of its event loop, run in the
  order they were asked, in one call: a service with a hundred messages in flight sends one
  script per turn instead of one per operation (on a Redlock quorum, three servers each).

  Each operation is an op code in ARGV followed by its arguments, and its keys in KEYS, in order:

    'a' acquire: takes a lock, unless the work it guards is done already
        KEYS  the lock (mp:lock:<key>), the fence (mp:fence:<key>), a processed marker ('' or
              '!…' = none: see given)
        ARGV  the token of the new holder, the lease (ms), the fence's expiry (ms), the fencing
              token proposed ('' = none; see next-fence)
        reply an integer (not an array: a hundred of them decode as one flat list)
              fence ≥ 1   acquired; the fencing token minted for this holder
              -1 - pttl   held by another token for pttl more ms
              0           the marker exists: nothing locked
    'h' home record (Redlock): a quorum holder's lock recorded on the service's own Redis, where
        `redis-commit` handlers' commits take and check the key's lock; unless the work it
        guards is done already. No token is minted here: the quorum mints it.
        KEYS  the lock (mp:lock:<key>), the fence (mp:fence:<key>), a processed marker ('' or
              '!…' = none)
        ARGV  the token of the new holder, the lease (ms)
        reply an integer
              ≥ 1         recorded; 1 + the fence's value (1 without one): the holder's fencing
                          token must be at least the fence for its commit here to be accepted
              -1 - pttl   held by another token for pttl more ms
              0           the marker exists: nothing recorded
    'e' extend: a lock held by the token gets a new lease
        KEYS  the lock
        ARGV  the holder's token, the new lease (ms from now)
        reply 1 extended, 0 no lock at all (expired), -1 held by another token
    'r' release: a lock held by the token is deleted
        KEYS  the lock
        ARGV  the holder's token
        reply 1 released, 0 no lock at all (expired), -1 held by another token (left alone)
    'f' raise fence (Redlock): this server's fence goes up to the fencing token chosen for the
        quorum (the highest one granted) while the lock is still ours, so that the next holder's
        quorum, which shares at least one server with ours, mints a higher one
        KEYS  the lock, the fence
        ARGV  the holder's token, the fencing token, the fence's expiry (ms)
        reply 1 raised (or already higher), 0 the lock is no longer ours

  Output: one reply per operation, in order.
]]
-- @include next-fence
-- @include given
local out = {}
local k, a = 1, 1
while a <= #ARGV do
  local op = ARGV[a]
  if op == 'a' then
    local lock, fence, marker = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    if given(marker) and redis.call('EXISTS', marker) == 1 then
      out[#out + 1] = 0
    elseif redis.call('SET', lock, ARGV[a + 1], 'NX', 'PX', ARGV[a + 2]) then
      -- tokens stay below 2^53: exact as a Lua number and as the integer Redis replies
      out[#out + 1] = tonumber(nextFence(fence, ARGV[a + 3], ARGV[a + 4]))
    else
      out[#out + 1] = -1 - math.max(redis.call('PTTL', lock), 0)
    end
    k, a = k + 3, a + 5
  elseif op == 'h' then
    local lock, fence, marker = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    if given(marker) and redis.call('EXISTS', marker) == 1 then
      out[#out + 1] = 0
    elseif redis.call('SET', lock, ARGV[a + 1], 'NX', 'PX', ARGV[a + 2]) then
      out[#out + 1] = 1 + (tonumber(redis.call('GET', fence)) or 0)
    else
      out[#out + 1] = -1 - math.max(redis.call('PTTL', lock), 0)
    end
    k, a = k + 3, a + 3
  elseif op == 'e' or op == 'r' then
    local holder = redis.call('GET', KEYS[k])
    if holder == ARGV[a + 1] then
      if op == 'e' then
        redis.call('PEXPIRE', KEYS[k], ARGV[a + 2])
      else
        redis.call('DEL', KEYS[k])
      end
      out[#out + 1] = 1
    elseif holder then
      out[#out + 1] = -1
    else
      out[#out + 1] = 0
    end
    k, a = k + 1, a + (op == 'e' and 3 or 2)
  elseif op == 'f' then
    if redis.call('GET', KEYS[k]) ~= ARGV[a + 1] then
      out[#out + 1] = 0
    else
      local last = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
      if last < tonumber(ARGV[a + 2]) then
        redis.call('SET', KEYS[k + 1], ARGV[a + 2], 'PX', ARGV[a + 3])
      end
      out[#out + 1] = 1
    end
    k, a = k + 2, a + 4
  else
    return redis.error_reply('lock-ops: unknown operation ' .. tostring(op))
  end
end
return out
