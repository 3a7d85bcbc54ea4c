--[[
  A handler's effect, committed in one atomic step with what makes it safe: the processed
  marker, the lock and its fencing token, and (when on) the effect's entry in the journal of its
  key. The effect's own keys and arguments follow the protocol's; its Lua is the body of `effect`
  below (see RedisCommit).

  Input:
    KEYS[1] the processed marker ('' = none): when it exists the effect ran before
    KEYS[2] the lock (mp:lock:<key>) on this Redis (under Redlock, the lock's home record; '' =
            no lock)
    KEYS[3] the fence (mp:fence:<key>) ('' = no lock)
    KEYS[4] the effect journal (mp:journal:<key>, a stream) ('' = no journal)
    (on a Redis Cluster, an absent key is '!' and a key of the same slot instead of '': see given)
    KEYS[5..] the effect's keys
    ARGV[1] the lock holder's token ('' while the lock is left to this script)
    ARGV[2] the holder's fencing token ('' = take the lock in this script)
    ARGV[3] the marker's expiry (s)
    ARGV[4] the fence's expiry (ms)
    ARGV[5] the journal's length per key (entries kept, at least)
    ARGV[6] the journal's expiry after its last entry (ms)
    ARGV[7] the messageId, for the journal
    ARGV[8] who commits (the worker: host and pid), for the journal
    ARGV[9..] the effect's arguments

  Output:
    {1, fence, reply}  committed: the effect ran and the marker is written; fence: the fencing
                       token it ran under ('' without one), reply: what the effect returned
    {0}                duplicate: the marker existed, nothing ran
    {-1}               stale: a newer holder's token was issued or applied for the key
    {2}                busy: the lock was left to this script and another worker holds the key;
                       nothing was written

  A lock held by ARGV[1] is released on every answer but busy. A lock taken here is held for
  this step only: nothing is stored under KEYS[2]. It mints a fencing token only when the key's
  fence exists (a holder within the fence's lifetime, who may have outlived its lease: the new
  token refuses that holder's late write); a key nobody held since has nobody to fence off.

  The journal entry of a committed effect (XADD, trimmed to about ARGV[5] entries): messageId,
  fencingToken ('' without one), otherHolder ('1' when KEYS[2] held another worker's token at
  that moment, which the checks above exist to prevent; '0'; '' without a lock on this Redis),
  worker, and timeUs (the server's clock). Its stream ids give the server's order of the key's
  effects.
]]
-- @include next-fence
-- @include given
local effect = function(keys, args, fence)
-- @effect
end
local function release()
  if given(KEYS[2]) and ARGV[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('DEL', KEYS[2])
  end
end
if given(KEYS[1]) and redis.call('EXISTS', KEYS[1]) == 1 then
  release()
  return {0}
end
local fence = ''
if given(KEYS[3]) then
  if ARGV[2] == '' then
    if given(KEYS[2]) and redis.call('EXISTS', KEYS[2]) == 1 then return {2} end
    if redis.call('EXISTS', KEYS[3]) == 1 then fence = nextFence(KEYS[3], ARGV[4]) end
  else
    local applied = tonumber(redis.call('GET', KEYS[3]) or '0')
    local mine = tonumber(ARGV[2])
    if mine < applied then
      release()
      return {-1}
    end
    if mine > applied then redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[4]) end
    fence = ARGV[2]
  end
end
local reply = effect({unpack(KEYS, 5)}, {unpack(ARGV, 9)}, fence)
if given(KEYS[1]) then redis.call('SET', KEYS[1], '1', 'EX', ARGV[3]) end
if given(KEYS[4]) then
  local other = ''
  if given(KEYS[2]) then
    local holder = redis.call('GET', KEYS[2])
    other = (holder and holder ~= ARGV[1]) and '1' or '0'
  end
  local t = redis.call('TIME')
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*',
    'messageId', ARGV[7], 'fencingToken', fence, 'otherHolder', other, 'worker', ARGV[8],
    'timeUs', t[1] .. string.format('%06d', tonumber(t[2])))
  redis.call('PEXPIRE', KEYS[4], ARGV[6])
end
release()
return {1, fence, reply}
