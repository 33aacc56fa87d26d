-- revoke: ends one web session by its reference (logout; no prelude: it
-- does not touch the login). KEYS[1] the session, KEYS[2] its login's
-- session index entry (qrl:{<login id>}:sid; same hash tag, same slot),
-- ARGV[1] the token hash (hex). The entry goes only if it names this
-- session, so a reference with the wrong hash cannot hide a live session
-- from the user's list. Reply: the number of keys deleted.
local n = redis.call('DEL', KEYS[1])
local raw = redis.call('GET', KEYS[2])
if raw then
  local ok, e = pcall(cjson.decode, raw)
  if ok and type(e) == 'table' and e.h == ARGV[1] then
    n = n + redis.call('DEL', KEYS[2])
  end
end
return n
