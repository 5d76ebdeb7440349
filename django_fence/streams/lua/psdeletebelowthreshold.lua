-- psdeletebelowthreshold: remove up to `limit` items whose priority is <= threshold, lowest first.
-- KEYS[1] <name>:t, KEYS[2] <name>:s, KEYS[3] <name>:exc (see psadd.lua)
-- ARGV[1] threshold, ARGV[2] gate ('1': exclude the removed keys from being added again),
-- ARGV[3] limit: the most items one call removes, so one call never holds the server long
-- Returns {more, {key, ...}}: the removed keys, lowest priority first; more is how many
-- items at or below the threshold remain (the caller calls again while it is not 0).
-- Errors (WRONGTYPE) before any write if a key holds another type.
-- Cost: one round trip per `limit` matches, O(log N + M log N) for M removed.
local expected = {'hash', 'zset', 'set'}
for i = 1, 3 do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'none' and kind ~= expected[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. kind .. ', not a ' .. expected[i])
  end
end
local keys = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
-- unpack() is bounded by Lua's C stack (LUAI_MAXCSTACK 8000): send the keys in chunks
for i = 1, #keys, 1000 do
  local chunk = {unpack(keys, i, math.min(i + 999, #keys))}
  redis.call('ZREM', KEYS[2], unpack(chunk))
  redis.call('HDEL', KEYS[1], unpack(chunk))
  if ARGV[2] == '1' then
    redis.call('SADD', KEYS[3], unpack(chunk))
  end
end
return {redis.call('ZCOUNT', KEYS[2], '-inf', ARGV[1]), keys}
