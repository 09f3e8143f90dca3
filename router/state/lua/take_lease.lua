-- Hold a lease for ttl ms unless another owner holds it; its owner renews it.
--
-- KEYS[1] lease (string: the owner)
-- ARGV    owner, ttl_ms
--
-- Returns 1 when `owner` holds the lease now, else 0.

if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
