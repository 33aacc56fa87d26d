-- create: a new pending login.
--   ARGV[5] pending_ms   ARGV[6] secret hash (hex)   ARGV[7] browser ip
--   ARGV[8] user agent   ARGV[9] match code ('' when none)
--   ARGV[10] the browser's network (/24 or /64), for on-risk number matching
-- Like the memory store, a (practically impossible) id collision replaces
-- the old login. No hint: nobody can be watching a login not yet created.

local expires = now + tonumber(ARGV[5])
local purge = expires + final_keep
redis.call('DEL', key)
redis.call('HSET', key,
  'state', 'pending',
  'version', '1',
  'secret', ARGV[6],
  'created', int(now),
  'expires', int(expires),
  'purge', int(purge),
  'ip', ARGV[7],
  'ua', ARGV[8],
  'net', ARGV[10])
if ARGV[9] ~= '' then
  redis.call('HSET', key, 'match', ARGV[9])
end
redis.call('PEXPIRE', key, math.max(1, purge - now))
return { 'ok' }
