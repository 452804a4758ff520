-- forget: drops a dead incarnation's lease and every name mapping that points to it.
-- KEYS: as register.lua (KEYS[3] unused). ARGV[1] dead incarnation.
-- Returns the number of name mappings removed. (Its {i:...} keys are deleted by a DEL sent in the
-- same pipeline: they live in another slot.)
local LEASES, NAMES = KEYS[1], KEYS[2]
local DEAD = ARGV[1]
redis.call('ZREM', LEASES, DEAD)
local names = redis.call('HGETALL', NAMES)
local removed = 0
for i = 1, #names, 2 do
  if names[i + 1] == DEAD then
    redis.call('HDEL', NAMES, names[i])
    removed = removed + 1
  end
end
return removed
