-- deregister: removes this instance's lease and its name mapping (if still its own).
-- KEYS: as register.lua (KEYS[3] unused). ARGV[1] incarnation, ARGV[2] instance name.
-- Returns 1.
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
