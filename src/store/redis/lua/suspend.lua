-- suspend: present members lost their sockets without a clean end (crate::rules::suspend): each
-- becomes reconnecting until its grace runs out, and is listed under no instance meanwhile.
-- KEYS: the session keys. ARGV[1..4]: common; ARGV[5]: 'connection' (one member of this instance)
-- or 'instance' (every present member of an instance); ARGV[6]: the connection or the instance's
-- incarnation; ARGV[7]: the reason it leaves with when the grace runs out; ARGV[8]: grace in ms.
-- Returns {'none'} when no such member was present, else {'ok', change JSON, deadline}.
local WHOSE, WHO, REASON, GRACE_MS = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local losing = {}
if WHOSE == 'connection' then
  local record = redis.call('HGET', MEMBERS, WHO)
  if record then
    local m = cjson.decode(record)
    if m.instance == ORIGIN then
      losing[1] = m
    end
  end
else
  local entries = redis.call('ZRANGEBYLEX', BYINST, '[' .. WHO .. '\0', '(' .. WHO .. '\1')
  local skip = #WHO + 1
  for i = 1, #entries do
    local record = redis.call('HGET', MEMBERS, string.sub(entries[i], skip + 1))
    if record then
      local m = cjson.decode(record)
      if m.instance == WHO then
        losing[#losing + 1] = m
      end
    end
  end
end
local h = header()
local deadline = now_ms() + GRACE_MS
local events = {}
for i = 1, #losing do
  local m = losing[i]
  if not is_reconnecting(m) then
    m.state = 'reconnecting'
    m.grace = { reason = REASON, ['until'] = deadline }
    redis.call('HSET', MEMBERS, m.connection, cjson.encode(m))
    redis.call('ZREM', BYINST, inst_entry(m.instance, m.connection))
    redis.call('ZADD', GRACE, deadline, m.connection)
    count_presence(h, m, false)
    events[#events + 1] = { type = 'member_updated', member = m }
  end
end
if #events == 0 then
  return { 'none' }
end
local msg = commit(h, events)
return { 'ok', msg, tostring(deadline) }
