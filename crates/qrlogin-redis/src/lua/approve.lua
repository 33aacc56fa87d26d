-- approve: scanned -> approved, only by the user who scanned.
--   ARGV[5] user id   ARGV[6] the match code the phone picked ('' if none)
--   KEYS[2] (single Redis and Sentinel only) the user's session index,
--           qrl:{u:<sha256 of user id>}:sessions: the login id is added in
--           this same step (ARGV[7] its prune-after score, ARGV[8] the key's
--           TTL). On Redis Cluster it is another slot, so the store adds it
--           with a separate command before this script (see sessions.rs).
-- When the scan made number matching required and the pick is wrong, the
-- login is denied instead (a wrong pick means "this was not me").

local rec, raw = load()
if not rec then
  return raw or { 'not_found' }
end
local err = scanner_check(rec, ARGV[5])
if err ~= nil then
  return err
end
if rec.mreq == '1' and ARGV[6] ~= rec.match then
  commit(rec, { state = 'denied' })
  return { 'wrong_match' }
end
local json = commit(rec, { state = 'approved' })
if KEYS[2] then
  redis.call('ZADD', KEYS[2], ARGV[7], login_id)
  redis.call('PEXPIRE', KEYS[2], ARGV[8])
end
return { 'ok', json }
