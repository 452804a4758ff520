-- end: the leader at the given epoch ends the session; every member is removed. With no
-- connection (''), the application's backend ends it (server API, crate::rules::close): no leader
-- to check, `by` null, and a session with no member is not live ({'none'}).
-- KEYS: the session keys. ARGV[1..4]: common; ARGV[5]: connection ('' for the backend);
-- ARGV[6]: epoch.
-- Returns {'not_leader'} | {'ended'} | {'none'} | {'ok', change JSON}. The change carries
-- session_ended, then member_left (reason ended) for every member in election order, then
-- leader_changed(null).
local CONNECTION, EPOCH = ARGV[5], tonumber(ARGV[6])
local BY_BACKEND = CONNECTION == ''
if redis.call('EXISTS', META) == 0 then
  return { BY_BACKEND and 'none' or 'not_leader' }
end
local h = header()
if h.ended_at then
  return { 'ended' }
end
if BY_BACKEND then
  if redis.call('HLEN', MEMBERS) == 0 then
    return { 'none' }
  end
elseif h.leader ~= CONNECTION or h.epoch ~= EPOCH then
  return { 'not_leader' }
end
local ended_at = now_ms()
local events = { { type = 'session_ended', by = BY_BACKEND and cjson.null or CONNECTION } }
local order = redis.call('ZRANGE', ORDER, 0, -1)
for i = 1, #order do
  local record = redis.call('HGET', MEMBERS, order[i])
  local user = cjson.null
  if record then
    user = cjson.decode(record).user
  end
  events[#events + 1] = { type = 'member_left', connection = order[i], user = user, reason = 'ended' }
end
redis.call('DEL', MEMBERS, ORDER, BYINST, USERS, GRACE)
redis.call('HDEL', META, 'anonymous', 'reconnecting')
redis.call('HSET', META, 'ended_at', ended_at)
elect(h, false, events)
local msg = commit(h, events)
refresh()
return { 'ok', msg }
