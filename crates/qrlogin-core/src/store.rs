//! The store contract. A store keeps logins, web sessions and demo phone
//! tokens, performs every state transition atomically (exactly one of any
//! number of concurrent callers wins), and feeds wake-up hints into its
//! [`Notifier`].
//!
//! Every operation takes `now_ms` from the caller's [`Clock`](crate::Clock):
//! expiry is decided by comparing with the stored `expires_at_ms`, not by the
//! backend's own timers, which only garbage-collect. That keeps both stores
//! exact at the TTL edge and lets tests move time instead of sleeping.

use crate::events::QueuedEvent;
use crate::grant::{GrantKey, Taken};
use crate::id::{LoginId, SecretHash, SessionRef, SessionToken};
use crate::notify::Notifier;
use crate::place::Place;
use crate::risk::{assess, network_key, Risk, RiskCheck};
use crate::sessions::SessionInfo;
use crate::state::State;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A user as the identity provider describes them. `id` is stable; `name` is
/// for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    pub name: String,
}

/// The network an address is on, as a prefix: the /24 of an IPv4 address,
/// the /64 of an IPv6 one. The phone shows it as the browser's approximate
/// place, and number matching compares browser and phone networks.
///
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how an IPv4 client
/// reaches a dual-stack listener) is on its IPv4 /24: read as IPv6, every
/// IPv4 client would be on one "network" `0:0:0:0::/64`.
pub fn network_of(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Err(_) => "unknown".into(),
    }
}

/// Whether a scan makes number matching required (for a login that has a
/// match code). Decided inside the scan's atomic step, so on-risk matching
/// costs no extra read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchPolicy {
    Never,
    Always,
    /// Required when the browser's network (see [`network_of`]) differs
    /// from this one, the phone's.
    IfOtherNetwork(String),
    /// Required when the scan's risk verdict ([`crate::risk`]) is high:
    /// on-risk matching with a GeoIP database. Without a verdict (a scan
    /// with no [`RiskCheck`]) it fails closed: required.
    IfHighRisk,
}

impl MatchPolicy {
    /// The policy's decision for a browser at `browser_ip`.
    pub fn requires(&self, browser_ip: &str) -> bool {
        match self {
            MatchPolicy::Never => false,
            MatchPolicy::Always => true,
            MatchPolicy::IfOtherNetwork(phone_net) => network_of(browser_ip) != *phone_net,
            MatchPolicy::IfHighRisk => true,
        }
    }

    /// The decision for a login whose scan reached `risk` (if assessed).
    pub fn requires_with(&self, browser_ip: &str, risk: Option<&Risk>) -> bool {
        match (self, risk) {
            (MatchPolicy::IfHighRisk, Some(r)) => r.is_high(),
            _ => self.requires(browser_ip),
        }
    }
}

/// Everything a scan decides besides the state change: number matching
/// and, when a GeoIP database is configured, the risk verdict. Both are
/// decided inside the scan's atomic step and recorded with it, so any
/// instance enforces them at approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPolicy {
    pub matching: MatchPolicy,
    /// The phone's side of the risk rule; `None` without a database (no
    /// verdict, no presence check: as before).
    pub risk: Option<RiskCheck>,
}

impl ScanPolicy {
    /// The verdict for a browser at `browser` (its context as created).
    pub fn assess(&self, browser: &BrowserContext) -> Option<Risk> {
        let check = self.risk.as_ref()?;
        let none = Place::default();
        let place = browser.place.as_ref().unwrap_or(&none);
        Some(assess(
            place,
            &network_key(place, &browser.ip),
            &check.phone,
            &check.phone_network,
            check.max_distance_km,
        ))
    }
}

/// What the phone sends with "approve".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Approval {
    /// The number it picked, when number matching is on.
    pub match_code: Option<u8>,
    /// The user ticked "I am at this computer now" (needed when the scan's
    /// risk verdict was high).
    pub confirm_presence: bool,
}

/// What the phone must show about the browser that asked to log in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrowserContext {
    pub ip: String,
    pub user_agent: String,
    /// Its place, looked up at create when a GeoIP database is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<Place>,
}

/// How long things live, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttls {
    /// Life of a new login before it expires (SPEC default 120 s).
    pub pending_ms: u64,
    /// Added once, at scan, so the user has time to read the phone (60 s).
    pub scan_extension_ms: u64,
    /// How long a final state is kept for late watchers (30 s).
    pub final_keep_ms: u64,
    /// Life of a web session issued at redeem.
    pub session_ms: u64,
}

impl Default for Ttls {
    fn default() -> Self {
        Self {
            pending_ms: 120_000,
            scan_extension_ms: 60_000,
            final_keep_ms: 30_000,
            session_ms: 12 * 3600 * 1000,
        }
    }
}

/// Everything needed to create a login.
#[derive(Debug, Clone)]
pub struct NewLogin {
    pub id: LoginId,
    pub secret_hash: SecretHash,
    pub browser: BrowserContext,
    /// The number-matching code the browser shows, when enabled.
    pub match_code: Option<u8>,
    /// The relying party this login is for, when a protocol face (OpenID
    /// Connect, the device grant) made it: the phone shows its name.
    pub client_id: Option<String>,
    /// How long this login may stay pending, instead of the store's
    /// `pending_ms` (a device flow's code lives longer than a QR on a page).
    pub pending_ms: Option<u64>,
}

/// A login as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecord {
    pub id: LoginId,
    /// The state as last written. Use [`LoginRecord::state_at`] for the
    /// state as of now: a pending login past its expiry is expired even if
    /// nobody has written that down yet.
    pub state: State,
    /// Incremented by every transition; SSE event ids and hint ordering.
    pub version: u64,
    pub secret_hash: SecretHash,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub browser: BrowserContext,
    /// The number-matching code the browser shows, when enabled.
    pub match_code: Option<u8>,
    /// Set at scan when the phone must pick `match_code` to approve (number
    /// matching is on for this login: always, or because it looked risky).
    pub match_required: bool,
    /// The scan's risk verdict, when a GeoIP database is configured. A high
    /// one makes approving need `confirm_presence`.
    pub risk: Option<Risk>,
    /// The user who scanned, once scanned.
    pub user: Option<User>,
    /// See [`NewLogin::client_id`].
    pub client_id: Option<String>,
}

impl LoginRecord {
    /// The record `create` stores: pending, version 1, expiring after
    /// the login's own `pending_ms`, else the store's.
    pub fn pending(login: NewLogin, now_ms: u64, pending_ms: u64) -> Self {
        let pending_ms = login.pending_ms.unwrap_or(pending_ms);
        Self {
            id: login.id,
            state: State::Pending,
            version: 1,
            secret_hash: login.secret_hash,
            created_at_ms: now_ms,
            expires_at_ms: now_ms + pending_ms,
            browser: login.browser,
            match_code: login.match_code,
            match_required: false,
            risk: None,
            user: None,
            client_id: login.client_id,
        }
    }

    /// Approving needs "I am at this computer now": the verdict was high.
    pub fn presence_required(&self) -> bool {
        self.risk.as_ref().is_some_and(Risk::is_high)
    }

    pub fn state_at(&self, now_ms: u64) -> State {
        self.state.at(self.expires_at_ms, now_ms)
    }
}

/// A web session found by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    pub expires_at_ms: u64,
}

/// Why a transition did not happen. The HTTP layer maps these to statuses;
/// for browser callers, `NotFound` and a wrong secret are the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// No such login, or (browser side) the secret does not match, or it is
    /// gone after its final-state grace period.
    #[error("no such login")]
    NotFound,
    /// The login's time ran out.
    #[error("login expired")]
    Expired,
    /// The login is not in a state that allows this transition (including
    /// losing a race to a concurrent caller).
    #[error("login is {0}")]
    WrongState(State),
    /// A different user scanned this login.
    #[error("login belongs to another user")]
    WrongUser,
    /// The phone picked the wrong number-matching code; the login is now
    /// denied (a wrong pick is treated as "this was not me").
    #[error("wrong match code; the login was denied")]
    WrongMatchCode,
    /// The scan's risk verdict was high and the approval did not confirm
    /// presence; nothing changed (the phone may ask and approve again).
    #[error("this login needs the user to confirm they are at the computer")]
    PresenceRequired,
    /// The backend failed; nothing was changed, or the change is unknown and
    /// the login must be treated as failed (fail closed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The backend could not be reached or answered nonsense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store returned malformed data: {0}")]
    Corrupt(String),
}

pub type TransitionResult<T> = Result<T, TransitionError>;

/// The storage backend. Implementations: [`MemoryStore`](crate::MemoryStore)
/// and `qrlogin_redis::RedisStore`; both pass `qrlogin-testkit`'s contract
/// suite.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The registry that wakes local watchers. Transitions made by this
    /// process *and by other processes sharing the backend* are fed into it.
    fn notifier(&self) -> &Notifier;

    /// Stores a new pending login that expires at `now_ms + ttls.pending_ms`.
    async fn create(&self, login: NewLogin, now_ms: u64) -> Result<LoginRecord, StoreError>;

    /// Reads a login; `None` when unknown, or when `now_ms` is past the end
    /// of its final-state grace period (even if the backend has not deleted
    /// it yet), so both stores forget at the same moment.
    async fn get(&self, id: &LoginId, now_ms: u64) -> Result<Option<LoginRecord>, StoreError>;

    /// [`get`](Self::get) for a watcher about to wait on the login (after
    /// it registered with the [`Notifier`]): a store whose hints travel
    /// between instances also makes sure this instance will hear the
    /// login's hints from now on (Redis: routes them here, issue 13). The
    /// same answer as `get`. Required, so a wrapper cannot silently lose
    /// the registration by falling back to `get`.
    async fn get_watched(
        &self,
        id: &LoginId,
        now_ms: u64,
    ) -> Result<Option<LoginRecord>, StoreError>;

    /// pending → scanned by `user`, extending expiry once. Scanning again by
    /// the same user returns the record unchanged (a reloaded phone page);
    /// by another user it is `WrongUser`. When `policy` requires it (and
    /// the login has a match code), approving will need the code.
    async fn scan_with(
        &self,
        id: &LoginId,
        user: &User,
        policy: &MatchPolicy,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord> {
        let policy = ScanPolicy {
            matching: policy.clone(),
            risk: None,
        };
        self.scan_assessed(id, user, &policy, now_ms).await
    }

    /// [`scan_with`](Store::scan_with) that also decides the risk verdict
    /// ([`ScanPolicy::assess`]) in the same atomic step and stores it with
    /// the login ([`LoginRecord::risk`]); `IfHighRisk` matching uses it.
    async fn scan_assessed(
        &self,
        id: &LoginId,
        user: &User,
        policy: &ScanPolicy,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord>;

    /// [`scan_with`](Store::scan_with) without number matching.
    async fn scan(&self, id: &LoginId, user: &User, now_ms: u64) -> TransitionResult<LoginRecord> {
        self.scan_with(id, user, &MatchPolicy::Never, now_ms).await
    }

    /// scanned → approved, only by the user who scanned. When the scan made
    /// number matching required and `match_code` is not the login's code,
    /// the login becomes denied instead and the answer is `WrongMatchCode`.
    async fn approve_with(
        &self,
        id: &LoginId,
        user_id: &str,
        match_code: Option<u8>,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord> {
        let approval = Approval {
            match_code,
            confirm_presence: false,
        };
        self.approve_checked(id, user_id, &approval, now_ms).await
    }

    /// [`approve_with`](Store::approve_with) that also carries the
    /// presence confirmation. When the scan's verdict was high and
    /// `confirm_presence` is false the answer is `PresenceRequired` and
    /// nothing changes (checked before the match code, so a missing tick
    /// never burns the login).
    async fn approve_checked(
        &self,
        id: &LoginId,
        user_id: &str,
        approval: &Approval,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord>;

    /// [`approve_with`](Store::approve_with) without a match code.
    async fn approve(
        &self,
        id: &LoginId,
        user_id: &str,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord> {
        self.approve_with(id, user_id, None, now_ms).await
    }

    /// scanned → denied, only by the user who scanned.
    async fn deny(&self, id: &LoginId, user_id: &str, now_ms: u64)
        -> TransitionResult<LoginRecord>;

    /// pending | scanned | approved → cancelled, by the browser (its secret).
    async fn cancel(
        &self,
        id: &LoginId,
        secret: &SecretHash,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord>;

    /// approved → consumed, by the browser (its secret), creating the web
    /// session for `token` in the same atomic step. Returns the user.
    /// `token` must have been made for this login
    /// ([`SessionToken::new_for`]`(id)`): the session lives under the login's
    /// key space.
    async fn redeem(
        &self,
        id: &LoginId,
        secret: &SecretHash,
        token: &SessionToken,
        now_ms: u64,
    ) -> TransitionResult<User>;

    /// Looks a web session up by its record's reference (from an opaque
    /// token, [`SessionToken::session_ref`], or from a verified JWT's `sid`);
    /// `None` when unknown, revoked or past its expiry. A reference, not the
    /// token, so JWT sessions can be looked up without carrying the secret.
    async fn session(
        &self,
        session: &SessionRef,
        now_ms: u64,
    ) -> Result<Option<Session>, StoreError>;

    /// Revokes a web session. Revoking an unknown session is not an error.
    async fn revoke_session(&self, session: &SessionRef) -> Result<(), StoreError>;

    /// The live web sessions of `user_id`, oldest first (SPEC §7). Entries
    /// the index holds for sessions that were never issued, were revoked or
    /// ran out are left out.
    async fn user_sessions(
        &self,
        user_id: &str,
        now_ms: u64,
    ) -> Result<Vec<SessionInfo>, StoreError>;

    /// Revokes the session `sid` of `user_id`. `false` when there is no
    /// such live session *of this user* (another user's sid is the same as
    /// an unknown one). An approved login of this user not redeemed yet can
    /// no longer be redeemed afterwards.
    async fn revoke_user_session(
        &self,
        user_id: &str,
        sid: &LoginId,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Revokes every session of `user_id` ("log out everywhere"), and makes
    /// their approved, not yet redeemed logins unredeemable; returns how
    /// many live sessions were revoked.
    async fn revoke_user_sessions(&self, user_id: &str, now_ms: u64) -> Result<u64, StoreError>;

    /// Remembers a demo phone-app token (by hash) for `ttl_ms`.
    async fn put_mobile_token(
        &self,
        hash: &SecretHash,
        user: &User,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// The user of a demo phone-app token and when the token expires, if it
    /// is known and alive (the expiry lets callers cache it exactly).
    async fn mobile_token(
        &self,
        hash: &SecretHash,
        now_ms: u64,
    ) -> Result<Option<(User, u64)>, StoreError>;

    /// The user of a demo phone-app token, if it is known and alive.
    async fn mobile_token_user(
        &self,
        hash: &SecretHash,
        now_ms: u64,
    ) -> Result<Option<User>, StoreError> {
        Ok(self.mobile_token(hash, now_ms).await?.map(|(u, _)| u))
    }

    /// Stores a grant (see [`crate::grant`]) until `now_ms + ttl_ms`,
    /// replacing one under the same key.
    async fn put_grant(
        &self,
        key: &GrantKey,
        value: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// A live grant's value (used or not).
    async fn grant(&self, key: &GrantKey, now_ms: u64) -> Result<Option<String>, StoreError>;

    /// Marks a live grant used, in one atomic step, and says whether this
    /// call was the first: of any number of concurrent callers exactly one
    /// gets [`Taken::First`]. The grant stays (used) until it expires.
    async fn take_grant(&self, key: &GrantKey, now_ms: u64) -> Result<Option<Taken>, StoreError>;

    /// Removes a grant; removing an unknown one is not an error.
    async fn delete_grant(&self, key: &GrantKey) -> Result<(), StoreError>;

    /// Turns recording of security events (see [`crate::events`]) on or
    /// off; off by default, and then transitions write nothing extra. When
    /// on, every reported transition and every revocation of an existing
    /// session records its event in the same atomic step.
    fn set_events(&self, on: bool);

    /// Takes up to `max` events for `consumer` (one per instance): first
    /// every unacknowledged event of a consumer that has neither taken nor
    /// held events for `idle_ms` or longer (its instance died), all at once
    /// and oldest first, so one login's events keep their order; then new
    /// ones. What it returns counts as held by `consumer` from now; a
    /// consumer is not given back what it already holds.
    async fn events_take(
        &self,
        consumer: &str,
        max: usize,
        idle_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<QueuedEvent>, StoreError>;

    /// Says `consumer` is alive and still holds `receipts` (it retries
    /// them), so no other consumer takes them over (an event another
    /// consumer took over meanwhile becomes `consumer`'s again; both
    /// deliver the same id, which receivers de-duplicate).
    async fn events_hold(
        &self,
        consumer: &str,
        receipts: &[String],
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Acknowledges events (delivered, or dropped after their maximum
    /// age): they are never taken again. Unknown receipts are ignored.
    async fn events_ack(&self, receipts: &[String]) -> Result<(), StoreError>;

    /// Cheap liveness probe of the backend, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The TTLs this store applies.
    fn ttls(&self) -> Ttls;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_match_policy() {
        assert_eq!(network_of("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(network_of("2001:db8:1:2::9"), "2001:db8:1:2::/64");
        assert_eq!(network_of("nonsense"), "unknown");
        let here = MatchPolicy::IfOtherNetwork(network_of("192.0.2.200"));
        assert!(!here.requires("192.0.2.1"));
        assert!(here.requires("198.51.100.1"));
        let v6 = MatchPolicy::IfOtherNetwork(network_of("2001:db8:1:2::99"));
        assert!(!v6.requires("2001:db8:1:2::1"));
        assert!(v6.requires("2001:db8:1:3::1"));
        assert!(MatchPolicy::Always.requires("192.0.2.1"));
        assert!(!MatchPolicy::Never.requires("198.51.100.1"));
    }

    /// IPv4 clients of a dual-stack listener arrive as `::ffff:a.b.c.d`:
    /// they are on their IPv4 /24, not all on one IPv6 /64.
    #[test]
    fn mapped_ipv4_addresses_are_on_their_ipv4_network() {
        assert_eq!(network_of("::ffff:192.0.2.77"), "192.0.2.0/24");
        let phone = MatchPolicy::IfOtherNetwork(network_of("::ffff:198.51.100.9"));
        assert!(phone.requires("::ffff:192.0.2.77"));
        assert!(!phone.requires("198.51.100.200"));
    }
}
