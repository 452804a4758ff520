-- expired: incarnations whose lease expired before Redis TIME now (read-only).
-- KEYS[1] leases zset. ARGV: none. Returns the list of incarnations.
local LEASES = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. now)
