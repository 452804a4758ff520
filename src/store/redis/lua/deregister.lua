-- deregister: removes this instance's lease and its name mapping (if still its own).
-- KEYS: as register.lua (KEYS[3] unused). ARGV[1] incarnation, ARGV[2] instance name.
-- Returns 1.
local LEASES, NAMES = KEYS[1], KEYS[2]
local INCARNATION, NAME = ARGV[1], ARGV[2]
redis.call('ZREM', LEASES, INCARNATION)
if redis.call('HGET', NAMES, NAME) == INCARNATION then
  redis.call('HDEL', NAMES, NAME)
end
return 1
