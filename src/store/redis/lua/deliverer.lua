-- deliverer: takes or renews the right to deliver webhooks (crate::store::outbox::Outbox::hold_delivery).
-- KEYS[1] the deliverer key; ARGV[1] this incarnation; ARGV[2] how long it holds it (ms).
-- Returns 1 when this incarnation holds it now, else 0.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
