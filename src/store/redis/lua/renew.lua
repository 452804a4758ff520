-- renew: renews this instance's lease and tells whether it had been lost or Redis lost its data.
-- KEYS: as register.lua. ARGV[1] incarnation, ARGV[2] instance name, ARGV[3] lease ms,
-- ARGV[4] generation this instance knows, ARGV[5] fresh random token (used if none exists).
-- Returns {'held'|'lost'|'reset', current generation}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local generation = redis.call('GET', KEYS[3])
local status
if not generation then
  redis.call('SET', KEYS[3], ARGV[5])
  generation = ARGV[5]
  status = 'reset'
elseif generation ~= ARGV[4] then
  status = 'reset'
elseif not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  status = 'lost'
else
  status = 'held'
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return { status, generation }
