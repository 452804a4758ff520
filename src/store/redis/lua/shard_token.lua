-- shard_token: the generation token of one cluster shard, set once (a change means the shard lost
-- its data: its master restarted empty, or was flushed).
-- KEYS[1] the shard's token key (a hash tag of a slot its master owns). ARGV[1] fresh random token
-- (used only when there is none).
-- Returns the current token.
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
