-- shard_token: the generation token of one cluster shard, set once (a change means the shard lost
-- its data: its master restarted empty, or was flushed).
-- KEYS[1] the shard's token key (a hash tag of a slot its master owns). ARGV[1] fresh random token
-- (used only when there is none).
-- Returns the current token.
local TOKEN = KEYS[1]
local FRESH = ARGV[1]
redis.call('SET', TOKEN, FRESH, 'NX')
return redis.call('GET', TOKEN)
