/**
 * The lock's Lua scripts. Each runs atomically on the server and is loaded once and called by SHA
 * (ioredis `defineCommand`: EVALSHA, falling back to EVAL after a script cache flush).
 *
 * Keys: `KEYS[1]` the lock (`mp:lock:<key>`, value = the holder's random token, with a PX expiry),
 * `KEYS[2]` the fence (`mp:fence:<key>`, the last fencing token issued for the key).
 */

/**
 * Lua that mints the next fencing token into `local text`: max(last issued + 1, server time in
 * µs), stored in `fenceKey` (a Lua expression) with an expiry of `ttlArg` ms. The time floor keeps
 * tokens increasing even after the fence key expired or the server lost its data, so the fence
 * key may expire (an hour after the last acquisition) instead of accumulating forever. Values
 * stay below 2^53.
 */
export const nextFenceLua = (fenceKey: string, ttlArg: string): string => `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', ${fenceKey}) or '0')
local fence = math.max(last + 1, now)
local text = string.format('%.0f', fence)
redis.call('SET', ${fenceKey}, text, 'PX', ${ttlArg})
`;

const NEXT_FENCE = nextFenceLua('KEYS[2]', 'ARGV[3]');

/**
 * Acquire: ARGV = token, ttl ms, fence ttl ms; optional KEYS[3] = a processed marker checked first.
 * Returns {1, fence} when acquired, {0, pttl} when held by someone else, {2, 0} when the marker
 * exists (the message was processed: nothing is locked).
 */
export const ACQUIRE = `
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then
  return {2, 0}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
${NEXT_FENCE}
  return {1, text}
end
return {0, redis.call('PTTL', KEYS[1])}
`;

/** Extend: ARGV = token, ttl ms. 1 = extended, 0 = expired (no lock), -1 = held by another token. */
export const EXTEND = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return -1 end
return 0
`;

/** Release: ARGV = token. 1 = released, 0 = expired (no lock), -1 = held by another token. */
export const RELEASE = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
if holder then return -1 end
return 0
`;

/**
 * Redlock only: raise the fence of an instance that granted the lock to the token chosen for the
 * quorum (the highest granted), while the lock is still ours. The next holder's quorum shares at
 * least one instance with ours, so its token is then higher than ours. ARGV = token, fence, fence ttl.
 * Returns 1 when raised (or already higher), 0 when the lock is no longer ours.
 */
export const RAISE_FENCE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
return 1
`;
