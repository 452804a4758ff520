-- join, planned: writes the caller's plan (crate::store::plan) as it is while the session is still
-- at the plan's header, before the prelude's functions exist, so a written plan costs only its
-- commands. Arguments: see join.lua. Falls through to join.lua's own logic otherwise.
if ARGV[7] ~= '' and at_basis(ARGV[7]) then
  -- The session is where the caller's view has it, so the plan is what the code below would do.
  local connection = ARGV[8]
  if redis.call('HSETNX', MEMBERS, connection, ARGV[9]) == 1 then
    redis.call('ZADD', ORDER, ARGV[10], connection)
    redis.call('ZADD', BYINST, '0', inst_entry(ORIGIN, connection))
    if ARGV[11] == '' then
      redis.call('HINCRBY', META, 'anonymous', '1')
    elseif redis.call('HINCRBY', USERS, ARGV[11], '1') == 1 then
      redis.call('PEXPIRE', USERS, TTL)
    end
    redis.call('HSET', META, 'version', ARGV[13])
    publish(ARGV[12])
    return { 'planned' }
  end
end
