-- The start of every session script (scripts.rs puts it first): its keys and arguments, the
-- change log's length, publishing a change and writing a plan's header. What a written plan needs,
-- and nothing more.
--
-- Session KEYS (all share the hash tag {s:<session>}, so one Redis Cluster slot):
--   KEYS[1] meta    hash: version, epoch, leader, ended_at, anonymous (count of present anonymous
--                         members), reconnecting (count of reconnecting members)
--   KEYS[2] members hash: connection -> member record (JSON of crate::model::Member)
--   KEYS[3] order   zset: connection scored by joined_at (election order; ties by connection id)
--   KEYS[4] byinst  zset: "<incarnation>\0<connection>", all scores 0 (lex range = one instance)
--   KEYS[5] users   hash: user id -> number of live connections of that user
--   KEYS[6] log     list: the last LOG_LENGTH published changes, newest first (gap repair)
--   KEYS[7] grace   zset: reconnecting member -> when its grace runs out (Redis time, ms)
--   KEYS[8] outbox  list: steps kept for the backend's webhooks, oldest first (crate::store::outbox);
--                         passed only while the outbox is on
-- Common ARGV:
--   ARGV[1] sharded pub/sub channel of the session (SPUBLISH), ARGV[2] origin incarnation, ARGV[3] session id,
--   ARGV[4] backstop TTL of the session keys in milliseconds. Script-specific ARGV start at 5.
-- Scripts never build key names: they touch KEYS only.
local META, MEMBERS, ORDER, BYINST, USERS, LOG, GRACE =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
-- Changes kept in LOG: an instance that missed fewer than this reads them instead of every member.
local LOG_LENGTH = 64
-- LOG may grow this far past LOG_LENGTH before it is trimmed back, so that most changes cost one
-- LPUSH and no LTRIM; reads never reach back further than LOG_LENGTH.
local LOG_SLACK = 16
local OUTBOX = KEYS[8]
local CHANNEL, ORIGIN, SESSION, TTL = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

-- Redis time in ms, read once per script run: every use within one step means the same moment.
local NOW
local function now_ms()
  if not NOW then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW
end

local function inst_entry(instance, connection)
  return instance .. '\0' .. connection
end

-- After `pushed` changes (each a crate::store::Broadcast JSON) were LPUSHed onto LOG, which now
-- holds `logged`: gives a new log the backstop TTL and trims a long one. Versions in LOG are
-- consecutive: entry i (from 0) is the latest version - i.
local function keep_log(logged, pushed)
  if logged == pushed then
    -- A log created here (after a re-assertion cleared it) gets the backstop TTL too.
    redis.call('PEXPIRE', LOG, TTL)
  elseif logged > LOG_LENGTH + LOG_SLACK then
    redis.call('LTRIM', LOG, 0, LOG_LENGTH - 1)
  end
end

-- Keeps one step's changes for the backend while the outbox is on: `changes` is the JSON of their
-- broadcast (one change) or the array of their broadcasts, oldest first. An entry is two list items (crate::store::redis::outbox): its
-- header '<at> <members>' (Redis ms, members after the step) and the changes as given, so that the
-- changes' bytes are not copied into a new string here.
local function keep_for_delivery(changes)
  if not OUTBOX then
    return
  end
  -- '%d' (a 64-bit integer here) formats the time without the cost of a float format.
  local header = string.format('%d %d', now_ms(), redis.call('HLEN', MEMBERS))
  if redis.call('RPUSH', OUTBOX, header, changes) == 2 then
    redis.call('PEXPIRE', OUTBOX, TTL)
  end
end

-- Publishes a change JSON (a crate::store::Broadcast), keeps it in LOG and, for the backend, in
-- OUTBOX.
local function publish(msg)
  redis.call('SPUBLISH', CHANNEL, msg)
  keep_log(redis.call('LPUSH', LOG, msg), 1)
  keep_for_delivery(msg)
end

-- Writes the header a plan leaves: its version and epoch, and its leader ('' for nobody).
local function write_header(version, epoch, leader)
  if leader == '' then
    redis.call('HDEL', META, 'leader')
    redis.call('HSET', META, 'version', version, 'epoch', epoch)
  else
    redis.call('HSET', META, 'version', version, 'epoch', epoch, 'leader', leader)
  end
end

-- Whether `deadline` (Redis time in ms, '' for none) has passed: the caller has given up waiting
-- and told its client the request failed, so it must not happen now (crate::store::redis::deadline).
local function too_late(deadline)
  if deadline == '' then
    return false
  end
  return now_ms() > tonumber(deadline)
end

-- Whether the session's header is still the one a plan was made from: `basis` is
-- '<version>:<epoch>:<leader>', as crate::store::redis::membership writes it.
local function at_basis(basis)
  local h = redis.call('HMGET', META, 'version', 'epoch', 'leader')
  return table.concat({ h[1] or '', h[2] or '', h[3] or '' }, ':') == basis
end
