-- psexpire: remove, from the streams given, up to `limit` pulled items whose block has ended.
-- KEYS in groups of three per stream: KEYS[1] <name>:t, KEYS[2] <name>:s, KEYS[3] <name>:exp,
-- KEYS[4..6] the next stream's, ... (see psadd.lua);
-- in cluster mode the caller groups streams by hash slot.
-- ARGV[1] now in unix seconds, '' for the server's TIME. Compared in whole seconds, as
-- good-redis does (expiry <= int(now)).
-- ARGV[2] limit: the most items one call removes, so one call never holds the server long
-- ARGV[3..] the stream names, one per group of KEYS (to report skipped streams)
-- Returns {removed, resume, now, {skipped name, ...}}: resume is the 1-based position of the
-- first stream that may still hold expired items (the caller calls again from there), 0 when
-- every stream given is done; now is the time compared with, for the next call. A stream
-- whose keys hold other types is skipped, untouched, and named in `skipped`.
-- Cost: one round trip per `limit` matches, O(S log N + M log N) for S streams, M removed.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1])
end
now = math.floor(now)
local budget = tonumber(ARGV[2])
local expected = {'hash', 'zset', 'zset'}
local removed = 0
local skipped = {}
local streams = #KEYS / 3
for s = 1, streams do
  local base = (s - 1) * 3
  local usable = true
  for i = 1, 3 do
    local kind = redis.call('TYPE', KEYS[base + i])['ok']
    if kind ~= 'none' and kind ~= expected[i] then
      usable = false
    end
  end
  if not usable then
    skipped[#skipped + 1] = ARGV[2 + s]
  else
    local keys = redis.call('ZRANGEBYSCORE', KEYS[base + 3], '-inf', now, 'LIMIT', 0, budget)
    for i = 1, #keys, 1000 do
      local chunk = {unpack(keys, i, math.min(i + 999, #keys))}
      redis.call('ZREM', KEYS[base + 3], unpack(chunk))
      redis.call('HDEL', KEYS[base + 1], unpack(chunk))
      redis.call('ZREM', KEYS[base + 2], unpack(chunk))
    end
    removed = removed + #keys
    budget = budget - #keys
    if budget <= 0 then
      if redis.call('ZCOUNT', KEYS[base + 3], '-inf', now) > 0 then
        return {removed, s, now, skipped}
      elseif s < streams then
        return {removed, s + 1, now, skipped}
      end
      return {removed, 0, now, skipped}
    end
  end
end
return {removed, 0, now, skipped}
