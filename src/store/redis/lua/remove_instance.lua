-- remove_instance: removes every member one instance has in the session (reaping, shutdown),
-- re-electing the leader if needed. Costs O(that instance's members here), via the byinst index.
-- KEYS: the six session keys. ARGV[1..4]: common; ARGV[5]: incarnation; ARGV[6]: reason string.
-- Returns {'none'} when it had no members here, else {'ok', change JSON}.
local from = '[' .. ARGV[5] .. '\0'
local to = '(' .. ARGV[5] .. '\1'
local entries = redis.call('ZRANGEBYLEX', BYINST, from, to)
local skip = #ARGV[5] + 1
local gone = {}
for i = 1, #entries do
  local connection = string.sub(entries[i], skip + 1)
  local record = redis.call('HGET', MEMBERS, connection)
  if record then
    local m = cjson.decode(record)
    if m.instance == ARGV[5] then
      gone[#gone + 1] = m
    end
  end
end
redis.call('ZREMRANGEBYLEX', BYINST, from, to)
if #gone == 0 then
  return { 'none' }
end
table.sort(gone, function(a, b)
  if a.joined_at ~= b.joined_at then
    return a.joined_at < b.joined_at
  end
  return a.connection < b.connection
end)
local h = header()
local events = {}
for i = 1, #gone do
  remove_member(h, gone[i])
  events[#events + 1] = { type = 'member_left', connection = gone[i].connection, user = gone[i].user, reason = ARGV[6] }
end
elect(h, false, events)
local msg = commit(h, events)
return { 'ok', msg }
