-- due_take: remove and return up to `count` due members (score <= now), lowest score first.
-- KEYS[1] the sorted set
-- ARGV[1] now in unix seconds, '' for the server's TIME, ARGV[2] count (>= 1)
-- Returns {member, ...}. Atomic: two consumers never receive the same member.
-- Cost: O(log N + count log N).
local now = ARGV[1]
if now == '' then
  local t = redis.call('TIME')
  now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
for i = 1, #members, 1000 do
  redis.call('ZREM', KEYS[1], unpack(members, i, math.min(i + 999, #members)))
end
return members
