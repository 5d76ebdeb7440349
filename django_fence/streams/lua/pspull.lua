-- pspull: take up to `count` items, highest priority first, and block them until their expiry.
-- KEYS[1] <name>:t, KEYS[2] <name>:s, KEYS[3] <name>:exc, KEYS[4] <name>:exp (see psadd.lua)
-- ARGV[1] count (>= 1), ARGV[2] purge ('1': remove; '0': keep with priority -1),
-- ARGV[3] gate ('1' with purge: exclude the keys from being added again),
-- ARGV[4] now in unix seconds, '' for the server's TIME,
-- ARGV[5] absolute expiry in unix seconds, '' for now + ARGV[6] seconds.
-- Returns {key1, value1, key2, value2, ...}, highest priority first. A key with a
-- priority but no value (psincrement of an unknown key) is dropped, as good-redis does.
-- Cost: O(count log N).
local expiry = ARGV[5]
if expiry == '' then
  local now = tonumber(ARGV[4])
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  expiry = math.floor(now + tonumber(ARGV[6]))
end
local purge = ARGV[2] == '1'
local gate = ARGV[3] == '1'
local popped = redis.call('ZPOPMAX', KEYS[2], ARGV[1])
local out = {}
for i = 1, #popped, 2 do
  local key = popped[i]
  local value = redis.call('HGET', KEYS[1], key)
  if value then
    out[#out + 1] = key
    out[#out + 1] = value
    if purge then
      redis.call('HDEL', KEYS[1], key)
      if gate then
        redis.call('SADD', KEYS[3], key)
      end
    else
      redis.call('ZADD', KEYS[2], -1, key)
    end
    redis.call('ZADD', KEYS[4], expiry, key)
  end
end
return out
