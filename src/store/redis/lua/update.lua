-- update: replaces the name and avatar of a member.
-- KEYS: the session keys. ARGV[1..4]: common; ARGV[5]: member JSON (name and avatar used).
-- Returns {'none'} when it is not a member, else {'ok', change JSON}.
local MEMBER = ARGV[5]
local new = cjson.decode(MEMBER)
local record = redis.call('HGET', MEMBERS, new.connection)
if not record then
  return { 'none' }
end
local m = cjson.decode(record)
m.name = new.name
m.avatar = new.avatar
redis.call('HSET', MEMBERS, m.connection, cjson.encode(m))
local h = header()
local msg = commit(h, { { type = 'member_updated', member = m } })
return { 'ok', msg }
