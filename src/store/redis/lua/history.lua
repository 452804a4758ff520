-- history: reads a session's kept messages after an offset (read-only; crate::store::history).
-- Returns {} when the session has no stream, else {stream id, latest offset, entries...}: the
-- entries after `since` (JSON of crate::store::StoredMessage), oldest first, from the oldest one
-- still kept, at most `limit` of them.
--
-- KEYS[1] stream  hash: id, offset (the latest message's), until (see publish.lua)
-- KEYS[2] history list: the latest messages, newest first, consecutive offsets ending at `offset`
-- ARGV[1] since: the offset to read after ('' reads from the oldest kept message)
-- ARGV[2] limit: the most messages to return (0: only the stream and its latest offset)
-- ARGV[3] size: only the latest this many count as kept (the reader's --history-size)
-- ARGV[4] ttl: messages older than this many milliseconds count as dropped
local STREAM, HISTORY = KEYS[1], KEYS[2]
local SINCE, LIMIT = tonumber(ARGV[1]) or 0, tonumber(ARGV[2])
local SIZE, TTL = tonumber(ARGV[3]), tonumber(ARGV[4])

local s = redis.call('HMGET', STREAM, 'id', 'offset')
if not s[1] then
  return {}
end
local latest = tonumber(s[2]) or 0
local reply = { s[1], latest }
if LIMIT == 0 or SINCE >= latest then
  return reply
end
local t = redis.call('TIME')
local fresh_from = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - TTL
-- Offset o is at index latest - o.
local kept = math.min(redis.call('LLEN', HISTORY), SIZE)
local first = math.max(SINCE + 1, latest - kept + 1)
local taken = 0
while first <= latest and taken < LIMIT do
  local last = math.min(latest, first + LIMIT - taken - 1)
  local entries = redis.call('LRANGE', HISTORY, latest - last, latest - first)
  for i = #entries, 1, -1 do
    local entry = entries[i]
    -- The oldest ones may be past the TTL (`at` ends every entry); after a fresh one, all are.
    if taken > 0 or (tonumber(string.match(entry, '"at":(%-?%d+)}$')) or 0) >= fresh_from then
      reply[#reply + 1] = entry
      taken = taken + 1
    end
  end
  first = last + 1
end
return reply
