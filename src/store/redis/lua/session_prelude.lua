-- Shared prelude of every session script, after session_base.lua (and, in join and leave, after
-- their planned fast path): the header, membership indexes, election, and commit.

local function header()
  local h = redis.call('HMGET', META, 'version', 'epoch', 'leader', 'ended_at', 'anonymous', 'reconnecting')
  return {
    version = tonumber(h[1]) or 0,
    epoch = tonumber(h[2]) or 0,
    leader = h[3] or false,
    ended_at = h[4] or false,
    -- Present anonymous members and reconnecting members, kept in META: written back by commit,
    -- only when they changed.
    anonymous = tonumber(h[5]) or 0,
    reconnecting = tonumber(h[6]) or 0,
    counts_changed = false,
  }
end

local function is_anonymous(user)
  return user == nil or user == cjson.null
end

-- Indexes a member whose record is in MEMBERS already: election order, instance, user counts.
-- Returns true when this made USERS gain a field (so the USERS key may have just been created).
local function index_member(h, m)
  redis.call('ZADD', ORDER, m.joined_at, m.connection)
  redis.call('ZADD', BYINST, 0, inst_entry(m.instance, m.connection))
  if is_anonymous(m.user) then
    h.anonymous = h.anonymous + 1
    h.counts_changed = true
    return false
  end
  return redis.call('HINCRBY', USERS, m.user, 1) == 1
end

local function is_reconnecting(m)
  return m.state == 'reconnecting'
end

-- A present member stops counting among connections and users, and starts counting as
-- reconnecting (or the other way round when `present`).
local function count_presence(h, m, present)
  local step = present and 1 or -1
  h.reconnecting = h.reconnecting - step
  h.counts_changed = true
  if is_anonymous(m.user) then
    h.anonymous = h.anonymous + step
  elseif redis.call('HINCRBY', USERS, m.user, step) <= 0 then
    redis.call('HDEL', USERS, m.user)
  end
end

local function add_member(h, m)
  redis.call('HSET', MEMBERS, m.connection, cjson.encode(m))
  return index_member(h, m)
end

local function remove_member(h, m)
  redis.call('HDEL', MEMBERS, m.connection)
  redis.call('ZREM', ORDER, m.connection)
  if is_reconnecting(m) then
    -- Counted apart, and listed under no instance.
    redis.call('ZREM', GRACE, m.connection)
    h.reconnecting = h.reconnecting - 1
    h.counts_changed = true
    return
  end
  redis.call('ZREM', BYINST, inst_entry(m.instance, m.connection))
  if is_anonymous(m.user) then
    h.anonymous = h.anonymous - 1
    h.counts_changed = true
  elseif redis.call('HINCRBY', USERS, m.user, -1) <= 0 then
    redis.call('HDEL', USERS, m.user)
  end
end

-- Sorts member records in election order: earliest joined_at first, ties by connection id.
local function sort_by_election(members)
  table.sort(members, function(a, b)
    if a.joined_at ~= b.joined_at then
      return a.joined_at < b.joined_at
    end
    return a.connection < b.connection
  end)
end

-- The earliest present member in election order, or the earliest reconnecting one when nobody
-- is present (crate::rules' Successor). At most `reconnecting` members come before the first
-- present one, so it reads no more records than there are reconnecting members.
local function earliest(h)
  if h.reconnecting <= 0 then
    return redis.call('ZRANGE', ORDER, 0, 0)[1] or false
  end
  local first = redis.call('ZRANGE', ORDER, 0, h.reconnecting)
  for i = 1, #first do
    local record = redis.call('HGET', MEMBERS, first[i])
    if record and not is_reconnecting(cjson.decode(record)) then
      return first[i]
    end
  end
  return first[1] or false
end

-- Keeps a live leader (present or reconnecting); otherwise (or when forced) the earliest present
-- member, else the earliest reconnecting one, or nobody, leads, with a new epoch if that changes
-- the leader.
local function elect(h, force_earliest, events)
  if not force_earliest and h.leader and redis.call('HEXISTS', MEMBERS, h.leader) == 1 then
    return
  end
  local first = earliest(h)
  if first ~= h.leader then
    h.leader = first
    h.epoch = h.epoch + 1
    events[#events + 1] = { type = 'leader_changed', leader = first or cjson.null, epoch = h.epoch }
  end
end

-- Bumps the version, stores the header, publishes the change; returns the published JSON
-- (a crate::store::Broadcast). Each event is a table, or a string of its JSON already encoded.
local function commit(h, events)
  h.version = h.version + 1
  local fields = { 'version', h.version, 'epoch', h.epoch }
  if h.leader then
    fields[#fields + 1] = 'leader'
    fields[#fields + 1] = h.leader
  else
    redis.call('HDEL', META, 'leader')
  end
  if h.counts_changed then
    fields[#fields + 1] = 'anonymous'
    fields[#fields + 1] = h.anonymous
    fields[#fields + 1] = 'reconnecting'
    fields[#fields + 1] = h.reconnecting
  end
  redis.call('HSET', META, unpack(fields))
  local encoded = {}
  for i = 1, #events do
    local e = events[i]
    encoded[i] = type(e) == 'string' and e or cjson.encode(e)
  end
  local leader = h.leader and cjson.encode(h.leader) or 'null'
  -- `origin` first, so that an instance recognises its own echo from the first bytes.
  local msg = '{"origin":' .. cjson.encode(ORIGIN) .. ',"session":' .. cjson.encode(SESSION)
    .. ',"body":{"kind":"change","version":' .. h.version .. ',"leader":' .. leader
    .. ',"epoch":' .. h.epoch .. ',"events":[' .. table.concat(encoded, ',') .. ']}}'
  publish(msg)
  return msg
end

-- Removes `gone` (member records) in one change: in election order, each with a `member_left`
-- whose reason `reason_of(m)` gives (and `detail` when it is not ''), then the leader re-elected
-- if it was among them. Returns the published change JSON.
local function remove_all(gone, reason_of, detail)
  sort_by_election(gone)
  local h = header()
  local events = {}
  for i = 1, #gone do
    local m = gone[i]
    remove_member(h, m)
    local event = { type = 'member_left', connection = m.connection, user = m.user, reason = reason_of(m) }
    if detail and detail ~= '' then
      event.detail = detail
    end
    events[#events + 1] = event
  end
  elect(h, false, events)
  return commit(h, events)
end

-- Refreshes the backstop TTL of every session key (a missing key is left alone). Called where keys
-- may be created (a session's first join, reassert, end) and by touch; the other changes only
-- change or delete fields of keys that already carry the TTL.
local function refresh()
  for i = 1, #KEYS do
    redis.call('PEXPIRE', KEYS[i], TTL)
  end
end

-- {status, change, version, leader|'', epoch, ended_at|'', member records...}
-- (only the view script and the instance's first read of a session list the members)
-- `h` is the header as the script left it (read afresh when not given).
local function view_reply(status, change, h)
  h = h or header()
  local reply = { status, change or '', tostring(h.version), h.leader or '', tostring(h.epoch), h.ended_at or '' }
  local members = redis.call('HVALS', MEMBERS)
  for i = 1, #members do
    reply[#reply + 1] = members[i]
  end
  return reply
end

-- ---- end of prelude ----
