-- leave, planned: writes the caller's plan (crate::store::plan) as it is while the session is still
-- at the plan's header, before the prelude's functions exist, so a written plan costs only its
-- commands. Arguments: see leave.lua. Falls through to leave.lua's own logic otherwise.
if ARGV[7] ~= '' and at_basis(ARGV[7]) then
  -- The session is where the caller's view has it, so the plan is what the code below would do.
  local connection = ARGV[5]
  if redis.call('HDEL', MEMBERS, connection) == 1 then
    redis.call('ZREM', ORDER, connection)
    redis.call('ZREM', BYINST, inst_entry(ORIGIN, connection))
    if ARGV[8] == '' then
      redis.call('HINCRBY', META, 'anonymous', '-1')
    elseif redis.call('HINCRBY', USERS, ARGV[8], '-1') <= 0 then
      redis.call('HDEL', USERS, ARGV[8])
    end
    write_header(ARGV[9], ARGV[11], ARGV[10])
    publish(ARGV[12])
    return { 'planned' }
  end
end
