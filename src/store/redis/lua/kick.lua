-- kick: the application's backend removes one connection, or every connection of one user,
-- present or reconnecting, on whatever instance holds them (crate::rules::kick): each leaves with
-- reason 'kicked' and the kick's reason text as `detail`, and leadership moves in the same change.
-- KEYS: the session keys. ARGV[1..4]: common; ARGV[5]: 'connection' or 'user'; ARGV[6]: its id;
-- ARGV[7]: the reason text ('' for none).
-- Returns {'none'} when that names no member (nothing changed), else {'ok', change JSON}.
-- A user's connections are found by reading every member record: O(members), as kicks are rare
-- and no index of connections by user is kept.
local KIND, ID, DETAIL = ARGV[5], ARGV[6], ARGV[7]
local gone = {}
if KIND == 'connection' then
  local record = redis.call('HGET', MEMBERS, ID)
  if record then
    gone[1] = cjson.decode(record)
  end
else
  local records = redis.call('HVALS', MEMBERS)
  for i = 1, #records do
    local m = cjson.decode(records[i])
    if m.user == ID then
      gone[#gone + 1] = m
    end
  end
end
if #gone == 0 then
  return { 'none' }
end
return { 'ok', remove_all(gone, function()
  return 'kicked'
end, DETAIL) }
