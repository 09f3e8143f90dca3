-- Lease part of a token bucket to one worker, on Redis's clock, and count the workers that hold one.
--
-- KEYS[1] bucket (hash: level, stamp in Redis ms); absent means full
-- KEYS[2] holders (zset: worker -> Redis ms until which it counts as live)
-- KEYS[3] held (hash: worker -> what it holds after its last lease)
-- ARGV    amount, capacity, per_second, worker, holding, ttl (seconds; 0: the worker leaves)
--
-- A positive amount takes up to `amount`: what the bucket holds, if less, never below zero. A
-- negative amount gives back, up to capacity. The worker held `holding` before this grant; it
-- counts as live for ttl. worker '' only reads. Returns {granted, workers, outstanding, level}
-- as strings (Redis truncates Lua numbers to integers).

local amount, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local rate, worker = tonumber(ARGV[3]), ARGV[4]
local holding, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local level = capacity
local h = redis.call('HMGET', KEYS[1], 'level', 'stamp')
if h[1] then
  level = math.min(capacity, tonumber(h[1]) + math.max(0, now - tonumber(h[2])) / 1000 * rate)
end

local granted
if amount >= 0 then
  granted = math.min(amount, math.max(0, level))
else
  granted = math.max(amount, level - capacity)
end
if granted ~= 0 then
  level = level - granted
  redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level), 'stamp', string.format('%.3f', now))
  if rate > 0 then
    -- Once full again the bucket is the same as an absent one: let it go.
    redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - level) / rate * 1000) + 1000)
  else
    redis.call('PERSIST', KEYS[1])
  end
end

-- Workers whose time ran out (gone without a word) hold nothing any more.
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('HDEL', KEYS[3], unpack(gone))
end
if worker ~= '' then
  if ttl > 0 then
    redis.call('ZADD', KEYS[2], now + ttl * 1000, worker)
    redis.call('HSET', KEYS[3], worker, string.format('%.17g', math.max(0, holding + granted)))
  else
    redis.call('ZREM', KEYS[2], worker)
    redis.call('HDEL', KEYS[3], worker)
  end
end

local workers = redis.call('ZCARD', KEYS[2])
local outstanding = 0
for _, held in ipairs(redis.call('HVALS', KEYS[3])) do
  outstanding = outstanding + tonumber(held)
end
if workers > 0 then
  -- Both go once the last live worker would have.
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  local ms = math.max(1, math.ceil(tonumber(last[2]) - now))
  redis.call('PEXPIRE', KEYS[2], ms)
  redis.call('PEXPIRE', KEYS[3], ms)
end
return {
  string.format('%.17g', granted), tostring(workers), string.format('%.17g', outstanding),
  string.format('%.17g', level),
}
