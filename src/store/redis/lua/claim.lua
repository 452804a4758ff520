-- claim: claims the reaping of a dead instance for a short while.
-- KEYS[1] the dead instance's claim key (tag {i:<dead>}). ARGV[1] claimer incarnation,
-- ARGV[2] claim duration ms.
-- Returns 1 when the claim is ours (new, or already ours), 0 when another instance holds it.
local CLAIM = KEYS[1]
local CLAIMER, DURATION_MS = ARGV[1], ARGV[2]
local holder = redis.call('GET', CLAIM)
if holder and holder ~= CLAIMER then
  return 0
end
redis.call('SET', CLAIM, CLAIMER, 'PX', DURATION_MS)
return 1
