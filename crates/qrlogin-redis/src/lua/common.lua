-- Shared prelude of every qrlogin script. It is prepended to each script at
-- compile time (see scripts.rs), so every transition is still ONE script:
-- one EVALSHA, one round trip, checked and changed atomically.
--
-- The semantics mirror qrlogin_core::MemoryStore exactly; the store
-- contract suite (qrlogin-testkit) holds both to the same behaviour.
--
-- The login is ONE string value: a JSON object of strings (see record.rs
-- for why: crossing a 13-field hash between Redis and Lua, and back as a
-- 27-element reply, cost twice the CPU of a GET and cjson). `create` needs
-- no check, so it is a plain `SET ... PX` from Rust, not a script.
--
-- Calling convention, the same for every script:
--   KEYS[1]   the login key, qrl:{<login id>}:rec
--   KEYS[2..] script-specific
--   ARGV[1]   now: ms since the epoch, from the caller's clock
--   ARGV[2]   final_keep_ms: how long a final state is kept
--   ARGV[3]   the login id (text), for the hint
--   ARGV[4]   the publish command: PUBLISH, or SPUBLISH on Redis Cluster
--   ARGV[5..] script-specific
--
--   KEYS[#KEYS] the event stream qrl:events, only when events are on (webhooks
--             or the audit log need them) and the deployment is not a
--             Cluster: then commit() appends the transition's event to it in
--             this same script (see emit below)
--
-- Replies: { 'ok', <the record's JSON> } on success, or
-- { 'not_found' }, { 'expired' }, { 'wrong_state', <state> },
-- { 'wrong_user' }, { 'corrupt', <why> }.
--
-- Expiry is decided only here, by comparing ARGV now with the stored
-- 'expires' field. The key's Redis TTL is garbage collection: it is set
-- relative to the caller's now (PEXPIRE deadline - now), so Redis's own
-- clock never decides anything and callers with any clock agree with it.
-- The 'purge' field holds the deadline after which the login counts as
-- gone, exactly when the memory store would have purged it, even if Redis
-- has not evicted the key yet.

local key = KEYS[1]
local now = tonumber(ARGV[1])
local final_keep = tonumber(ARGV[2])
local login_id = ARGV[3]
local publish = ARGV[4]

local FINAL = { consumed = true, denied = true, cancelled = true, expired = true }

-- Integers as plain decimal text (never 1.7e+12).
local function int(n)
  return string.format('%d', n)
end

-- The login as a table and its JSON text; nil when unknown or past its
-- purge deadline; false and an error reply when it is not a record.
-- Scripts start with:  local rec, raw = load()
--                      if not rec then return raw or { 'not_found' } end
local function load()
  local raw = redis.call('GET', key)
  if not raw then
    return nil
  end
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' or type(rec.state) ~= 'string'
      or tonumber(rec.expires) == nil or tonumber(rec.version) == nil then
    return false, { 'corrupt', 'login record is not valid' }
  end
  local purge = tonumber(rec.purge)
  if purge ~= nil and now >= purge then
    return nil
  end
  return rec, raw
end

-- The state as of now: a non-final login past its expiry is expired even
-- though nobody has written that down (nor will: expiry is not a write).
local function state_at(rec)
  if not FINAL[rec.state] and now >= tonumber(rec.expires) then
    return 'expired'
  end
  return rec.state
end

-- The event stream, when the caller passed it (last key, by name, so script-
-- specific keys before it do not move it). Off: nothing is appended and the
-- cost is this one comparison.
local EVENTS = 'qrl:events'
local events_key = nil
if #KEYS > 1 and KEYS[#KEYS] == EVENTS then
  events_key = EVENTS
end
local EVENT_OF = {
  scanned = 'login.scanned', approved = 'login.approved',
  denied = 'login.denied', consumed = 'login.consumed',
}

-- Appends the event of a transition into rec.state (qrlogin_core::events:
-- the same JSON as Event::to_json; the id is stable across retries), bounded
-- like MAX_QUEUED_EVENTS. No secret goes in: ids, user, ip, user agent,
-- client.
-- The record's stored place (strings, see record.rs) in qrlogin_core's
-- Place JSON form, for events; nil without one.
local function event_place(p)
  if type(p) ~= 'table' then
    return nil
  end
  local out = { city = p.city, region = p.region, country = p.country,
    country_code = p.cc, asn = tonumber(p.asn), org = p.org,
    hosting = (p.host == '1') }
  if tonumber(p.lat) ~= nil and tonumber(p.lon) ~= nil then
    out.coords = { lat_e6 = tonumber(p.lat), lon_e6 = tonumber(p.lon) }
  end
  return out
end

local function emit(rec)
  local t = EVENT_OF[rec.state]
  if events_key == nil or t == nil then
    return
  end
  redis.call('XADD', events_key, 'MAXLEN', '~', '500000', '*', 'e', cjson.encode({
    id = 'evt_' .. login_id .. '_' .. rec.version,
    t = t,
    at = int(now),
    lid = login_id,
    uid = rec.uid,
    un = rec.uname,
    ip = rec.ip,
    ua = rec.ua,
    cid = rec.client,
    pl = event_place(rec.place),
    rk = rec.risk,
    why = rec.why,
  }))
end

-- Appends the session.revoked event of this login's session, held by
-- `uid` (`uname`), when the caller passed the stream (revoke_sid.lua).
local function emit_revoked(uid, uname)
  if events_key == nil then
    return
  end
  redis.call('XADD', events_key, 'MAXLEN', '~', '500000', '*', 'e', cjson.encode({
    id = 'evt_' .. login_id .. '_revoked',
    t = 'session.revoked',
    at = int(now),
    lid = login_id,
    uid = uid,
    un = uname,
  }))
end

-- Writes a transition: applies `changes`, bumps the version, moves the
-- purge deadline (non-final: expires + final_keep; final: now + final_keep)
-- and the key's TTL with it (one SET ... PX), and publishes the wake-up
-- hint, all inside this one script so no watcher can see the state without
-- the hint. Returns the record's new JSON text.
local function commit(rec, changes)
  for k, v in pairs(changes) do
    rec[k] = v
  end
  rec.version = int(tonumber(rec.version) + 1)
  local purge
  if FINAL[rec.state] then
    purge = now + final_keep
  else
    purge = tonumber(rec.expires) + final_keep
  end
  rec.purge = int(purge)
  local json = cjson.encode(rec)
  local ttl = int(math.max(1, purge - now))
  redis.call('SET', key, json, 'PX', ttl)
  -- The hint goes to the instance that waits on this login, and no other
  -- (route.rs): rec.w, the creator's channel until another instance opens
  -- a wait (watch.lua). A record written before routing has none: nobody
  -- is told, and the waiter's backstop re-reads.
  local hint = cjson.encode({
    id = login_id,
    v = tonumber(rec.version),
    s = rec.state,
    uid = rec.uid,
    un = rec.uname,
    mr = (rec.mreq == '1') and 1 or nil,
  })
  if rec.w then
    redis.call(publish, rec.w, hint)
  end
  emit(rec)
  return json
end

-- Phone-side checks after scan (MemoryStore's scanner_check): not expired,
-- scanned, by `user_id`. Returns an error reply, or nil when allowed.
local function scanner_check(rec, user_id)
  local s = state_at(rec)
  if s == 'expired' then
    return { 'expired' }
  end
  if s == 'pending' then
    return { 'wrong_state', 'pending' }
  end
  if rec.uid == nil then
    -- Finished (e.g. cancelled) before anyone scanned it.
    return { 'wrong_state', s }
  end
  if rec.uid ~= user_id then
    return { 'wrong_user' }
  end
  if s ~= 'scanned' then
    return { 'wrong_state', s }
  end
  return nil
end

-- Browser-side checks (MemoryStore's browser_check): the secret hash must
-- match (else the login "does not exist"), and it must not have expired.
-- Returns the state as of now, or nil and an error reply.
local function browser_check(rec, secret_hash)
  if rec.secret ~= secret_hash then
    return nil, { 'not_found' }
  end
  local s = state_at(rec)
  if s == 'expired' then
    return nil, { 'expired' }
  end
  return s, nil
end

