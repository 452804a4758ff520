-- leave: removes one connection, re-electing the leader if it was the leader.
-- KEYS: the five session keys. ARGV[1..4]: common; ARGV[5]: connection; ARGV[6]: reason string.
-- Returns {'none'} when it was not a member, else {'ok', change JSON}.
local record = redis.call('HGET', MEMBERS, ARGV[5])
if not record then
  return { 'none' }
end
local m = cjson.decode(record)
local h = header()
remove_member(m)
local events = { { type = 'member_left', connection = m.connection, user = m.user, reason = ARGV[6] } }
elect(h, false, events)
local msg = commit(h, events)
return { 'ok', msg }
