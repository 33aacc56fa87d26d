-- redeem: approved -> consumed, by the browser, creating the web session in
-- the same atomic step (so a login yields at most one session).
--   KEYS[2] the session key (a JSON string: uid, uname, exp), qrl:{<login id>}:session:<token hash hex>
--           (same hash tag as the login: one slot on Redis Cluster)
--   KEYS[3] the login's session index entry, qrl:{<login id>}:sid (JSON: h, uid,
--           created, exp, ip, ua; or the tombstone {"revoked":true} left by
--           "log out everywhere" before this redeem: then no session)
--   ARGV[5] browser secret hash (hex)   ARGV[6] session_ms   ARGV[7] token hash (hex)
-- Reply: { 'ok', user id, user name } or an error reply.

local rec, raw = load()
if not rec then
  return raw or { 'not_found' }
end
local s, err = browser_check(rec, ARGV[5])
if err ~= nil then
  return err
end
if s == 'consumed' and rec.uid ~= nil and redis.call('EXISTS', KEYS[2]) == 1 then
  -- The same redeem again (its session exists): a command resent after a
  -- lost reply (Redis Cluster retries after a reconnect). Same answer, no
  -- change; any other redeem of a consumed login still fails.
  return { 'ok', rec.uid, rec.uname or '' }
end
if s ~= 'approved' then
  return { 'wrong_state', s }
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  -- Tombstone: the user logged out everywhere after approving this login.
  return { 'not_found' }
end
if rec.uid == nil then
  return { 'corrupt', 'approved login without a user' }
end
commit(rec, { state = 'consumed' })
local session_ms = tonumber(ARGV[6])
local uname = rec.uname or ''
redis.call('SET', KEYS[2],
  cjson.encode({ uid = rec.uid, uname = uname, exp = int(now + session_ms) }),
  'PX', int(math.max(1, session_ms)))
redis.call('SET', KEYS[3],
  cjson.encode({ h = ARGV[7], uid = rec.uid, created = int(now), exp = int(now + session_ms),
    ip = rec.ip or '', ua = rec.ua or '', pl = event_place(rec.place) }),
  'PX', int(math.max(1, session_ms)))
return { 'ok', rec.uid, uname }
