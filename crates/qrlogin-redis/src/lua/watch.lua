-- Opens a wait on a login (route.rs): reads it, like GET, and registers the
-- calling instance's hint channel with it unless the instance created the
-- login (its channel is then the record's `w`). One round trip, like the
-- GET it replaces. Not a transition: no prelude, no hint.
--
--   KEYS[1] the login key, qrl:{<login id>}:rec
--   KEYS[2] its watcher hash, qrl:{<login id>}:w
--   ARGV[1] now: ms since the epoch, from the caller's clock
--   ARGV[2] the calling instance's hint channel for this login
--
-- Reply: the record's JSON text, or nil when there is none. The caller
-- parses and checks it exactly as it would a GET's answer; registering a
-- channel for a gone or finished login costs one small key that expires
-- with it.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return false
end
local channel = ARGV[2]
-- The record is cjson's or serde_json's text; neither escapes the
-- channel's characters (letters, digits, '-', '_', ':', '{', '}').
if string.find(raw, '"w":"' .. channel .. '"', 1, true) == nil then
  local purge = tonumber(string.match(raw, '"purge":"(%d+)"'))
  local now = tonumber(ARGV[1])
  if purge ~= nil and purge > now then
    redis.call('HSET', KEYS[2], channel, '1')
    redis.call('PEXPIRE', KEYS[2], string.format('%d', purge - now))
  end
end
return raw
