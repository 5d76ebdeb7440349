-- due_range: the due members (score <= now) of a sorted set from `offset`, lowest score first.
-- KEYS[1] the sorted set
-- ARGV[1] now in unix seconds, '' for the server's TIME, ARGV[2] offset, ARGV[3] count,
-- ARGV[4] '1' to return scores too
-- Returns {member, ...} or {member, score, ...}. Cost: O(log N + offset + count).
local now = ARGV[1]
if now == '' then
  local t = redis.call('TIME')
  now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end
if ARGV[4] == '1' then
  return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', ARGV[2], ARGV[3])
end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', ARGV[2], ARGV[3])
