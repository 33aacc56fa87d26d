-- deny: scanned -> denied, only by the user who scanned.
--   ARGV[5] user id

local rec, raw = load()
if not rec then
  return raw or { 'not_found' }
end
local err = scanner_check(rec, ARGV[5])
if err ~= nil then
  return err
end
return { 'ok', commit(rec, { state = 'denied' }) }
