-- approve: scanned -> approved, only by the user who scanned.
--   ARGV[5] user id   ARGV[6] the match code the phone picked ('' if none)
--   ARGV[7] '1' when the phone confirmed "I am at this computer now"
-- A high risk verdict (scan.lua) without that confirmation is refused with
-- presence_required and changes nothing, checked before the match code.
--   KEYS[2] (single Redis and Sentinel only) the user's session index,
--           qrl:{u:<sha256 of user id>}:sessions: the login id is added in
--           this same step (ARGV[8] its prune-after score, ARGV[9] the key's
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
if rec.risk == 'high' and ARGV[7] ~= '1' then
  return { 'presence_required' }
end
if rec.mreq == '1' and ARGV[6] ~= rec.match then
  commit(rec, { state = 'denied' })
  return { 'wrong_match' }
end
local json = commit(rec, { state = 'approved' })
if KEYS[2] and KEYS[2] ~= EVENTS then
  -- Entries past their bound go first, so the index of a user who logs in
  -- often holds only sessions that can still be live.
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZADD', KEYS[2], ARGV[8], login_id)
  redis.call('PEXPIRE', KEYS[2], ARGV[9])
end
return { 'ok', json }
