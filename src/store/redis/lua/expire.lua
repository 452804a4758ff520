-- expire: reconnecting members whose grace ran out leave, each with the reason it was lost with,
-- and leadership moves to the earliest present member (crate::rules::expire).
-- KEYS: the session keys. ARGV[1..4]: common; ARGV[5]: 'all' to end every grace now (optional).
-- Returns {'none', next} when no grace ran out, else {'ok', next, change JSON}, where `next` is the
-- earliest deadline still pending in the session ('' for none).
local ALL = ARGV[5] == 'all'
local due = redis.call('ZRANGEBYSCORE', GRACE, '-inf', ALL and '+inf' or now_ms())
local gone = {}
for i = 1, #due do
  redis.call('ZREM', GRACE, due[i])
  local record = redis.call('HGET', MEMBERS, due[i])
  if record then
    local m = cjson.decode(record)
    if is_reconnecting(m) then
      gone[#gone + 1] = m
    end
  end
end
local function next_deadline()
  local first = redis.call('ZRANGE', GRACE, 0, 0, 'WITHSCORES')
  return first[2] or ''
end
if #gone == 0 then
  return { 'none', next_deadline() }
end
local msg = remove_all(gone, function(m)
  return (m.grace and m.grace.reason) or 'disconnected'
end)
return { 'ok', next_deadline(), msg }
