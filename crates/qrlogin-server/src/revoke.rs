//! Every revocation of web sessions goes through here: browser logout, the
//! phone's "log out" and "log out everywhere", and the site backend's
//! revoke-all. [`revoked`] is the one hook that sees each of them after the
//! store has done it, so whatever must follow a revocation (metrics now;
//! the `session.revoked` webhook) is added in one place.

use crate::app::AppState;
use qrlogin_core::{LoginId, SessionRef, StoreError};

/// Who asked for a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedBy {
    /// `POST /v1/session/logout` (the session's own holder).
    Logout,
    /// `DELETE /v1/mobile/sessions/{sid}`.
    PhoneOne,
    /// `POST /v1/mobile/sessions/revoke-all`.
    PhoneAll,
    /// `POST /v1/admin/users/{user_id}/sessions/revoke-all`.
    Admin,
}

impl RevokedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokedBy::Logout => "logout",
            RevokedBy::PhoneOne => "phone",
            RevokedBy::PhoneAll => "phone_all",
            RevokedBy::Admin => "admin",
        }
    }
}

/// What was revoked, for [`revoked`]. No secrets: a sid is a login id.
#[derive(Debug, Clone)]
pub struct Revocation<'a> {
    pub by: RevokedBy,
    /// The user, when the caller knows it (logout by token does not read
    /// the session first).
    pub user_id: Option<&'a str>,
    /// The one session, when one was named.
    pub sid: Option<LoginId>,
    /// How many live sessions ended.
    pub count: u64,
}

/// The hook after every successful revocation.
pub fn revoked(_app: &AppState, r: &Revocation<'_>) {
    metrics::counter!("qrlogin_sessions_revoked_total", "by" => r.by.as_str()).increment(r.count);
    tracing::info!(by = r.by.as_str(), count = r.count, "sessions revoked");
}

/// Logout: the session named by the caller's own credential.
pub async fn by_ref(app: &AppState, session: &SessionRef) -> Result<(), StoreError> {
    app.store.revoke_session(session).await?;
    revoked(
        app,
        &Revocation {
            by: RevokedBy::Logout,
            user_id: None,
            sid: Some(session.login_id()),
            count: 1,
        },
    );
    Ok(())
}

/// One session of `user_id`; `false` when it is not theirs or not live.
pub async fn one(app: &AppState, user_id: &str, sid: &LoginId) -> Result<bool, StoreError> {
    let done = app
        .store
        .revoke_user_session(user_id, sid, app.now_ms())
        .await?;
    if done {
        revoked(
            app,
            &Revocation {
                by: RevokedBy::PhoneOne,
                user_id: Some(user_id),
                sid: Some(*sid),
                count: 1,
            },
        );
    }
    Ok(done)
}

/// Every session of `user_id`; how many ended.
pub async fn all(app: &AppState, user_id: &str, by: RevokedBy) -> Result<u64, StoreError> {
    let count = app
        .store
        .revoke_user_sessions(user_id, app.now_ms())
        .await?;
    revoked(
        app,
        &Revocation {
            by,
            user_id: Some(user_id),
            sid: None,
            count,
        },
    );
    Ok(count)
}
