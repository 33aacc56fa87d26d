-- scan: pending -> scanned by a user, extending the expiry once.
--   ARGV[5] scan_extension_ms   ARGV[6] user id   ARGV[7] user name
--   ARGV[8] match policy: 'never', 'always', 'net:<phone network>' (required
--           when the browser's stored network differs), or 'risk' (required
--           when the risk verdict below is high, or when there is none);
--           applies only to a login that has a match code
--   ARGV[9] '1' when a GeoIP database is configured: decide the risk
--           verdict (qrlogin_core::risk::assess, line by line), with
--   ARGV[10] the phone's country code ('' unknown)
--   ARGV[11] ARGV[12] its latitude, longitude in millionths ('' unknown)
--   ARGV[13] its network key ('AS<n>', else its /24 or /64)
--   ARGV[14] the distance limit in km
-- The same user scanning again gets the record unchanged (a reloaded
-- phone page); another user gets wrong_user.

-- Haversine, the same expression in the same order as risk.rs's
-- distance_km, so both stores reach the same verdict at the limit.
local function distance_km(lat1e6, lon1e6, lat2e6, lon2e6)
  local rad = math.pi / 180.0
  local lat1 = lat1e6 / 1e6
  local lon1 = lon1e6 / 1e6
  local lat2 = lat2e6 / 1e6
  local lon2 = lon2e6 / 1e6
  local dlat = (lat2 - lat1) * rad
  local dlon = (lon2 - lon1) * rad
  local s1 = math.sin(dlat / 2.0)
  local s2 = math.sin(dlon / 2.0)
  local h = s1 * s1 + math.cos(lat1 * rad) * math.cos(lat2 * rad) * s2 * s2
  return 2.0 * 6371.0 * math.asin(math.min(math.sqrt(h), 1.0))
end

-- The verdict and its reasons (comma-separated, RiskReason::ALL order).
local function assess(rec)
  local p = rec.place
  if type(p) ~= 'table' then
    p = {}
  end
  local why = {}
  local cc = ARGV[10]
  if p.cc ~= nil and cc ~= '' and p.cc ~= cc then
    why[#why + 1] = 'other_country'
  end
  local plat, plon = tonumber(ARGV[11]), tonumber(ARGV[12])
  local blat, blon = tonumber(p.lat), tonumber(p.lon)
  if plat and plon and blat and blon
      and distance_km(blat, blon, plat, plon) > tonumber(ARGV[14]) then
    why[#why + 1] = 'far_away'
  end
  if p.host == '1' then
    why[#why + 1] = 'hosting_network'
  end
  local bnet = rec.net
  if p.asn ~= nil then
    bnet = 'AS' .. p.asn
  end
  if bnet ~= ARGV[13] then
    why[#why + 1] = 'other_network'
  end
  if #why == 0 then
    return 'low', ''
  end
  return 'high', table.concat(why, ',')
end

local rec, raw = load()
if not rec then
  return raw or { 'not_found' }
end
local uid = ARGV[6]
local s = state_at(rec)
if s == 'expired' then
  return { 'expired' }
end
if s == 'pending' then
  local changes = {
    state = 'scanned',
    uid = uid,
    uname = ARGV[7],
    expires = int(tonumber(rec.expires) + tonumber(ARGV[5])),
  }
  if ARGV[9] == '1' then
    changes.risk, changes.why = assess(rec)
  end
  local mreq = '0'
  if rec.match ~= nil then
    local policy = ARGV[8]
    if policy == 'always' then
      mreq = '1'
    elseif string.sub(policy, 1, 4) == 'net:' and string.sub(policy, 5) ~= rec.net then
      mreq = '1'
    elseif policy == 'risk' and changes.risk ~= 'low' then
      mreq = '1'
    end
  end
  changes.mreq = mreq
  return { 'ok', commit(rec, changes) }
end
if rec.uid ~= nil and rec.uid == uid and s == 'scanned' then
  return { 'ok', raw }
end
if rec.uid ~= nil and rec.uid ~= uid then
  return { 'wrong_user' }
end
return { 'wrong_state', s }
