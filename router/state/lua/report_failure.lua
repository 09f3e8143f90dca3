-- Count one failure in a target's sliding window; trip the breaker when the window says so.
--
-- KEYS[1] failures (sorted set, score = Redis time in ms, member = "<seq>:<worker>")
-- KEYS[2] breaker (hash: target, state, generation, trips, retry_at, holder)
-- KEYS[3] breaker registry (set of target names)
-- KEYS[4] failure sequence (counter that keeps window members unique; outlives every window)
-- KEYS[5] failing workers (hash: worker -> Redis ms of its last failure), for min_workers
-- ARGV    target, worker, window_ms, threshold, min_workers, reset_ms, max_reset_ms, channel
--
-- Returns the new open record (JSON, also PUBLISHed on `channel`) when this failure tripped
-- the breaker, else nil. A breaker that is not closed ignores failures: they belong to an
-- episode that was already judged.

local target, worker = ARGV[1], ARGV[2]
local window = tonumber(ARGV[3])
local threshold = tonumber(ARGV[4])
local min_workers = tonumber(ARGV[5])
local reset, cap = tonumber(ARGV[6]), math.max(tonumber(ARGV[7]), tonumber(ARGV[6]))

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local state = redis.call('HGET', KEYS[2], 'state')
if state and state ~= 'closed' then
  return nil
end

local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[1], now, seq .. ':' .. worker)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('HSET', KEYS[5], worker, string.format('%.3f', now))
local ttl = math.ceil(window) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[5], ttl)
if redis.call('PTTL', KEYS[4]) < ttl then
  redis.call('PEXPIRE', KEYS[4], ttl)
end

if redis.call('ZCARD', KEYS[1]) < threshold then
  return nil
end
if min_workers > 1 then
  -- One hash entry per worker keeps this O(workers) when one worker floods the window.
  local last = redis.call('HGETALL', KEYS[5])
  local distinct = 0
  for i = 1, #last, 2 do
    if tonumber(last[i + 1]) > now - window then
      distinct = distinct + 1
    else
      redis.call('HDEL', KEYS[5], last[i])
    end
  end
  if distinct < min_workers then
    return nil
  end
end

local current = redis.call('HMGET', KEYS[2], 'generation', 'trips')
local generation = tonumber(current[1] or '0') + 1
local trips = tonumber(current[2] or '0') + 1
local timeout = math.min(cap, reset * 2 ^ (trips - 1))

redis.call('HSET', KEYS[2],
  'target', target, 'state', 'open', 'generation', generation, 'trips', trips,
  'retry_at', string.format('%.3f', now + timeout), 'holder', '')
redis.call('SADD', KEYS[3], target)
redis.call('DEL', KEYS[1], KEYS[5])

local record = cjson.encode({
  target = target, state = 'open', generation = generation,
  retry_in = timeout / 1000, trips = trips, holder = '',
})
redis.call('PUBLISH', ARGV[8], record)
return record
