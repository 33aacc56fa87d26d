-- approve: scanned -> approved, only by the user who scanned.
--   ARGV[5] user id

local rec = load()
if rec == nil then
  return { 'not_found' }
end
local err = scanner_check(rec, ARGV[5])
if err ~= nil then
  return err
end
return reply(commit(rec, { state = 'approved' }))
