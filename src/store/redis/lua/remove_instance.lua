-- remove_instance: removes every member one instance has in the session (reaping, shutdown), or
-- every one but those it still holds (an instance removing the strays listed under it), re-electing
-- the leader if needed. Costs O(that instance's members here), via the byinst index.
-- KEYS: the session keys. ARGV[1..4]: common; ARGV[5]: incarnation; ARGV[6]: reason string;
-- ARGV[7..]: connections to keep (none: remove them all).
-- Returns {'none'} when it had no members here to remove, else {'ok', change JSON}.
local INSTANCE, REASON = ARGV[5], ARGV[6]
-- ARGV[KEEP..] are the connections to keep.
local KEEP = 7
local from = '[' .. INSTANCE .. '\0'
local to = '(' .. INSTANCE .. '\1'
local entries = redis.call('ZRANGEBYLEX', BYINST, from, to)
local keep = {}
for i = KEEP, #ARGV do
  keep[ARGV[i]] = true
end
local skip = #INSTANCE + 1
local gone = {}
for i = 1, #entries do
  local connection = string.sub(entries[i], skip + 1)
  if not keep[connection] then
    if #ARGV >= KEEP then
      redis.call('ZREM', BYINST, entries[i])
    end
    local record = redis.call('HGET', MEMBERS, connection)
    if record then
      local m = cjson.decode(record)
      if m.instance == INSTANCE then
        gone[#gone + 1] = m
      end
    end
  end
end
if #ARGV < KEEP then
  redis.call('ZREMRANGEBYLEX', BYINST, from, to)
end
if #gone == 0 then
  return { 'none' }
end
return { 'ok', remove_all(gone, function()
  return REASON
end) }
