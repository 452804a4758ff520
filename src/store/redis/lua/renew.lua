-- renew: renews this instance's lease and tells whether it had been lost or Redis lost its data.
-- KEYS: as register.lua. ARGV[1] incarnation, ARGV[2] instance name, ARGV[3] lease ms,
-- ARGV[4] generation this instance knows, ARGV[5] fresh random token (used if none exists).
-- Returns {'held'|'lost'|'reset', current generation, Redis time in ms}.
local LEASES, NAMES, GENERATION = KEYS[1], KEYS[2], KEYS[3]
local INCARNATION, NAME, LEASE_MS, KNOWN, FRESH = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local generation = redis.call('GET', GENERATION)
local status
if not generation then
  redis.call('SET', GENERATION, FRESH)
  generation = FRESH
  status = 'reset'
elseif generation ~= KNOWN then
  status = 'reset'
elseif not redis.call('ZSCORE', LEASES, INCARNATION) then
  status = 'lost'
else
  status = 'held'
end
redis.call('ZADD', LEASES, now + LEASE_MS, INCARNATION)
redis.call('HSET', NAMES, NAME, INCARNATION)
return { status, generation, now }
