--[[
  nextFence(fenceKey, fenceTtlMs, proposed): mints the next fencing token of a key and returns it
  as text.

  The token is max(last issued + 1, the server's clock in µs, proposed), stored in the fence key
  with an expiry. The clock floor keeps tokens increasing after the fence key expired (an hour
  after the key's last holder) or the server lost its data, so the fence key may expire instead
  of staying forever. `proposed` (text, '' or nil = none) is what a Redlock client asks every
  server of its quorum for, ahead of their clocks: servers that all mint it need no second round
  to agree on the token. Values stay below 2^53. The clock is read once per call of the script
  (TIME is one command per call, not one per token minted).
]]
local clockUs
local function nextFence(fenceKey, fenceTtlMs, proposed)
  if clockUs == nil then
    -- read once per call of the script: a call is atomic, and a batch mints many tokens
    local t = redis.call('TIME')
    clockUs = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  local floor = math.max(clockUs, tonumber(proposed) or 0)
  local text = string.format('%.0f', floor)
  -- usually the floor is above the last token: one write that also reads what it replaces
  local last = tonumber(redis.call('SET', fenceKey, text, 'PX', fenceTtlMs, 'GET') or '0')
  if last >= floor then
    text = string.format('%.0f', last + 1)
    redis.call('SET', fenceKey, text, 'PX', fenceTtlMs)
  end
  return text
end
