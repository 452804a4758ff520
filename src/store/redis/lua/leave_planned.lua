-- leave, planned: writes the caller's plan (crate::store::plan) as it is while the session is still
-- at the plan's header, before the prelude's functions exist, so a written plan costs only its
-- commands. Arguments: see leave.lua. Falls through to leave.lua's own logic otherwise.
-- The arguments of leave (see leave.lua), named once for both parts.
local CONNECTION, REASON = ARGV[5], ARGV[6]
local PLAN_BASIS, PLAN_USER, PLAN_VERSION, PLAN_LEADER, PLAN_EPOCH, PLAN_CHANGE =
  ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
if PLAN_BASIS ~= '' and at_basis(PLAN_BASIS) then
  -- The session is where the caller's view has it, so the plan is what the code below would do.
  if redis.call('HDEL', MEMBERS, CONNECTION) == 1 then
    redis.call('ZREM', ORDER, CONNECTION)
    redis.call('ZREM', BYINST, inst_entry(ORIGIN, CONNECTION))
    if PLAN_USER == '' then
      redis.call('HINCRBY', META, 'anonymous', '-1')
    elseif redis.call('HINCRBY', USERS, PLAN_USER, '-1') <= 0 then
      redis.call('HDEL', USERS, PLAN_USER)
    end
    write_header(PLAN_VERSION, PLAN_EPOCH, PLAN_LEADER)
    publish(PLAN_CHANGE)
    return { 'planned' }
  end
end
