-- untrack: takes vacated sessions out of the directory (crate::store::outbox::Directory::tidy_directory).
-- KEYS[1] directory (lex zset), KEYS[2] marks (zset by mark time). ARGV: pairs (session, the mark
-- the caller read before it found the session without members and without outbox entries).
-- A session marked again since keeps its place: a change may be on its way to it.
-- Returns how many sessions it took out.
local removed = 0
for i = 1, #ARGV, 2 do
  local session, seen = ARGV[i], ARGV[i + 1]
  local mark = redis.call('ZSCORE', KEYS[2], session)
  if mark and tonumber(mark) == tonumber(seen) then
    redis.call('ZREM', KEYS[2], session)
    redis.call('ZREM', KEYS[1], session)
    removed = removed + 1
  end
end
return removed
