-- register: registers this instance's lease, timed by Redis TIME.
-- KEYS (all tagged {g}, one slot): KEYS[1] leases zset (incarnation scored by expiry ms),
--   KEYS[2] names hash (instance name -> current incarnation), KEYS[3] generation token string.
-- ARGV[1] incarnation, ARGV[2] instance name, ARGV[3] lease ms, ARGV[4] fresh random token (used
-- only when no generation exists yet).
-- Returns {generation, previous incarnation of the name if it is still registered or '', Redis
-- time in ms}.
local LEASES, NAMES, GENERATION = KEYS[1], KEYS[2], KEYS[3]
local INCARNATION, NAME, LEASE_MS, FRESH = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', GENERATION, FRESH, 'NX')
local generation = redis.call('GET', GENERATION)
redis.call('ZADD', LEASES, now + LEASE_MS, INCARNATION)
local previous = redis.call('HGET', NAMES, NAME)
redis.call('HSET', NAMES, NAME, INCARNATION)
if previous and previous ~= INCARNATION and redis.call('ZSCORE', LEASES, previous) then
  return { generation, previous, now }
end
return { generation, '', now }
