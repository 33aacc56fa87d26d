-- cancel: pending | scanned | approved -> cancelled, by the browser.
--   ARGV[5] browser secret hash (hex)

local rec, raw = load()
if not rec then
  return raw or { 'not_found' }
end
local s, err = browser_check(rec, ARGV[5])
if err ~= nil then
  return err
end
if s == 'pending' or s == 'scanned' or s == 'approved' then
  return { 'ok', commit(rec, { state = 'cancelled' }) }
end
return { 'wrong_state', s }
