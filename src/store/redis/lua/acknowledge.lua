-- acknowledge: removes a session's oldest outbox entries up to and including one the deliverer
-- names (crate::store::outbox::Outbox::acknowledge). An entry is two list items, its header
-- '<at> <members>' and its changes, whose first '"version":' is the entry's first version
-- (crate::store::Broadcast puts `origin` and `session`, JSON strings, before it).
-- KEYS[1] the outbox; ARGV[1] how many entries the deliverer read up to it; ARGV[2] its `at`;
-- ARGV[3] its first version. Returns how many entries were removed: 0 when it is not among them
-- (another deliverer removed it already).
local OUTBOX = KEYS[1]
local ENTRIES, AT, FIRST_VERSION = tonumber(ARGV[1]), ARGV[2], ARGV[3]
-- Almost always the entry is where the deliverer read it, the first one looked at.
for i = ENTRIES - 1, 0, -1 do
  local header = redis.call('LINDEX', OUTBOX, 2 * i)
  if header and string.match(header, '^(%d+) ') == AT then
    local changes = redis.call('LINDEX', OUTBOX, 2 * i + 1)
    if changes and string.match(changes, '"version":(%d+)') == FIRST_VERSION then
      redis.call('LTRIM', OUTBOX, 2 * (i + 1), -1)
      return i + 1
    end
  end
end
return 0
