-- scan: pending -> scanned by a user, extending the expiry once.
--   ARGV[5] scan_extension_ms   ARGV[6] user id   ARGV[7] user name
-- The same user scanning again gets the record unchanged (a reloaded
-- phone page); another user gets wrong_user.

local rec = load()
if rec == nil then
  return { 'not_found' }
end
local uid = ARGV[6]
local s = state_at(rec)
if s == 'expired' then
  return { 'expired' }
end
if s == 'pending' then
  return reply(commit(rec, {
    state = 'scanned',
    uid = uid,
    uname = ARGV[7],
    expires = int(tonumber(rec.expires) + tonumber(ARGV[5])),
  }))
end
if rec.uid ~= nil and rec.uid == uid and s == 'scanned' then
  return reply(rec)
end
if rec.uid ~= nil and rec.uid ~= uid then
  return { 'wrong_user' }
end
return { 'wrong_state', s }
