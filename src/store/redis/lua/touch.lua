-- touch: refreshes the backstop TTL of a session's keys while an instance has members there.
-- KEYS: the session keys. ARGV[4]: TTL in milliseconds (ARGV[1..3] unused).
-- Returns 1 when the session exists, 0 otherwise.
if redis.call('EXISTS', META) == 0 then
  return 0
end
refresh()
return 1
