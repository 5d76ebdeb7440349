-- psdeletebelowthreshold: remove every item whose priority is <= threshold.
-- KEYS[1] <name>:t, KEYS[2] <name>:s, KEYS[3] <name>:exc (see psadd.lua)
-- ARGV[1] threshold, ARGV[2] gate ('1': exclude the removed keys from being added again)
-- Returns the removed keys, lowest priority first.
-- Cost: one round trip, O(log N + M) for M matches (good-redis sends a command per match).
local keys = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
-- unpack() is bounded by Lua's C stack (LUAI_MAXCSTACK 8000): send the keys in chunks
for i = 1, #keys, 1000 do
  local chunk = {unpack(keys, i, math.min(i + 999, #keys))}
  redis.call('HDEL', KEYS[1], unpack(chunk))
  if ARGV[2] == '1' then
    redis.call('SADD', KEYS[3], unpack(chunk))
  end
end
return keys
