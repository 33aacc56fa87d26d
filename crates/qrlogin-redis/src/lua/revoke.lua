-- revoke: deletes a web session and, when it existed, appends its
-- session.revoked event in the same step (events on, one Redis or
-- Sentinel; with events off revoking is a plain DEL, and on Cluster the
-- instance appends after a GETDEL, see docs/DECISIONS.md).
--   KEYS[1] the session key   KEYS[2] the event stream qrl:events
--   ARGV[1] the session's login id
-- Reply: 1 when a session was revoked, else 0.

local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
redis.call('DEL', KEYS[1])
local ok, s = pcall(cjson.decode, raw)
if not ok or type(s) ~= 'table' then
  return 1
end
-- No caller clock on this path: Redis's own time dates the event.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '500000', '*', 'e', cjson.encode({
  id = 'evt_' .. ARGV[1] .. '_revoked',
  t = 'session.revoked',
  at = string.format('%d', now),
  lid = ARGV[1],
  uid = s.uid,
  un = s.uname,
}))
return 1
