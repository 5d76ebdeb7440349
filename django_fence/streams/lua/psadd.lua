-- psadd / psaddmany: store items and add to their priority, unless excluded or pulled.
-- KEYS[1] <name>:t   hash  key -> value
-- KEYS[2] <name>:s   zset  key -> priority
-- KEYS[3] <name>:exc set   keys that may not be added again (gate)
-- KEYS[4] <name>:exp zset  key -> unix time its block ends (pulled, not yet expired)
-- KEYS[5] :ps:keys   set   stream names; absent in cluster mode (another slot: the caller registers first)
-- ARGV[1] stream name, ARGV[2] readd ('1' lifts exclusion and expiration first),
-- ARGV[3..] triples: key, value, score
-- Returns one bulk string per item: its new priority, or '0' when it was not added.
-- Cost: O(M log N) for M items.
if KEYS[5] then
  redis.call('SADD', KEYS[5], ARGV[1])
end
local readd = ARGV[2] == '1'
local results = {}
for i = 3, #ARGV, 3 do
  local key = ARGV[i]
  if readd then
    redis.call('SREM', KEYS[3], key)
    redis.call('ZREM', KEYS[4], key)
  end
  if redis.call('SISMEMBER', KEYS[3], key) == 0 and not redis.call('ZSCORE', KEYS[4], key) then
    redis.call('HSET', KEYS[1], key, ARGV[i + 1])
    results[#results + 1] = redis.call('ZINCRBY', KEYS[2], ARGV[i + 2], key)
  else
    results[#results + 1] = '0'
  end
end
return results
