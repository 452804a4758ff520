-- leave: removes one connection, re-electing the leader if it was the leader. Its arguments are
-- named in leave_planned.lua, which runs first.
-- KEYS: the session keys. ARGV[1..4]: common; ARGV[5]: connection; ARGV[6]: reason string.
-- ARGV[7..12]: the caller's plan (crate::store::plan), ARGV[7] '' when there is none: the header
-- it applies to ('<version>:<epoch>:<leader>'), the member's user id ('' for an anonymous member), the version after it, the
-- leader after it ('' for nobody), the epoch after it, and the change JSON.
-- Returns {'none'} when it was not a member (or is another instance's), {'planned'} when the plan was written as it is, else
-- {'ok', change JSON}.
local record = redis.call('HGET', MEMBERS, CONNECTION)
if not record then
  return { 'none' }
end
local m = cjson.decode(record)
if m.instance ~= ORIGIN then
  -- Resumed on another instance since: it is that instance's member now, not this one's to end.
  return { 'none' }
end
local h = header()
remove_member(h, m)
local events = { { type = 'member_left', connection = m.connection, user = m.user, reason = REASON } }
-- Any other leader is a member still (every removal re-elects), so only its own leave or a
-- leaderless session needs an election; either way no leader is live, so the earliest member
-- leads (forced: no need to ask whether the old leader is still there).
if not h.leader or h.leader == m.connection then
  elect(h, true, events)
end
local msg = commit(h, events)
return { 'ok', msg }
