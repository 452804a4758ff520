-- publish: gives a message the next offset of its session's stream, keeps it in the session's
-- history, and publishes it on the session's channel, all in one step (crate::store::history).
-- Standalone (not a session script): it touches only the stream and history keys.
-- Returns {stream id, offset}: the message's place.
--
-- KEYS[1] stream  hash: id (the stream's id), offset (the latest message's), until (when the stream
--                 and the history expire, Redis ms)
-- KEYS[2] history list: the latest messages, newest first, consecutive offsets ending at `offset`
--                 (JSON of crate::store::StoredMessage)
-- ARGV[1] the session's sharded pub/sub channel, ARGV[2] origin incarnation (JSON string),
-- ARGV[3] session id (JSON string), ARGV[4] from (JSON string), ARGV[5] user (JSON string or null),
-- ARGV[6] data (JSON), ARGV[7] how many messages to keep (0: none), ARGV[8] how long to keep them
-- (ms), ARGV[9] a fresh random id for the stream, used if it has to start afresh.
local STREAM, HISTORY = KEYS[1], KEYS[2]
local CHANNEL, ORIGIN, SESSION = ARGV[1], ARGV[2], ARGV[3]
local FROM, USER, DATA = ARGV[4], ARGV[5], ARGV[6]
local SIZE, TTL, FRESH = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
-- HISTORY may grow this far past SIZE before it is trimmed back, so that most messages cost one
-- LPUSH and no LTRIM; reads never return more than SIZE.
local SLACK = 16

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', STREAM, 'id', 'offset', 'until')
local id, offset, expires = s[1], tonumber(s[2]) or 0, tonumber(s[3]) or 0
local fields = {}
if not id then
  -- No stream (the session's first message, a stream silent past its expiry, or a store that lost
  -- its data): a new one, whose offsets cannot be taken for the old one's.
  id, offset, expires = FRESH, 0, 0
  redis.call('DEL', HISTORY)
  fields = { 'id', id }
end
offset = offset + 1
fields[#fields + 1] = 'offset'
fields[#fields + 1] = offset
-- The keys' expiry moves only when less than TTL is left, to twice TTL: at most once per TTL.
local renew = now + TTL > expires
if renew then
  expires = now + 2 * TTL
  fields[#fields + 1] = 'until'
  fields[#fields + 1] = expires
end
redis.call('HSET', STREAM, unpack(fields))
if renew then
  redis.call('PEXPIREAT', STREAM, expires)
end
local body = '"from":' .. FROM .. ',"user":' .. USER .. ',"data":' .. DATA
if SIZE > 0 then
  local kept = redis.call('LPUSH', HISTORY, '{"offset":' .. offset .. ',' .. body .. ',"at":' .. now .. '}')
  if renew or kept == 1 then
    -- A history created here gets the stream's expiry too.
    redis.call('PEXPIREAT', HISTORY, expires)
  end
  if kept > SIZE + SLACK then
    redis.call('LTRIM', HISTORY, 0, SIZE - 1)
  end
else
  -- Nothing is kept, and nothing kept before may stay: the history's offsets must stay consecutive.
  redis.call('DEL', HISTORY)
end
-- A crate::store::Broadcast; `origin` first, so that an instance recognises its own echo.
redis.call('SPUBLISH', CHANNEL, '{"origin":' .. ORIGIN .. ',"session":' .. SESSION
  .. ',"body":{"kind":"message",' .. body .. ',"stream":"' .. id .. '","offset":' .. offset .. '}}')
return { id, offset }
