-- psadd / psaddmany: store items and add to their priority, unless excluded or pulled.
-- KEYS[1] <name>:t   hash  key -> value
-- KEYS[2] <name>:s   zset  key -> priority
-- KEYS[3] <name>:exc set   keys that may not be added again (gate)
-- KEYS[4] <name>:exp zset  key -> unix time its block ends (pulled, not yet expired)
-- KEYS[5] :ps:keys   set   stream names; absent in cluster mode (another slot: the caller registers)
-- KEYS[6] :ps:decay  set   names added with_decay; only without cluster mode, and only when asked
-- ARGV[1] stream name, ARGV[2] readd ('1' lifts exclusion and expiration first),
-- ARGV[3..] triples: key, value, score
-- Returns {fresh, {priority, ...}}: one bulk string per item, its new priority or '0' when it
-- was not added; fresh is 1 in cluster mode (4 KEYS) when none of the stream's keys existed
-- before (the caller registers again: a concurrent psdelete may have unregistered it), else 0.
-- Errors (WRONGTYPE) before any write if a key holds another type.
-- Cost: O(M log N) for M items.
local expected = {'hash', 'zset', 'set', 'zset', 'set', 'set'}
for i = 1, #KEYS do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'none' and kind ~= expected[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. kind .. ', not a ' .. expected[i])
  end
end
local fresh = 0
if #KEYS == 4 and redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3], KEYS[4]) == 0 then
  fresh = 1
end
if KEYS[5] then
  redis.call('SADD', KEYS[5], ARGV[1])
end
if KEYS[6] then
  redis.call('SADD', KEYS[6], ARGV[1])
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
return {fresh, results}
