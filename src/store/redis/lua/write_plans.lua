-- write plans: several joins and leaves of this instance's members, planned in a row by the caller
-- (crate::store::plan::Planner), written in one step while the session is still at the first
-- plan's header. Runs on the base alone: it decides nothing, so it needs none of the prelude.
-- ARGV[5] the first plan's header ('<version>:<epoch>:<leader>'); ARGV[6..8] the header after the
-- last plan: version, epoch, leader ('' for nobody); ARGV[9] the change in the number of anonymous
-- members; ARGV[10..13] how many members are added (A), removed (R), users whose connection count
-- changes (U), and changes (C). Then A triples (connection, member record JSON, joined_at), R
-- connections, U pairs (user id, change in its connection count), and C change JSONs, oldest first.
-- A member both added and removed by the batch is in neither list; its changes still are.
-- Returns {'planned'}, or {'moved'} (and writes nothing) when the header is another.
if not at_basis(ARGV[5]) then
  return { 'moved' }
end
local added, removed, users, changes = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]),
  tonumber(ARGV[13])
local at = 14
if added > 0 then
  local records, order, byinst = {}, {}, {}
  for _ = 1, added do
    local connection = ARGV[at]
    records[#records + 1] = connection
    records[#records + 1] = ARGV[at + 1]
    order[#order + 1] = ARGV[at + 2]
    order[#order + 1] = connection
    byinst[#byinst + 1] = '0'
    byinst[#byinst + 1] = inst_entry(ORIGIN, connection)
    at = at + 3
  end
  redis.call('HSET', MEMBERS, unpack(records))
  redis.call('ZADD', ORDER, unpack(order))
  redis.call('ZADD', BYINST, unpack(byinst))
end
if removed > 0 then
  local connections, entries = {}, {}
  for i = 1, removed do
    connections[i] = ARGV[at]
    entries[i] = inst_entry(ORIGIN, ARGV[at])
    at = at + 1
  end
  redis.call('HDEL', MEMBERS, unpack(connections))
  redis.call('ZREM', ORDER, unpack(connections))
  redis.call('ZREM', BYINST, unpack(entries))
end
if ARGV[9] ~= '0' then
  redis.call('HINCRBY', META, 'anonymous', ARGV[9])
end
for _ = 1, users do
  local user, delta = ARGV[at], tonumber(ARGV[at + 1])
  local now = redis.call('HINCRBY', USERS, user, delta)
  if now <= 0 then
    redis.call('HDEL', USERS, user)
  elseif now == delta then
    redis.call('PEXPIRE', USERS, TTL)
  end
  at = at + 2
end
if ARGV[8] == '' then
  redis.call('HDEL', META, 'leader')
  redis.call('HSET', META, 'version', ARGV[6], 'epoch', ARGV[7])
else
  redis.call('HSET', META, 'version', ARGV[6], 'epoch', ARGV[7], 'leader', ARGV[8])
end
local logged = {}
for i = 1, changes do
  logged[i] = ARGV[at + i - 1]
end
-- One message for the batch: a JSON array of the changes, which the feed splits again.
redis.call('SPUBLISH', CHANNEL, '[' .. table.concat(logged, ',') .. ']')
keep_log(redis.call('LPUSH', LOG, unpack(logged)), changes)
return { 'planned' }
