-- Every live probe record, ages measured on Redis's clock; expired records are forgotten.
--
-- KEYS[1] health registry (set of target names)
-- ARGV[1] key prefix of the health hashes ("<namespace>:health:")
--
-- Returns a JSON array of records (an empty array encodes as "{}").

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local records = {}
for _, target in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HMGET', ARGV[1] .. target, 'healthy', 'streak', 'since', 'checked', 'detail')
  if h[1] then
    records[#records + 1] = {
      target = target, healthy = h[1] == '1', streak = tonumber(h[2]),
      since = math.max(0, now - tonumber(h[3])) / 1000,
      checked_ago = math.max(0, now - tonumber(h[4])) / 1000,
      detail = h[5] or '',
    }
  else
    redis.call('SREM', KEYS[1], target)
  end
end
return cjson.encode(records)
