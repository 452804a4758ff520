-- counts: present connections, users and reconnecting members of one session (read-only;
-- pipelined once per session).
-- KEYS: the session keys. ARGV: none.
-- Returns {connections, users, reconnecting}: users = distinct user ids + anonymous connections,
-- both among present members (USERS and `anonymous` count present members only).
local h = redis.call('HMGET', META, 'anonymous', 'reconnecting')
local anonymous = tonumber(h[1]) or 0
local reconnecting = tonumber(h[2]) or 0
return { redis.call('HLEN', MEMBERS) - reconnecting, redis.call('HLEN', USERS) + anonymous, reconnecting }
