-- scan: pending -> scanned by a user, extending the expiry once.
--   ARGV[5] scan_extension_ms   ARGV[6] user id   ARGV[7] user name
--   ARGV[8] match policy: 'never', 'always', or 'net:<phone network>' (required
--           when the browser's stored network differs); applies only to a
--           login that has a match code
-- The same user scanning again gets the record unchanged (a reloaded
-- phone page); another user gets wrong_user.

local rec, raw = load()
if not rec then
  return raw or { 'not_found' }
end
local uid = ARGV[6]
local s = state_at(rec)
if s == 'expired' then
  return { 'expired' }
end
if s == 'pending' then
  local mreq = '0'
  if rec.match ~= nil then
    local policy = ARGV[8]
    if policy == 'always' then
      mreq = '1'
    elseif string.sub(policy, 1, 4) == 'net:' and string.sub(policy, 5) ~= rec.net then
      mreq = '1'
    end
  end
  return { 'ok', commit(rec, {
    state = 'scanned',
    uid = uid,
    uname = ARGV[7],
    expires = int(tonumber(rec.expires) + tonumber(ARGV[5])),
    mreq = mreq,
  }) }
end
if rec.uid ~= nil and rec.uid == uid and s == 'scanned' then
  return { 'ok', raw }
end
if rec.uid ~= nil and rec.uid ~= uid then
  return { 'wrong_user' }
end
return { 'wrong_state', s }
