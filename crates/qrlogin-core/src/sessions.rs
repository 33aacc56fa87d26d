//! What a user may see about, and do with, their own web sessions: the
//! per-user session index behind `GET /v1/mobile/sessions`, "log out" of
//! one session and "log out everywhere".
//!
//! A session is named by its login's id (`sid`): a login yields at most one
//! session, the id is already public (it is in the QR), and it opens
//! nothing. The token, its hash and the JWT's `sid` (a [`SessionRef`](crate::SessionRef))
//! are never shown: the hash is what the store is keyed by.

use crate::id::LoginId;
/// One live web session of a user, as the phone lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's public name: the id of the login that made it.
    pub sid: LoginId,
    /// Whose session it is.
    pub user_id: String,
    /// When it was issued (redeem), ms since the epoch.
    pub created_at_ms: u64,
    /// When it ends by itself.
    pub expires_at_ms: u64,
    /// The browser that logged in: its IP and user agent, as the scan saw
    /// them (the HTTP layer derives browser and OS from the user agent).
    pub ip: String,
    pub user_agent: String,
    /// The browser's GeoIP place at login, with `--geoip-db`.
    pub place: Option<crate::place::Place>,
}

/// How far past "now" an index entry written at approve time may still
/// point at a session that redeem has yet to create: an approved login is
/// redeemed before it expires, at most `pending + scan_extension` after
/// approve; `final_keep` is margin for clocks of different instances.
/// Only pruning uses it; liveness is always read from the session itself.
/// (It was a fixed 24 h: an index that is written at least once a day never
/// expired, and kept every login of the day; the soak found one with
/// 295,200 entries.)
pub fn index_slack_ms(ttls: &crate::Ttls) -> u64 {
    ttls.pending_ms + ttls.scan_extension_ms + ttls.final_keep_ms
}
