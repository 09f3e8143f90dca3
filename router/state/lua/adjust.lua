-- Correct an earlier reservation once the real cost is known: positive takes more (the
-- level may go below zero), negative gives back (up to capacity).
--
-- KEYS[1] bucket (hash: level, stamp in Redis ms); absent means full
-- ARGV    delta, capacity, per_second
--
-- Returns the new level as a string.

local delta, capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local level = capacity
local h = redis.call('HMGET', KEYS[1], 'level', 'stamp')
if h[1] then
  level = math.min(capacity, tonumber(h[1]) + math.max(0, now - tonumber(h[2])) / 1000 * rate)
end
level = math.min(capacity, level - delta)

redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level), 'stamp', string.format('%.3f', now))
if rate > 0 then
  redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - level) / rate * 1000) + 1000)
else
  redis.call('PERSIST', KEYS[1])
end
return string.format('%.17g', level)
