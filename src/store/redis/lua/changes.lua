-- changes: the changes after a version, for an instance that missed some (read-only).
-- KEYS: the session keys. ARGV[1..4]: common; ARGV[5]: the version the caller has.
-- Returns {'ok', change JSON...} oldest first (none when the caller is current) | {'none'} when the
-- log no longer reaches back that far (the caller then reads the whole view).
local SINCE = tonumber(ARGV[5])
local h = header()
if SINCE >= h.version then
  return { 'ok' }
end
local missing = h.version - SINCE
-- LOG may hold up to LOG_SLACK more, but reaches back LOG_LENGTH changes, as promised.
if missing > math.min(LOG_LENGTH, redis.call('LLEN', LOG)) then
  return { 'none' }
end
local newest_first = redis.call('LRANGE', LOG, 0, missing - 1)
local reply = { 'ok' }
for i = #newest_first, 1, -1 do
  reply[#reply + 1] = newest_first[i]
end
return reply
