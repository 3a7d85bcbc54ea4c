--[[
  given(key): whether a place in KEYS names a key rather than its absence. Absent is '' or a
  placeholder starting with '!' that hashes to the slot of the script's other keys: Redis Cluster
  refuses a script whose keys are in different slots, and '' has a slot of its own. No key the
  service writes starts with '!' (they start with 'mp:').
]]
local function given(key)
  return key ~= '' and string.byte(key, 1) ~= 33
end
