-- psexpire: remove, from each stream given, every pulled item whose block has ended.
-- KEYS in groups of three per stream: KEYS[1] <name>:t, KEYS[2] <name>:s, KEYS[3] <name>:exp,
-- KEYS[4..6] the next stream's, ... (see psadd.lua);
-- in cluster mode the caller groups streams by hash slot.
-- ARGV[1] now in unix seconds, '' for the server's TIME. Compared in whole seconds, as
-- good-redis does (expiry <= int(now)).
-- Returns the number of items removed.
-- Cost: one round trip for all the streams given, O(M log N) for M matches.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1])
end
now = math.floor(now)
local removed = 0
for s = 1, #KEYS, 3 do
  local keys = redis.call('ZRANGEBYSCORE', KEYS[s + 2], '-inf', now)
  if #keys > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[s + 2], '-inf', now)
    for i = 1, #keys, 1000 do
      local chunk = {unpack(keys, i, math.min(i + 999, #keys))}
      redis.call('HDEL', KEYS[s], unpack(chunk))
      redis.call('ZREM', KEYS[s + 1], unpack(chunk))
    end
    removed = removed + #keys
  end
end
return removed
