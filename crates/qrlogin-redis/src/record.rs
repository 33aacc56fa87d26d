//! Turning Redis replies into domain values.

use qrlogin_core::{
    BrowserContext, Coords, LoginId, LoginRecord, Place, Risk, RiskLevel, RiskReason, SecretHash,
    Session, State, StoreError, TransitionError, User,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

/// A login as stored: one JSON object of strings (numbers in decimal text,
/// so neither Lua's doubles nor cjson's number formatting can round them).
///
/// One string value instead of a hash because Redis's cost per script is
/// dominated by the elements that cross between Redis and Lua: a 13-field
/// `HGETALL` into a Lua table plus a 27-element reply cost ~2× the CPU of a
/// `GET`, `cjson.decode`/`encode` and a one-string reply (callgrind,
/// BENCHMARKS.md §2).
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    state: Cow<'a, str>,
    version: Cow<'a, str>,
    secret: Cow<'a, str>,
    created: Cow<'a, str>,
    expires: Cow<'a, str>,
    purge: Cow<'a, str>,
    ip: Cow<'a, str>,
    ua: Cow<'a, str>,
    net: Cow<'a, str>,
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    match_code: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mreq: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uname: Option<Cow<'a, str>>,
    /// The relying party's client id (OIDC / device logins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<Cow<'a, str>>,
    /// The browser's GeoIP place, when a database is configured; scan.lua
    /// reads `cc`, `lat`, `lon`, `asn` and `host` for the risk rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    place: Option<StoredPlace<'a>>,
    /// The scan's risk verdict, `low` or `high` (written by scan.lua).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    risk: Option<Cow<'a, str>>,
    /// Its reasons, comma-separated, in `RiskReason::ALL` order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    why: Option<Cow<'a, str>>,
    /// The creating instance's hint channel (see `route`): where the
    /// scripts publish this login's hints without any registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    w: Option<Cow<'a, str>>,
}

/// A [`Place`] as stored: strings only, like the record (coordinates in
/// millionths of a degree, `host` is `1` for a hosting network).
#[derive(Serialize, Deserialize, Default)]
struct StoredPlace<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    city: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    country: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cc: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lat: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lon: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    asn: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    org: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<Cow<'a, str>>,
}

fn b(v: &Option<String>) -> Option<Cow<'_, str>> {
    v.as_deref().map(Cow::Borrowed)
}

fn stored_place(p: &Place) -> StoredPlace<'_> {
    StoredPlace {
        city: b(&p.city),
        region: b(&p.region),
        country: b(&p.country),
        cc: b(&p.country_code),
        lat: p.coords.map(|c| Cow::Owned(c.lat_e6.to_string())),
        lon: p.coords.map(|c| Cow::Owned(c.lon_e6.to_string())),
        asn: p.asn.map(|a| Cow::Owned(a.to_string())),
        org: b(&p.org),
        host: p.hosting.then_some(Cow::Borrowed("1")),
    }
}

fn place_of(p: StoredPlace<'_>) -> Result<Place, StoreError> {
    let o = |v: Option<Cow<'_, str>>| v.map(Cow::into_owned);
    let int = |v: &Option<Cow<'_, str>>, name: &str| -> Result<Option<i64>, StoreError> {
        v.as_deref()
            .map(|t| {
                t.parse::<i64>()
                    .map_err(|_| corrupt(format!("place field `{name}` is not a number")))
            })
            .transpose()
    };
    let coords = match (int(&p.lat, "lat")?, int(&p.lon, "lon")?) {
        (Some(lat), Some(lon)) => Some(Coords {
            lat_e6: i32::try_from(lat).map_err(|_| corrupt("place `lat` out of range"))?,
            lon_e6: i32::try_from(lon).map_err(|_| corrupt("place `lon` out of range"))?,
        }),
        _ => None,
    };
    let asn = int(&p.asn, "asn")?
        .map(|a| u32::try_from(a).map_err(|_| corrupt("place `asn` out of range")))
        .transpose()?;
    Ok(Place {
        hosting: p.host.as_deref() == Some("1"),
        city: o(p.city),
        region: o(p.region),
        country: o(p.country),
        country_code: o(p.cc),
        coords,
        asn,
        org: o(p.org),
    })
}

fn risk_of(level: Option<&str>, why: Option<&str>) -> Result<Option<Risk>, StoreError> {
    let Some(level) = level else {
        return Ok(None);
    };
    let level = match level {
        "low" => RiskLevel::Low,
        "high" => RiskLevel::High,
        _ => return Err(corrupt("login field `risk` unknown")),
    };
    let reasons = why
        .unwrap_or_default()
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| RiskReason::parse(r).ok_or_else(|| corrupt("login field `why` unknown")))
        .collect::<Result<Vec<_>, _>>()?;
    let risk = Risk::of(reasons);
    if risk.level != level {
        return Err(corrupt("login fields `risk` and `why` disagree"));
    }
    Ok(Some(risk))
}

fn number(value: &str, name: &str) -> Result<u64, StoreError> {
    value
        .parse()
        .map_err(|_| corrupt(format!("login field `{name}` is not a number")))
}

/// The JSON text `create` stores for a new login, with its purge deadline.
pub(crate) fn to_json(
    rec: &LoginRecord,
    net: &str,
    purge_ms: u64,
    hint_channel: Option<&str>,
) -> Result<String, StoreError> {
    let stored = Stored {
        state: Cow::Borrowed(rec.state.as_str()),
        version: Cow::Owned(rec.version.to_string()),
        secret: Cow::Owned(rec.secret_hash.to_hex()),
        created: Cow::Owned(rec.created_at_ms.to_string()),
        expires: Cow::Owned(rec.expires_at_ms.to_string()),
        purge: Cow::Owned(purge_ms.to_string()),
        ip: Cow::Borrowed(&rec.browser.ip),
        ua: Cow::Borrowed(&rec.browser.user_agent),
        net: Cow::Borrowed(net),
        match_code: rec.match_code.map(|c| Cow::Owned(c.to_string())),
        mreq: None,
        uid: rec.user.as_ref().map(|u| Cow::Borrowed(u.id.as_str())),
        uname: rec.user.as_ref().map(|u| Cow::Borrowed(u.name.as_str())),
        client: rec.client_id.as_deref().map(Cow::Borrowed),
        place: rec.browser.place.as_ref().map(stored_place),
        risk: rec.risk.as_ref().map(|r| {
            Cow::Borrowed(match r.level {
                RiskLevel::Low => "low",
                RiskLevel::High => "high",
            })
        }),
        why: rec.risk.as_ref().map(|r| {
            Cow::Owned(
                r.reasons
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        }),
        w: hint_channel.map(Cow::Borrowed),
    };
    serde_json::to_string(&stored).map_err(|e| corrupt(format!("login record: {e}")))
}

/// A stored login (from `GET` or a script's `ok` reply) as a record, and
/// its purge deadline (after which it counts as gone).
pub(crate) fn login(id: LoginId, json: &str) -> Result<(LoginRecord, u64), StoreError> {
    login_and_channel(id, json).map(|(rec, purge, _)| (rec, purge))
}

/// [`login`] and the channel its hints go to (`w`, see `route`), from one
/// parse: the watcher compares it with its own.
pub(crate) fn login_and_channel(
    id: LoginId,
    json: &str,
) -> Result<(LoginRecord, u64, Option<String>), StoreError> {
    let m: Stored = serde_json::from_str(json)
        .map_err(|e| corrupt(format!("login record is not valid JSON: {e}")))?;
    let state: State = m
        .state
        .parse()
        .map_err(|_| corrupt("login field `state` unknown"))?;
    let secret_hash = SecretHash::from_hex(&m.secret)
        .ok_or_else(|| corrupt("login field `secret` is not a hash"))?;
    let match_code = match &m.match_code {
        None => None,
        Some(s) => Some(
            s.parse::<u8>()
                .map_err(|_| corrupt("login field `match` is not a code"))?,
        ),
    };
    let purge = number(&m.purge, "purge")?;
    let user = m.uid.map(|uid| User {
        id: uid.into_owned(),
        name: m.uname.map(Cow::into_owned).unwrap_or_default(),
    });
    let risk = risk_of(m.risk.as_deref(), m.why.as_deref())?;
    let place = m.place.map(place_of).transpose()?;
    let channel = m.w.map(Cow::into_owned);
    let rec = LoginRecord {
        id,
        state,
        version: number(&m.version, "version")?,
        secret_hash,
        created_at_ms: number(&m.created, "created")?,
        expires_at_ms: number(&m.expires, "expires")?,
        browser: BrowserContext {
            ip: m.ip.into_owned(),
            user_agent: m.ua.into_owned(),
            place,
        },
        match_code,
        match_required: m.mreq.as_deref() == Some("1"),
        risk,
        user,
        client_id: m.client.map(Cow::into_owned),
    };
    Ok((rec, purge, channel))
}

/// A web session as stored under its token's key (written by redeem.lua).
#[derive(Deserialize)]
struct StoredSession {
    uid: String,
    #[serde(default)]
    uname: String,
    exp: String,
}

/// A stored web session, or `None` once past its expiry.
pub(crate) fn session(json: &str, now_ms: u64) -> Result<Option<Session>, StoreError> {
    let stored: StoredSession =
        serde_json::from_str(json).map_err(|e| corrupt(format!("session entry: {e}")))?;
    let exp = number(&stored.exp, "exp")?;
    Ok((exp > now_ms).then_some(Session {
        user: User {
            id: stored.uid,
            name: stored.uname,
        },
        expires_at_ms: exp,
    }))
}

/// A script reply, checked: `Ok(rest)` for `ok`, else the transition error
/// it names.
pub(crate) fn outcome(mut reply: Vec<String>) -> Result<Vec<String>, TransitionError> {
    if reply.is_empty() {
        return Err(corrupt("empty script reply").into());
    }
    let rest = reply.split_off(1);
    match reply[0].as_str() {
        "ok" => Ok(rest),
        "not_found" => Err(TransitionError::NotFound),
        "expired" => Err(TransitionError::Expired),
        "wrong_user" => Err(TransitionError::WrongUser),
        "wrong_match" => Err(TransitionError::WrongMatchCode),
        "presence_required" => Err(TransitionError::PresenceRequired),
        "wrong_state" => {
            let state = rest
                .first()
                .and_then(|s| s.parse::<State>().ok())
                .ok_or_else(|| corrupt("wrong_state reply without a state"))?;
            Err(TransitionError::WrongState(state))
        }
        "corrupt" => Err(corrupt(rest.first().cloned().unwrap_or_default()).into()),
        other => Err(corrupt(format!("unknown script reply `{other}`")).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn outcomes_map_to_transition_errors() {
        assert_eq!(outcome(s(&["ok", "a", "b"])), Ok(s(&["a", "b"])));
        assert_eq!(outcome(s(&["not_found"])), Err(TransitionError::NotFound));
        assert_eq!(outcome(s(&["expired"])), Err(TransitionError::Expired));
        assert_eq!(outcome(s(&["wrong_user"])), Err(TransitionError::WrongUser));
        assert_eq!(
            outcome(s(&["wrong_state", "denied"])),
            Err(TransitionError::WrongState(State::Denied))
        );
        assert!(matches!(
            outcome(s(&["wrong_state", "nonsense"])),
            Err(TransitionError::Store(StoreError::Corrupt(_)))
        ));
        assert!(matches!(
            outcome(s(&[])),
            Err(TransitionError::Store(StoreError::Corrupt(_)))
        ));
        assert!(matches!(
            outcome(s(&["what"])),
            Err(TransitionError::Store(StoreError::Corrupt(_)))
        ));
    }

    #[test]
    fn records_round_trip_and_malformed_ones_are_corrupt_not_panics() {
        let id = LoginId::random();
        let rec = LoginRecord {
            id,
            state: State::Scanned,
            version: 7,
            secret_hash: SecretHash::of(b"s"),
            created_at_ms: 1_795_474_019_000,
            expires_at_ms: 1_795_474_079_000,
            browser: BrowserContext {
                ip: "127.0.0.1".into(),
                user_agent: "Mozilla/5.0 \"quoted\" / ünïcode".into(),
                place: Some(Place {
                    city: Some("Zürich".into()),
                    region: None,
                    country: Some("Switzerland".into()),
                    country_code: Some("CH".into()),
                    coords: Some(Coords {
                        lat_e6: 47_376_900,
                        lon_e6: -8_541_700,
                    }),
                    asn: Some(4_200_000_000),
                    org: Some("Ex \"ample\" AG".into()),
                    hosting: true,
                }),
            },
            match_code: Some(42),
            match_required: false,
            risk: Some(Risk::of(vec![
                RiskReason::FarAway,
                RiskReason::OtherNetwork,
            ])),
            user: Some(User {
                id: "u-alice".into(),
                name: "Alice".into(),
            }),
            client_id: Some("shop-web".into()),
        };
        let json = to_json(&rec, "127.0.0.0/24", 1_795_474_199_000, None).unwrap();
        let (back, purge) = login(id, &json).unwrap();
        assert_eq!(back, rec);
        assert_eq!(purge, 1_795_474_199_000);

        for bad in [
            "",
            "not json",
            "{}",
            r#"{"state":"pending","version":"x","secret":"00","created":"1","expires":"2","purge":"3","ip":"","ua":"","net":""}"#,
            r#"{"state":"nonsense","version":"1","secret":"00","created":"1","expires":"2","purge":"3","ip":"","ua":"","net":""}"#,
            r#"{"state":"scanned","version":"1","secret":"00","created":"1","expires":"2","purge":"3","ip":"","ua":"","net":"","risk":"high","why":""}"#,
            r#"{"state":"scanned","version":"1","secret":"00","created":"1","expires":"2","purge":"3","ip":"","ua":"","net":"","risk":"low","why":"far"}"#,
            r#"{"state":"pending","version":"1","secret":"00","created":"1","expires":"2","purge":"3","ip":"","ua":"","net":"","place":{"lat":"x","lon":"1"}}"#,
        ] {
            assert!(
                matches!(login(id, bad), Err(StoreError::Corrupt(_))),
                "{bad}"
            );
        }
    }
}

/// A grant as stored (see `take_grant.lua`).
#[derive(Serialize, Deserialize)]
struct StoredGrant<'a> {
    v: Cow<'a, str>,
    exp: Cow<'a, str>,
    used: Cow<'a, str>,
}

/// The JSON a new grant is stored as.
pub(crate) fn grant_json(value: &str, exp_ms: u64) -> Result<String, StoreError> {
    serde_json::to_string(&StoredGrant {
        v: Cow::Borrowed(value),
        exp: Cow::Owned(exp_ms.to_string()),
        used: Cow::Borrowed("0"),
    })
    .map_err(|e| corrupt(format!("grant: {e}")))
}

/// A stored grant's value, or `None` once past its expiry.
pub(crate) fn grant(json: &str, now_ms: u64) -> Result<Option<String>, StoreError> {
    let g: StoredGrant =
        serde_json::from_str(json).map_err(|e| corrupt(format!("grant entry: {e}")))?;
    let exp = number(&g.exp, "exp")?;
    Ok((exp > now_ms).then(|| g.v.into_owned()))
}
