-- claim: claims the reaping of a dead instance for a short while.
-- KEYS[1] the dead instance's claim key (tag {i:<dead>}). ARGV[1] claimer incarnation,
-- ARGV[2] claim duration ms.
-- Returns 1 when the claim is ours (new, or already ours), 0 when another instance holds it.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
