-- resume: a socket of this instance claims a member (crate::rules::resume): the same record, held
-- by this instance from now on; one member_updated when it moves here from another instance.
-- KEYS: the six session keys. ARGV[1..4]: common; ARGV[5]: connection; ARGV[6]: the claiming
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
if m.instance == ORIGIN then
  return { 'same', tostring(h.version) }
end
redis.call('ZREM', BYINST, inst_entry(m.instance, CONNECTION))
m.instance = ORIGIN
redis.call('ZADD', BYINST, 0, inst_entry(ORIGIN, CONNECTION))
redis.call('HSET', MEMBERS, CONNECTION, cjson.encode(m))
local msg = commit(h, { { type = 'member_updated', member = m } })
return { 'ok', msg }
