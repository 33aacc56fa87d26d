//! qrlogin's domain model, free of HTTP and of any particular database.
//!
//! * [`id`] — the public login id and the secrets (browser secret, session
//!   and mobile tokens). Parsed once at the edge, redacted in `Debug`.
//! * [`state`] — the login state machine of SPEC §2.
//! * [`store`] — the [`Store`] trait every backend implements: one atomic
//!   operation per transition, plus wake-up hints for watchers.
//! * [`memory`] — the in-process store, the default for a single node.
//! * [`notify`] — the in-process registry that wakes browsers waiting on a
//!   login; stores feed it hints, watchers re-read the store.
//! * [`clock`] — an injectable clock, so expiry is testable without sleeping.
//! * [`events`] — security events for webhooks and the audit log, and the
//!   queue the stores keep them in.
//! * [`grant`] — short-lived records of the protocol faces (codes, tokens).
//! * [`place`], [`risk`] — an address's GeoIP place and the scan's risk
//!   rule (browser versus phone).

//! * [`sessions`] — a user's own sessions: list, log out one, log out everywhere.
//! * [`verifier`] — the [`MobileVerifier`] trait: who a phone's bearer is.

pub mod clock;
pub mod events;
pub mod grant;
pub mod id;
pub mod memory;
pub mod notify;
pub mod place;
pub mod risk;

pub mod sessions;
pub mod state;
pub mod store;
pub mod verifier;

pub use clock::{Clock, ManualClock, SystemClock};
pub use events::{Event, EventKind, QueuedEvent};
pub use grant::{GrantKey, GrantKind, Taken};
pub use id::{
    BrowserSecret, LoginId, MobileToken, ParseError, SecretHash, SessionRef, SessionToken,
};
pub use memory::MemoryStore;
pub use notify::{Hint, Notifier, Registration};
pub use place::{Coords, Place};
pub use risk::{Risk, RiskCheck, RiskLevel, RiskReason};

pub use sessions::SessionInfo;
pub use state::State;
pub use store::{
    network_of, Approval, BrowserContext, LoginRecord, MatchPolicy, NewLogin, ScanPolicy, Session,
    Store, StoreError, TransitionError, Ttls, User,
};
pub use verifier::{BackgroundTask, MobileVerifier, VerifyError};
