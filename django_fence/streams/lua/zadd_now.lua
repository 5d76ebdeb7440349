-- zadd_now: add a member scored by the server's clock (TimeSortedSet, ScheduledSet).
-- KEYS[1] the sorted set
-- ARGV[1] member
-- Returns the score as a decimal string (seconds.microseconds), exactly as stored.
-- Cost: O(log N). One clock for every client, however far their own clocks drift.
local t = redis.call('TIME')
local score = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
redis.call('ZADD', KEYS[1], score, ARGV[1])
return score
