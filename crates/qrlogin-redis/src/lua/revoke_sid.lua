-- revoke_sid: ends the session login ARGV[3] made, if it is user ARGV[5]'s
-- ("log out" of one session, and each step of "log out everywhere").
--   KEYS[2] the login's session index entry, qrl:{<login id>}:sid
--   ARGV[5] user id
-- The session key qrl:{<login id>}:session:<h> is built here from the
-- entry's hash: it shares the login's hash tag, so it is in this script's
-- slot on Redis Cluster too.
-- When the login has no session yet but is this user's (scanned or
-- approved), a tombstone in KEYS[2] makes its redeem fail: "log out
-- everywhere" also covers a login approved a moment ago.
-- With the event stream as the last key (events on, not Cluster), a live
-- session's revocation appends its session.revoked event in this step.
-- Reply: { 'ok', '1', user name } a live session was revoked; { 'ok', '0' } nothing
-- live; { 'not_found' } not this user's (same as unknown to the caller).

local uid = ARGV[5]
local raw = redis.call('GET', KEYS[2])
if raw then
  local ok, e = pcall(cjson.decode, raw)
  if not ok or type(e) ~= 'table' then
    return { 'corrupt', 'session index entry is not valid' }
  end
  if e.revoked then
    return { 'ok', '0' }
  end
  if e.uid ~= uid or type(e.h) ~= 'string' then
    return { 'not_found' }
  end
  local live = tonumber(e.exp) ~= nil and tonumber(e.exp) > now
  local skey = 'qrl:{' .. login_id .. '}:session:' .. e.h
  local uname = ''
  local sraw = redis.call('GET', skey)
  if sraw then
    local sok, s = pcall(cjson.decode, sraw)
    if sok and type(s) == 'table' and type(s.uname) == 'string' then
      uname = s.uname
    end
  end
  redis.call('DEL', skey, KEYS[2])
  if live and sraw then
    emit_revoked(uid, uname)
  end
  return { 'ok', live and '1' or '0', uname }
end
local rec = load()
if not rec or rec.uid ~= uid then
  return { 'not_found' }
end
local s = state_at(rec)
if s == 'scanned' or s == 'approved' or s == 'consumed' then
  redis.call('SET', KEYS[2], '{"revoked":true}',
    'PX', int(math.max(1, tonumber(rec.purge or rec.expires) + final_keep - now)))
end
return { 'ok', '0' }
