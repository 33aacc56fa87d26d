//! The store contract. A store keeps logins, web sessions and demo phone
//! tokens, performs every state transition atomically (exactly one of any
//! number of concurrent callers wins), and feeds wake-up hints into its
//! [`Notifier`].
//!
//! Every operation takes `now_ms` from the caller's [`Clock`](crate::Clock):
//! expiry is decided by comparing with the stored `expires_at_ms`, not by the
//! backend's own timers, which only garbage-collect. That keeps both stores
//! exact at the TTL edge and lets tests move time instead of sleeping.

use crate::id::{LoginId, SecretHash, SessionToken};
use crate::notify::Notifier;
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

/// What the phone must show about the browser that asked to log in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrowserContext {
    pub ip: String,
    pub user_agent: String,
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
    pub match_code: Option<u8>,
    /// The user who scanned, once scanned.
    pub user: Option<User>,
}

impl LoginRecord {
    pub fn state_at(&self, now_ms: u64) -> State {
        if !self.state.is_final() && now_ms >= self.expires_at_ms {
            State::Expired
        } else {
            self.state
        }
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

    /// Reads a login; `None` when unknown or already purged.
    async fn get(&self, id: &LoginId) -> Result<Option<LoginRecord>, StoreError>;

    /// pending → scanned by `user`, extending expiry once. Scanning again by
    /// the same user returns the record unchanged (a reloaded phone page);
    /// by another user it is `WrongUser`.
    async fn scan(&self, id: &LoginId, user: &User, now_ms: u64) -> TransitionResult<LoginRecord>;

    /// scanned → approved, only by the user who scanned.
    async fn approve(
        &self,
        id: &LoginId,
        user_id: &str,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord>;

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
    async fn redeem(
        &self,
        id: &LoginId,
        secret: &SecretHash,
        token: &SessionToken,
        now_ms: u64,
    ) -> TransitionResult<User>;

    /// Looks a web session up by its token; `None` when unknown, revoked or
    /// past its expiry.
    async fn session(
        &self,
        token: &SessionToken,
        now_ms: u64,
    ) -> Result<Option<Session>, StoreError>;

    /// Revokes a web session. Revoking an unknown session is not an error.
    async fn revoke_session(&self, token: &SessionToken) -> Result<(), StoreError>;

    /// Remembers a demo phone-app token (by hash) for `ttl_ms`.
    async fn put_mobile_token(
        &self,
        hash: &SecretHash,
        user: &User,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// The user of a demo phone-app token, if it is known and alive.
    async fn mobile_token_user(
        &self,
        hash: &SecretHash,
        now_ms: u64,
    ) -> Result<Option<User>, StoreError>;

    /// Cheap liveness probe of the backend, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The TTLs this store applies.
    fn ttls(&self) -> Ttls;
}
