-- revoke: ends one web session by its reference (logout; no prelude: it
-- does not touch the login) and, when the session existed and events are
-- on (one Redis or Sentinel), appends its session.revoked event in the
-- same step. On Cluster the stream is another slot: the instance appends
-- after this script (docs/DECISIONS.md §18).
--   KEYS[1] the session   KEYS[2] its login's session index entry
--           (qrl:{<login id>}:sid; same hash tag, same slot)
--   KEYS[3] (events on, not Cluster) the event stream qrl:events
--   ARGV[1] the token hash (hex)   ARGV[2] the login id   ARGV[3] now (ms)
-- The index entry goes only if it names this session, so a reference with
-- the wrong hash cannot hide a live session from the user's list.
-- Reply: the number of keys deleted.
local raw = redis.call('GET', KEYS[1])
local n = redis.call('DEL', KEYS[1])
local entry = redis.call('GET', KEYS[2])
if entry then
  local ok, e = pcall(cjson.decode, entry)
  if ok and type(e) == 'table' and e.h == ARGV[1] then
    n = n + redis.call('DEL', KEYS[2])
  end
end
if raw and KEYS[3] then
  local ok, s = pcall(cjson.decode, raw)
  if ok and type(s) == 'table' then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', '500000', '*', 'e', cjson.encode({
      id = 'evt_' .. ARGV[2] .. '_revoked',
      t = 'session.revoked',
      at = ARGV[3],
      lid = ARGV[2],
      uid = s.uid,
      un = s.uname,
    }))
  end
end
return n
