-- join: adds one member, electing it leader if the session has none. Its arguments are named in
-- join_planned.lua, which runs first.
-- KEYS: the session keys (see session_base.lua). ARGV[1..4]: common (ditto);
-- ARGV[5]: member JSON (its joined_at is replaced by Redis TIME, made strictly later than every
-- member's so that join order is election order even within one millisecond); ARGV[6]: max members;
-- ARGV[7]: the deadline in Redis time (ms, '' for none) after which the join must not happen.
-- ARGV[8..14]: the caller's plan (crate::store::plan), ARGV[8] '' when there is none: the header
-- it applies to ('<version>:<epoch>:<leader>'), the connection, its record (JSON, joined_at stamped), its joined_at, its user id
-- ('' for an anonymous member), the change JSON, and the version after it.
-- Returns {'late'} past the deadline | {'ended'} | {'full'} | {'same', version} for an idempotent
-- re-join | {'ok', change JSON}
-- after the join | {'planned'} when the plan was written as it is: never the member list, so a
-- join costs the same in a session of any size.
local h = header()
if h.ended_at then
  return { 'ended' }
end
local member = cjson.decode(MEMBER)
member.joined_at = now_ms()
local latest = redis.call('ZRANGE', ORDER, -1, -1, 'WITHSCORES')
if latest[2] and tonumber(latest[2]) >= member.joined_at then
  member.joined_at = tonumber(latest[2]) + 1
end
-- The record is written first (HSETNX: a member already there is left as it is), and taken back
-- when it made the session too large, so a join that goes through costs one write of the record.
local record = cjson.encode(member)
if redis.call('HSETNX', MEMBERS, member.connection, record) == 0 then
  return { 'same', tostring(h.version) }
end
local count = redis.call('HLEN', MEMBERS) - 1
if count >= tonumber(MAX_MEMBERS) then
  redis.call('HDEL', MEMBERS, member.connection)
  return { 'full' }
end
local new_user = index_member(h, member)
if count == 0 then
  -- A session that starts again keeps no log of its earlier life.
  redis.call('DEL', LOG)
end
local events = { '{"type":"member_joined","member":' .. record .. '}' }
elect(h, false, events)
local msg = commit(h, events)
-- A session with members already has all its keys, each with the backstop TTL (kept alive by
-- touch); only a first member creates them, and only a user's first connection may create USERS.
if count == 0 then
  refresh()
elseif new_user then
  redis.call('PEXPIRE', USERS, TTL)
end
return { 'ok', msg }
