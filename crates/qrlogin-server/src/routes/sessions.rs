//! The phone's view of the user's own web sessions (SPEC §7): list them,
//! log out of one, log out everywhere. The user is the verified mobile
//! token's, as on every phone route.

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::revoke::{self, RevokedBy};
use crate::routes::browser::rfc3339;
use crate::routes::extract::{LoginPath, PhoneUser};
use crate::routes::phone::describe_agent;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::Json;
use qrlogin_core::SessionInfo;
use serde::Serialize;

/// One live web session, as the phone shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session's public name (the id of the login that made it): what
    /// `DELETE /v1/mobile/sessions/{sid}` takes. Not a credential.
    pub sid: String,
    pub created_at: String,
    pub expires_at: String,
    /// The browser that logged in: IP and user agent as seen at login.
    pub ip: String,
    pub user_agent: String,
    pub browser: String,
    pub os: String,
    /// Approximate place of `ip`, when a GeoIP database is configured;
    /// null otherwise.
    #[schema(value_type = Option<Object>)]
    pub place: Option<serde_json::Value>,
}

impl From<SessionInfo> for SessionView {
    fn from(i: SessionInfo) -> Self {
        let (browser, os) = describe_agent(&i.user_agent);
        Self {
            sid: i.sid.to_string(),
            created_at: rfc3339(i.created_at_ms),
            expires_at: rfc3339(i.expires_at_ms),
            ip: i.ip,
            user_agent: i.user_agent,
            browser,
            os,
            place: i.place.and_then(|p| serde_json::to_value(p).ok()),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// Oldest first.
    pub sessions: Vec<SessionView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RevokedCount {
    /// How many live sessions were ended.
    pub revoked: u64,
}

/// `GET /v1/mobile/sessions` — the user's live web sessions.
#[utoipa::path(get, path = "/v1/mobile/sessions", tag = "phone", security(("mobile_token" = [])), responses((status = 200, body = SessionList), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(
    AxState(app): AxState<AppState>,
    PhoneUser(user): PhoneUser,
) -> Result<Json<SessionList>, ApiError> {
    app.limits.check_user(&user.id)?;
    let sessions = app.store.user_sessions(&user.id, app.now_ms()).await?;
    Ok(Json(SessionList {
        sessions: sessions.into_iter().map(SessionView::from).collect(),
    }))
}

/// `DELETE /v1/mobile/sessions/{sid}` — log out of one session (only the
/// caller's own: another user's sid is 404, like an unknown one).
#[utoipa::path(delete, path = "/v1/mobile/sessions/{sid}", tag = "phone", security(("mobile_token" = [])), params(("sid" = String, Path, description = "the session's sid")), responses((status = 204, description = "the session is revoked"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "no such live session of this user"), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn revoke_one(
    AxState(app): AxState<AppState>,
    PhoneUser(user): PhoneUser,
    LoginPath(sid): LoginPath,
) -> Result<StatusCode, ApiError> {
    app.limits.check_user(&user.id)?;
    match revoke::one(&app, &user.id, &sid).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound),
    }
}

/// `POST /v1/mobile/sessions/revoke-all` — log out everywhere. JWT session
/// mode: services that verify the JWTs offline keep accepting them until
/// they expire; only `GET /v1/session` sees the revocation at once.
#[utoipa::path(post, path = "/v1/mobile/sessions/revoke-all", tag = "phone", security(("mobile_token" = [])), responses((status = 200, body = RevokedCount), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn revoke_all(
    AxState(app): AxState<AppState>,
    PhoneUser(user): PhoneUser,
) -> Result<Json<RevokedCount>, ApiError> {
    app.limits.check_user(&user.id)?;
    let revoked = revoke::all(&app, &user.id, RevokedBy::PhoneAll).await?;
    Ok(Json(RevokedCount { revoked }))
}
