-- psdecrement_all: subtract `decrement` from the priority of every item of a stream.
-- KEYS[1] <name>:s  zset key -> priority
-- ARGV[1] decrement
-- Returns the number of items changed.
-- Cost: O(N log N), one round trip; scores are written back by ZADD in batches of 1000
-- (same double arithmetic as ZINCRBY, a tenth of the commands).
local decrement = tonumber(ARGV[1])
local items = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local batch = {}
for i = 1, #items, 2 do
  batch[#batch + 1] = tonumber(items[i + 1]) - decrement
  batch[#batch + 1] = items[i]
  if #batch >= 2000 then
    redis.call('ZADD', KEYS[1], unpack(batch))
    batch = {}
  end
end
if #batch > 0 then
  redis.call('ZADD', KEYS[1], unpack(batch))
end
return #items / 2
