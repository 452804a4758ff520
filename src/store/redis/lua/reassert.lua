-- reassert: puts an instance's local members back after the store lost them, keeping their
-- original joined_at; version and epoch continue from at least the floor; forces the earliest
-- member to lead.
-- KEYS: the session keys. ARGV[1..4]: common; ARGV[5]: floor version; ARGV[6]: floor epoch;
-- ARGV[7..]: member JSONs.
-- Returns {'ended'} | {'none'} (nothing was missing) | {'ok', change JSON}.
local FLOOR_VERSION, FLOOR_EPOCH = tonumber(ARGV[5]), tonumber(ARGV[6])
-- ARGV[MEMBERS_FROM..] are the member records.
local MEMBERS_FROM = 7
local h = header()
if h.ended_at then
  return { 'ended' }
end
if FLOOR_VERSION > h.version then
  -- The version jumps: the log would no longer hold consecutive versions.
  redis.call('DEL', LOG)
end
h.version = math.max(h.version, FLOOR_VERSION)
h.epoch = math.max(h.epoch, FLOOR_EPOCH)
redis.call('HSET', META, 'version', h.version, 'epoch', h.epoch)
local events = {}
for i = MEMBERS_FROM, #ARGV do
  local m = cjson.decode(ARGV[i])
  local record = redis.call('HGET', MEMBERS, m.connection)
  if not record then
    add_member(h, m)
    events[#events + 1] = { type = 'member_joined', member = m }
  else
    local listed = cjson.decode(record)
    if is_reconnecting(listed) then
      -- Another instance took this one for dead; the member is here, present.
      redis.call('ZREM', GRACE, m.connection)
      count_presence(h, listed, true)
      listed.state = 'present'
      listed.grace = nil
      listed.instance = m.instance
      redis.call('HSET', MEMBERS, m.connection, cjson.encode(listed))
      redis.call('ZADD', BYINST, 0, inst_entry(m.instance, m.connection))
      events[#events + 1] = { type = 'member_updated', member = listed }
    end
  end
end
if #events == 0 then
  refresh()
  return { 'none' }
end
elect(h, true, events)
local msg = commit(h, events)
refresh()
return { 'ok', msg }
