-- approve: scanned -> approved, only by the user who scanned.
--   ARGV[5] user id   ARGV[6] the match code the phone picked ('' if none)
-- When the scan made number matching required and the pick is wrong, the
-- login is denied instead (a wrong pick means "this was not me").

local rec = load()
if rec == nil then
  return { 'not_found' }
end
local err = scanner_check(rec, ARGV[5])
if err ~= nil then
  return err
end
if rec.mreq == '1' and ARGV[6] ~= rec.match then
  commit(rec, { state = 'denied' })
  return { 'wrong_match' }
end
return reply(commit(rec, { state = 'approved' }))
