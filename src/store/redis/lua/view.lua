-- view: the whole session, read atomically (read-only).
-- KEYS: the session keys. ARGV: none.
-- Returns {'none'} when the session has no record, else view_reply('ok').
if redis.call('EXISTS', META) == 0 then
  return { 'none' }
end
return view_reply('ok')
