-- due_count: how many members of a sorted set are due (score <= now).
-- KEYS[1] the sorted set
-- ARGV[1] now in unix seconds, '' for the server's TIME
-- Returns an integer. Cost: O(log N).
local now = ARGV[1]
if now == '' then
  local t = redis.call('TIME')
  now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end
return redis.call('ZCOUNT', KEYS[1], '-inf', now)
