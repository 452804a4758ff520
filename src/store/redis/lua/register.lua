-- register: registers this instance's lease, timed by Redis TIME.
-- KEYS (all tagged {g}, one slot): KEYS[1] leases zset (incarnation scored by expiry ms),
--   KEYS[2] names hash (instance name -> current incarnation), KEYS[3] generation token string.
-- ARGV[1] incarnation, ARGV[2] instance name, ARGV[3] lease ms, ARGV[4] fresh random token (used
-- only when no generation exists yet).
-- Returns {generation, previous incarnation of the name if it is still registered}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[3], ARGV[4], 'NX')
local generation = redis.call('GET', KEYS[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
local previous = redis.call('HGET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
if previous and previous ~= ARGV[1] and redis.call('ZSCORE', KEYS[1], previous) then
  return { generation, previous }
end
return { generation }
