-- graces_due: the grace index entries whose deadline passed by Redis TIME (read-only).
-- KEYS[1] the grace index zset ({g}). ARGV[1] most entries to return.
-- Returns the entries, '<session>\0<tag>' each.
local INDEX = KEYS[1]
local LIMIT = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', INDEX, '-inf', now, 'LIMIT', 0, LIMIT)
