-- psdelete: remove a stream's keys and, when given, its registry entry.
-- KEYS[1..4] <name>:t, <name>:s, <name>:exc, <name>:exp; KEYS[5] :ps:keys (absent in
-- cluster mode: another slot, the caller unregisters after this script)
-- ARGV[1] stream name
-- Returns the number of the stream's keys that existed.
-- Errors (WRONGTYPE) before any write if the registry holds another type than a set.
-- Cost: O(N) in the items deleted.
if KEYS[5] then
  local kind = redis.call('TYPE', KEYS[5])['ok']
  if kind ~= 'none' and kind ~= 'set' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[5] .. ' holds a ' .. kind .. ', not a set')
  end
end
local deleted = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if KEYS[5] then
  redis.call('SREM', KEYS[5], ARGV[1])
end
return deleted
