-- Store a probe verdict; the record lives ttl ms, after which the target's health is unknown.
--
-- KEYS[1] health (hash: target, healthy, streak, since, checked, detail; times are Redis ms)
-- KEYS[2] health registry (set of target names)
-- ARGV    target, healthy ("1" or "0"), detail, ttl_ms
--
-- The same verdict as last time extends the streak; a new one starts it at 1, `since` now.
-- Returns the record as JSON, with `since` and `checked_ago` in seconds.

local target, healthy, detail = ARGV[1], ARGV[2], ARGV[3]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local previous = redis.call('HMGET', KEYS[1], 'healthy', 'streak', 'since')
local streak, since = 1, now
if previous[1] == healthy then
  streak, since = tonumber(previous[2]) + 1, tonumber(previous[3])
end

redis.call('HSET', KEYS[1],
  'target', target, 'healthy', healthy, 'streak', streak,
  'since', string.format('%.3f', since), 'checked', string.format('%.3f', now), 'detail', detail)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], target)

return cjson.encode({
  target = target, healthy = healthy == '1', streak = streak,
  since = (now - since) / 1000, checked_ago = 0, detail = detail,
})
