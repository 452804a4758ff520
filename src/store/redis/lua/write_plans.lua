-- write plans: several joins and leaves of this instance's members, planned in a row by the caller
-- (crate::store::plan::Planner), written in one step while the session is still at the first
-- plan's header. Runs on the base alone: it decides nothing, so it needs none of the prelude.
-- ARGV[5] the first plan's header ('<version>:<epoch>:<leader>'); ARGV[6..8] the header after the
-- last plan: version, epoch, leader ('' for nobody); ARGV[9] the change in the number of anonymous
-- members; ARGV[10..13] how many members are added (A), removed (R), users whose connection count
-- changes (U), and changes (C); ARGV[14] the deadline in Redis time (ms, '' for none) after which
-- nothing must be written. Then, each run of arguments laid out as the command that takes it
-- wants it, so that the script builds no tables: A pairs (connection, member record JSON) for
-- MEMBERS, A pairs (joined_at, connection) for ORDER, A pairs ('0', byinst entry) for BYINST; R
-- connections (for MEMBERS and ORDER) and their R byinst entries; U pairs (user id, change in its
-- connection count); C change JSONs, oldest first; and the batch's message, the JSON array of those
-- changes (built by the caller: made here, its bytes would be copied and hashed twice more).
-- A member both added and removed by the batch is in neither list; its changes still are.
-- The batch is one step of the outbox too (when it is on).
-- Returns {'planned'}, or {'moved'} (and writes nothing) when the header is another, or {'late'}
-- (and writes nothing) past the deadline.
local BASIS, VERSION, EPOCH, LEADER, ANONYMOUS = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local ADDED, REMOVED, USER_COUNTS, CHANGES =
  tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local DEADLINE = ARGV[14]
-- Where the runs of arguments start.
local RUNS = 15
if too_late(DEADLINE) then
  return { 'late' }
end
if not at_basis(BASIS) then
  return { 'moved' }
end
local at = RUNS
if ADDED > 0 then
  local pairs_end = at + 2 * ADDED - 1
  redis.call('HSET', MEMBERS, unpack(ARGV, at, pairs_end))
  redis.call('ZADD', ORDER, unpack(ARGV, at + 2 * ADDED, pairs_end + 2 * ADDED))
  redis.call('ZADD', BYINST, unpack(ARGV, at + 4 * ADDED, pairs_end + 4 * ADDED))
  at = at + 6 * ADDED
end
if REMOVED > 0 then
  local last = at + REMOVED - 1
  redis.call('HDEL', MEMBERS, unpack(ARGV, at, last))
  redis.call('ZREM', ORDER, unpack(ARGV, at, last))
  redis.call('ZREM', BYINST, unpack(ARGV, at + REMOVED, last + REMOVED))
  at = at + 2 * REMOVED
end
if ANONYMOUS ~= '0' then
  redis.call('HINCRBY', META, 'anonymous', ANONYMOUS)
end
for _ = 1, USER_COUNTS do
  local user, delta = ARGV[at], tonumber(ARGV[at + 1])
  local now = redis.call('HINCRBY', USERS, user, delta)
  if now <= 0 then
    redis.call('HDEL', USERS, user)
  elseif now == delta then
    redis.call('PEXPIRE', USERS, TTL)
  end
  at = at + 2
end
write_header(VERSION, EPOCH, LEADER)
local last = at + CHANGES - 1
-- One message for the batch, which the feed splits again; the log keeps each change.
redis.call('SPUBLISH', CHANNEL, ARGV[last + 1])
keep_log(redis.call('LPUSH', LOG, unpack(ARGV, at, last)), CHANGES)
keep_for_delivery(ARGV[last + 1])
return { 'planned' }
