-- counts: live connections and users of one session (read-only; pipelined once per session).
-- KEYS: the six session keys. ARGV: none.
-- Returns {connections, users}: users = distinct user ids + anonymous connections.
local anonymous = tonumber(redis.call('HGET', META, 'anonymous')) or 0
return { redis.call('HLEN', MEMBERS), redis.call('HLEN', USERS) + anonymous }
