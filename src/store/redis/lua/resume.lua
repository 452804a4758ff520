-- resume: a socket of this instance claims a member (crate::rules::resume): the same record, held
-- by this instance from now on, and present; one member_updated when it moves here from another
-- instance or was reconnecting.
-- KEYS: the session keys. ARGV[1..4]: common; ARGV[5]: connection; ARGV[6]: the claiming
-- socket's user id ('' for anonymous); ARGV[7]: the deadline in Redis time (ms, '' for none).
-- Returns {'late'} past the deadline | {'none'} when it is no member | {'forbidden'} when it is
-- another user's | {'same', version} when this instance holds it already | {'ok', change JSON}.
local CONNECTION, USER, DEADLINE = ARGV[5], ARGV[6], ARGV[7]
if too_late(DEADLINE) then
  return { 'late' }
end
local record = redis.call('HGET', MEMBERS, CONNECTION)
if not record then
  return { 'none' }
end
local m = cjson.decode(record)
if not is_anonymous(m.user) and m.user ~= USER then
  return { 'forbidden' }
end
local h = header()
local reconnecting = is_reconnecting(m)
if m.instance == ORIGIN and not reconnecting then
  return { 'same', tostring(h.version) }
end
if reconnecting then
  -- Present again: its grace ends, and it counts among connections and users again.
  redis.call('ZREM', GRACE, CONNECTION)
  count_presence(h, m, true)
  m.state = 'present'
  m.grace = nil
else
  redis.call('ZREM', BYINST, inst_entry(m.instance, CONNECTION))
end
m.instance = ORIGIN
redis.call('ZADD', BYINST, 0, inst_entry(ORIGIN, CONNECTION))
redis.call('HSET', MEMBERS, CONNECTION, cjson.encode(m))
local msg = commit(h, { { type = 'member_updated', member = m } })
return { 'ok', msg }
