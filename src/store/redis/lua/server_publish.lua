-- server_publish: the application's backend publishes a message (`from` and `user` null) only to
-- a session that has a member. This guard runs first; publish.lua follows it in the same script
-- (scripts.rs concatenates them), so checking and publishing are one step.
-- KEYS[1..2]: as publish.lua (stream, history); KEYS[3]: the session's members hash (same hash
-- tag, so the same slot). ARGV: as publish.lua.
-- Returns {'none'} when the session has no member (nothing published), else publish.lua's
-- {stream id, offset}.
if redis.call('HLEN', KEYS[3]) == 0 then
  return { 'none' }
end
