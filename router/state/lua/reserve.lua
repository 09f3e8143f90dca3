-- Take `amount` from a token bucket refilled on Redis's clock.
--
-- KEYS[1] bucket (hash: level, stamp in Redis ms); absent means full
-- ARGV    amount, capacity, per_second, max_wait (seconds)
--
-- The level may go below zero (a debt the refill pays off) only when the wait until it is
-- back at zero is at most max_wait. Returns that wait in seconds (0 when covered now), or -1
-- when it would be longer, in which case nothing is taken. Numbers return as strings: Redis
-- truncates Lua numbers to integers.

local amount, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local rate, max_wait = tonumber(ARGV[3]), tonumber(ARGV[4])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local level = capacity
local h = redis.call('HMGET', KEYS[1], 'level', 'stamp')
if h[1] then
  level = math.min(capacity, tonumber(h[1]) + math.max(0, now - tonumber(h[2])) / 1000 * rate)
end

local left = level - amount
local wait = 0
if left < 0 then
  if rate <= 0 then
    return '-1'
  end
  wait = -left / rate
  if wait > max_wait then
    return '-1'
  end
end

redis.call('HSET', KEYS[1], 'level', string.format('%.17g', left), 'stamp', string.format('%.3f', now))
if rate > 0 then
  -- Once full again the bucket is the same as an absent one: let it go.
  redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - left) / rate * 1000) + 1000)
else
  redis.call('PERSIST', KEYS[1])
end
return string.format('%.17g', wait)
