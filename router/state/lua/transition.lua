-- Move a breaker if nobody moved it since the generation the caller saw (compare-and-set).
--
-- KEYS[1] breaker (hash: target, state, generation, trips, retry_at, holder)
-- KEYS[2] breaker registry (set of target names)
-- KEYS[3] failures (sorted set; cleared on close)
-- KEYS[4] failing workers (hash; cleared on close)
-- KEYS[5] epoch (string: this store's lifetime; made on first use)
-- ARGV    target, expect_generation, state, holder, reset_ms, max_reset_ms, channel
--
-- open: trips + 1, retry_at = now + min(max, reset * 2^(trips - 1)) on Redis's clock (the twin
-- of `open_time` in router/resilience/window.py, exponent capped so it never overflows).
-- half-open: records the holder of the probe. closed: trips back to 0, window cleared.
-- Returns the new record (JSON, also PUBLISHed on `channel`), or nil when the generation moved.

local MAX_DOUBLINGS = 30
local target, state, holder = ARGV[1], ARGV[3], ARGV[4]
local expect = tonumber(ARGV[2])
local reset, cap = tonumber(ARGV[5]), math.max(tonumber(ARGV[6]), tonumber(ARGV[5]))

local current = redis.call('HMGET', KEYS[1], 'generation', 'trips')
local generation = tonumber(current[1] or '0')
if generation ~= expect then
  return nil
end
generation = generation + 1
local trips = tonumber(current[2] or '0')

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local epoch = redis.call('GET', KEYS[5])
if not epoch then
  epoch = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[5], epoch)
end

local retry_at, retry_in = 0, 0
if state == 'open' then
  trips = trips + 1
  local timeout = math.min(cap, reset * 2 ^ math.min(trips - 1, MAX_DOUBLINGS))
  retry_at, retry_in = now + timeout, timeout / 1000
  holder = ''
elseif state == 'half-open' then
  -- the holder probes; nothing else changes
else
  trips, holder = 0, ''
  redis.call('DEL', KEYS[3], KEYS[4])
end

redis.call('HSET', KEYS[1],
  'target', target, 'state', state, 'generation', generation, 'trips', trips,
  'retry_at', string.format('%.3f', retry_at), 'holder', holder)
redis.call('SADD', KEYS[2], target)

local record = cjson.encode({
  target = target, state = state, generation = generation,
  retry_in = retry_in, trips = trips, holder = holder, epoch = epoch,
})
redis.call('PUBLISH', ARGV[7], record)
return record
