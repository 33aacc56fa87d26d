-- Marks a grant used and says whether this was the first use (no common
-- prelude: a grant is not a login). KEYS[1] the grant, ARGV[1] now (ms).
-- A grant is a JSON string {"v": value, "exp": ms, "used": "0"|"1"}; past
-- `exp` it is gone whatever Redis's TTL says (the caller's clock decides).
local raw = redis.call('GET', KEYS[1])
if not raw then
  return { 'none' }
end
local ok, g = pcall(cjson.decode, raw)
if not ok or type(g) ~= 'table' or type(g.v) ~= 'string' or tonumber(g.exp) == nil then
  return { 'corrupt' }
end
if tonumber(ARGV[1]) >= tonumber(g.exp) then
  return { 'none' }
end
if g.used == '1' then
  return { 'again', g.v }
end
g.used = '1'
redis.call('SET', KEYS[1], cjson.encode(g), 'KEEPTTL')
return { 'first', g.v }
