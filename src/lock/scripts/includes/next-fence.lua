--[[
  nextFence(fenceKey, fenceTtlMs): mints the next fencing token of a key and returns it as text.

  The token is max(last issued + 1, the server's clock in µs), stored in the fence key with an
  expiry. The clock floor keeps tokens increasing after the fence key expired (an hour after the
  key's last holder) or the server lost its data, so the fence key may expire instead of staying
  forever. Values stay below 2^53.
]]
local function nextFence(fenceKey, fenceTtlMs)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('GET', fenceKey) or '0')
  local text = string.format('%.0f', math.max(last + 1, now))
  redis.call('SET', fenceKey, text, 'PX', fenceTtlMs)
  return text
end
