-- forget: drops a dead incarnation's lease and every name mapping that points to it.
-- KEYS: as register.lua (KEYS[3] unused). ARGV[1] dead incarnation.
-- Returns the number of name mappings removed. (Its {i:...} keys are deleted by a DEL sent in the
-- same pipeline: they live in another slot.)
redis.call('ZREM', KEYS[1], ARGV[1])
local names = redis.call('HGETALL', KEYS[2])
local removed = 0
for i = 1, #names, 2 do
  if names[i + 1] == ARGV[1] then
    redis.call('HDEL', KEYS[2], names[i])
    removed = removed + 1
  end
end
return removed
