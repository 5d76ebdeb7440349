-- psremove: remove chosen items from a stream: value, priority and pull mark.
-- KEYS[1] <name>:t, KEYS[2] <name>:s, KEYS[3] <name>:exp (see psadd.lua)
-- ARGV[1], ARGV[2], ... the item keys (at least one, each once).
-- Returns how many of the keys had a value or a priority. The excluded set (gate) is left
-- as it is: removing an item does not let it, or stop it from, being added again.
-- Errors (WRONGTYPE) before any write if a key holds another type.
-- Cost: O(K log N) for K keys.
local expected = {'hash', 'zset', 'zset'}
for i = 1, 3 do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'none' and kind ~= expected[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. kind .. ', not a ' .. expected[i])
  end
end
local removed = 0
for i = 1, #ARGV do
  local had_value = redis.call('HDEL', KEYS[1], ARGV[i])
  local had_priority = redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
  if had_value + had_priority > 0 then
    removed = removed + 1
  end
end
return removed
