-- Opens a wait on a login from an instance that is not the one its hints
-- go to (route.rs): the record's `w` becomes the calling instance's hint
-- channel, so the scripts' hints now go here. Called only after a plain
-- GET showed another channel (the creator's, or an earlier waiter's): the
-- common case, a wait on the creating instance, costs nothing more.
--
--   KEYS[1] the login key, qrl:{<login id>}:rec
--   ARGV[1] the calling instance's hint channel for this login
--
-- Reply: the record's JSON text as now stored (the caller uses it, not its
-- GET's, so a transition between the two is not missed), or nil when there
-- is none. The key keeps its TTL.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return false
end
local channel = ARGV[1]
-- The record is cjson's or serde_json's text; neither escapes the
-- channel's characters (letters, digits, '-', '_', ':', '{', '}'), and
-- none of them is special in a gsub replacement.
local field = '"w":"' .. channel .. '"'
if string.find(raw, field, 1, true) ~= nil then
  return raw
end
local n
raw, n = string.gsub(raw, '"w":"[^"]*"', field, 1)
if n == 0 then
  raw = '{' .. field .. ',' .. string.sub(raw, 2)
end
redis.call('SET', KEYS[1], raw, 'KEEPTTL')
return raw
