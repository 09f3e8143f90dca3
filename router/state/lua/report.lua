-- Count a worker's outcomes in a target's sliding window; trip the breaker when the rule says so.
-- The twin of `OutcomeWindow` and `TripRule.trips` in router/resilience/window.py.
--
-- KEYS[1] window (hash: "c<slice>" calls, "f<slice>" failures, "row" failures in a row); PX window
-- KEYS[2] breaker (hash: target, state, generation, trips, retry_at, holder)
-- KEYS[3] breaker registry (set of target names)
-- KEYS[4] failing workers (hash: worker -> Redis ms of its last failure), for min_workers
-- KEYS[5] epoch (string: this store's lifetime; made on first use)
-- ARGV    target, worker, successes, failures, window_ms, consecutive, failure_rate, min_calls,
--         min_workers, reset_ms, max_reset_ms, channel
--
-- The window is counted in 10 slices; a slice older than the window falls off whole, and once
-- none is left the failures in a row are forgotten too. Returns the new open record (JSON, also
-- PUBLISHed on `channel`) when these outcomes tripped the breaker, else nil. A breaker that is
-- not closed ignores outcomes: they belong to an episode that was already judged.

local BUCKETS, MAX_DOUBLINGS = 10, 30
local target, worker = ARGV[1], ARGV[2]
local successes, failures = tonumber(ARGV[3]), tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local consecutive, rate, min_calls = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local min_workers = tonumber(ARGV[9])
local reset, cap = tonumber(ARGV[10]), math.max(tonumber(ARGV[11]), tonumber(ARGV[10]))

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local epoch = redis.call('GET', KEYS[5])
if not epoch then
  epoch = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[5], epoch)
end

local state = redis.call('HGET', KEYS[2], 'state')
if state and state ~= 'closed' then
  return nil
end

-- Prune slices that left the window, then count what is left.
local index = math.floor(now / (window / BUCKETS))
local fields = redis.call('HGETALL', KEYS[1])
local row, calls, failed, live = 0, 0, 0, 0
for i = 1, #fields, 2 do
  local name, value = fields[i], tonumber(fields[i + 1])
  if name == 'row' then
    row = value
  else
    if tonumber(string.sub(name, 2)) <= index - BUCKETS then
      redis.call('HDEL', KEYS[1], name)
    elseif string.sub(name, 1, 1) == 'c' then
      calls, live = calls + value, live + 1
    else
      failed = failed + value
    end
  end
end
if live == 0 then
  row = 0
end
if successes > 0 then
  row = failures
else
  row = row + failures
end
calls, failed = calls + successes + failures, failed + failures
redis.call('HINCRBY', KEYS[1], 'c' .. index, successes + failures)
redis.call('HINCRBY', KEYS[1], 'f' .. index, failures)
redis.call('HSET', KEYS[1], 'row', row)
local ttl = math.ceil(window) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)

local distinct = 0
if failures > 0 then
  redis.call('HSET', KEYS[4], worker, string.format('%.3f', now))
end
redis.call('PEXPIRE', KEYS[4], ttl)
-- One hash entry per worker keeps this O(workers) when one worker floods the window.
local last = redis.call('HGETALL', KEYS[4])
for i = 1, #last, 2 do
  if tonumber(last[i + 1]) > now - window then
    distinct = distinct + 1
  else
    redis.call('HDEL', KEYS[4], last[i])
  end
end

local tripped = row >= consecutive or (calls >= min_calls and failed >= rate * calls)
if not tripped or distinct < min_workers then
  return nil
end

local current = redis.call('HMGET', KEYS[2], 'generation', 'trips')
local generation = tonumber(current[1] or '0') + 1
local trips = tonumber(current[2] or '0') + 1
local timeout = math.min(cap, reset * 2 ^ math.min(trips - 1, MAX_DOUBLINGS))

redis.call('HSET', KEYS[2],
  'target', target, 'state', 'open', 'generation', generation, 'trips', trips,
  'retry_at', string.format('%.3f', now + timeout), 'holder', '')
redis.call('SADD', KEYS[3], target)
redis.call('DEL', KEYS[1], KEYS[4])

local record = cjson.encode({
  target = target, state = 'open', generation = generation,
  retry_in = timeout / 1000, trips = trips, holder = '', epoch = epoch,
})
redis.call('PUBLISH', ARGV[12], record)
return record
