-- psdelete: remove a stream's keys and, when given, its registry entry.
-- KEYS[1..4] <name>:t, <name>:s, <name>:exc, <name>:exp; KEYS[5] :ps:keys (absent in
-- cluster mode: another slot, the caller unregisters after this script)
-- ARGV[1] stream name
-- Returns the number of the stream's keys that existed.
-- Cost: O(N) in the items deleted.
local deleted = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if KEYS[5] then
  redis.call('SREM', KEYS[5], ARGV[1])
end
return deleted
