-- join, planned: writes the caller's plan (crate::store::plan) as it is while the session is still
-- at the plan's header, before the prelude's functions exist, so a written plan costs only its
-- commands. Arguments: see join.lua. Falls through to join.lua's own logic otherwise.
-- The arguments of join (see join.lua), named once for both parts.
local MEMBER, MAX_MEMBERS, DEADLINE = ARGV[5], ARGV[6], ARGV[7]
local PLAN_BASIS, PLAN_CONNECTION, PLAN_RECORD, PLAN_JOINED_AT, PLAN_USER, PLAN_CHANGE, PLAN_VERSION =
  ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]
if too_late(DEADLINE) then
  return { 'late' }
end
if PLAN_BASIS ~= '' and at_basis(PLAN_BASIS) then
  -- The session is where the caller's view has it, so the plan is what the code below would do.
  if redis.call('HSETNX', MEMBERS, PLAN_CONNECTION, PLAN_RECORD) == 1 then
    redis.call('ZADD', ORDER, PLAN_JOINED_AT, PLAN_CONNECTION)
    redis.call('ZADD', BYINST, '0', inst_entry(ORIGIN, PLAN_CONNECTION))
    if PLAN_USER == '' then
      redis.call('HINCRBY', META, 'anonymous', '1')
    elseif redis.call('HINCRBY', USERS, PLAN_USER, '1') == 1 then
      redis.call('PEXPIRE', USERS, TTL)
    end
    redis.call('HSET', META, 'version', PLAN_VERSION)
    publish(PLAN_CHANGE)
    return { 'planned' }
  end
end
