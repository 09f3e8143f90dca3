-- The reconcile: the store's epoch, every breaker that has moved (with `retry_in` measured on
-- Redis's clock), and the drained targets.
--
-- KEYS[1] breaker registry (set of target names)
-- KEYS[2] epoch (string: this store's lifetime; made on first use)
-- KEYS[3] drained (set of target names)
-- ARGV[1] key prefix of the breaker hashes ("<namespace>:breaker:")
--
-- Returns JSON {epoch, breakers = [record...], drained = [target...]} (an empty array encodes
-- as "{}").

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[2], epoch)
end

local records = {}
for _, target in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HMGET', ARGV[1] .. target, 'state', 'generation', 'trips', 'retry_at', 'holder')
  if h[1] then
    records[#records + 1] = {
      target = target, state = h[1], generation = tonumber(h[2]), trips = tonumber(h[3]),
      retry_in = math.max(0, tonumber(h[4]) - now) / 1000, holder = h[5] or '', epoch = epoch,
    }
  else
    redis.call('SREM', KEYS[1], target)
  end
end
return cjson.encode({epoch = epoch, breakers = records, drained = redis.call('SMEMBERS', KEYS[3])})
