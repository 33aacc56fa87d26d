//! Security events for the site's backend (webhooks) and their queue.
//!
//! A store with events on records one [`Event`] in the same atomic step as
//! the transition that caused it (the memory store in its critical section,
//! Redis in the transition script), so an event is never lost between "the
//! login changed" and "someone was told". Any instance then takes events
//! from the shared queue ([`Store::events_take`](crate::Store::events_take)),
//! delivers them and acknowledges them; events taken by an instance that
//! died are taken again by another after an idle bound (at-least-once).
//!
//! An event's [`Event::id`] is derived from the login and its version, so
//! it is the same on every retry and on every instance: receivers
//! de-duplicate by it.

use crate::place::Place;
use crate::risk::{Risk, RiskReason};
use crate::store::{LoginRecord, StoreError, User};
use crate::{LoginId, State};
use serde::{Deserialize, Serialize};

/// How many events a store keeps undelivered at most; past that the oldest
/// are dropped (Redis: `XADD … MAXLEN ~`). A receiver down for a day at
/// 1 login/s leaves ~300,000 events: the bound keeps memory finite.
pub const MAX_QUEUED_EVENTS: usize = 500_000;

/// The kind of an event, named as the webhook `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    LoginScanned,
    LoginApproved,
    LoginDenied,
    /// The login was redeemed: a new web session exists.
    LoginConsumed,
    SessionRevoked,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::LoginScanned,
        EventKind::LoginApproved,
        EventKind::LoginDenied,
        EventKind::LoginConsumed,
        EventKind::SessionRevoked,
    ];

    /// The webhook `type` (Standard Webhooks' dotted names).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LoginScanned => "login.scanned",
            EventKind::LoginApproved => "login.approved",
            EventKind::LoginDenied => "login.denied",
            EventKind::LoginConsumed => "login.consumed",
            EventKind::SessionRevoked => "session.revoked",
        }
    }

    /// The event a transition into `state` records, if any (cancel and
    /// expiry are not reported: nobody was logged in or asked).
    pub fn of_state(state: State) -> Option<Self> {
        match state {
            State::Scanned => Some(EventKind::LoginScanned),
            State::Approved => Some(EventKind::LoginApproved),
            State::Denied => Some(EventKind::LoginDenied),
            State::Consumed => Some(EventKind::LoginConsumed),
            _ => None,
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown event type {s:?}")))
    }
}

/// One recorded event. Holds no secret: ids, the user, the browser's
/// address and user agent, the relying party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Stable across retries and instances: `evt_<login id>_<version>` for
    /// a transition, `evt_<login id>_revoked` for a session's revocation
    /// (a login yields at most one session).
    pub id: String,
    pub kind: EventKind,
    /// When it happened, ms since the epoch.
    pub at_ms: u64,
    pub login_id: LoginId,
    pub user: Option<User>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The relying party, when an OIDC client or the device grant made the
    /// login.
    pub client_id: Option<String>,
    /// The browser's GeoIP place (with `--geoip-db`).
    pub place: Option<Place>,
    /// The scan's risk verdict, from the scan on.
    pub risk: Option<Risk>,
}

/// The stored form, shared by both stores and by the Redis scripts (which
/// build the same JSON with cjson): short names, every value a string.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: String,
    t: String,
    at: String,
    lid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    un: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ua: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cid: Option<String>,
    /// In [`Place`]'s own JSON form (the scripts convert the record's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pl: Option<Place>,
    /// The verdict as the record keeps it: `low`/`high` and the reasons,
    /// comma-separated (an empty Lua table would not encode as `[]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

impl Event {
    /// The event a transition that produced `rec` records, if its new state
    /// is reported.
    pub fn of_transition(rec: &LoginRecord, now_ms: u64) -> Option<Self> {
        let kind = EventKind::of_state(rec.state)?;
        Some(Self {
            id: format!("evt_{}_{}", rec.id, rec.version),
            kind,
            at_ms: now_ms,
            login_id: rec.id,
            user: rec.user.clone(),
            ip: Some(rec.browser.ip.clone()).filter(|s| !s.is_empty()),
            user_agent: Some(rec.browser.user_agent.clone()).filter(|s| !s.is_empty()),
            client_id: rec.client_id.clone(),
            place: rec.browser.place.clone(),
            risk: rec.risk.clone(),
        })
    }

    /// The revocation of the session `login_id` made, held by `user`.
    pub fn revoked(login_id: LoginId, user: User, now_ms: u64) -> Self {
        Self {
            id: format!("evt_{login_id}_revoked"),
            kind: EventKind::SessionRevoked,
            at_ms: now_ms,
            login_id,
            user: Some(user),
            ip: None,
            user_agent: None,
            client_id: None,
            place: None,
            risk: None,
        }
    }

    /// The stored JSON text.
    pub fn to_json(&self) -> String {
        let w = Wire {
            id: self.id.clone(),
            t: self.kind.as_str().to_string(),
            at: self.at_ms.to_string(),
            lid: self.login_id.to_string(),
            uid: self.user.as_ref().map(|u| u.id.clone()),
            un: self.user.as_ref().map(|u| u.name.clone()),
            ip: self.ip.clone(),
            ua: self.user_agent.clone(),
            cid: self.client_id.clone(),
            pl: self.place.clone(),
            rk: self.risk.as_ref().map(|r| r.level.as_str().to_string()),
            why: self.risk.as_ref().map(|r| {
                r.reasons
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        };
        // A struct of strings always serializes.
        serde_json::to_string(&w).unwrap_or_default()
    }

    /// Reads the stored JSON text (see [`Event::to_json`] and the scripts'
    /// `emit`).
    pub fn from_json(json: &str) -> Result<Self, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt(format!("event: {why}"));
        let w: Wire = serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?;
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let user = match (nonempty(w.uid), w.un) {
            (Some(id), name) => Some(User {
                id,
                name: name.unwrap_or_default(),
            }),
            (None, _) => None,
        };
        Ok(Self {
            id: w.id,
            kind: w.t.parse()?,
            at_ms: w.at.parse().map_err(|_| corrupt("bad time".into()))?,
            login_id: w.lid.parse().map_err(|_| corrupt("bad login id".into()))?,
            user,
            ip: nonempty(w.ip),
            user_agent: nonempty(w.ua),
            client_id: nonempty(w.cid),
            place: w.pl,
            risk: match w.rk.as_deref() {
                None => None,
                Some(level) => {
                    let reasons = w
                        .why
                        .as_deref()
                        .unwrap_or_default()
                        .split(',')
                        .filter(|r| !r.is_empty())
                        .map(|r| {
                            RiskReason::parse(r).ok_or_else(|| corrupt("bad risk reason".into()))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let risk = Risk::of(reasons);
                    if risk.level.as_str() != level {
                        return Err(corrupt("risk level and reasons disagree".into()));
                    }
                    Some(risk)
                }
            },
        })
    }
}

/// An event taken from the queue, with the receipt that acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    /// The queue's handle (a Redis stream entry id; a sequence number in
    /// memory). Not the webhook id: see [`Event::id`].
    pub receipt: String,
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_kind_names() {
        let e = Event {
            id: "evt_x_2".into(),
            kind: EventKind::LoginConsumed,
            at_ms: 1_700_000_000_123,
            login_id: LoginId::random(),
            user: Some(User {
                id: "u1".into(),
                name: "Alice".into(),
            }),
            ip: Some("192.0.2.1".into()),
            user_agent: None,
            client_id: Some("rp".into()),
            place: Some(Place {
                city: Some("Berlin".into()),
                country_code: Some("DE".into()),
                coords: crate::place::Coords::from_degrees(52.52, 13.405),
                asn: Some(64500),
                ..Place::default()
            }),
            risk: Some(Risk::of(vec![
                RiskReason::OtherCountry,
                RiskReason::FarAway,
            ])),
        };
        assert_eq!(Event::from_json(&e.to_json()).unwrap(), e);
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>().unwrap(), k);
        }
        assert!(Event::from_json("{}").is_err());
    }
}
