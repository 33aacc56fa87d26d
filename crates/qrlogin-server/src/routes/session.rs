//! The web session a redeemed login yields.

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::routes::browser::{rfc3339, set_cookie};
use crate::routes::extract::{SessionAuth, SESSION_COOKIE};
use axum::extract::State as AxState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use qrlogin_core::User;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub user: User,
    pub expires_at: String,
}

/// `GET /v1/session`
#[utoipa::path(get, path = "/v1/session", tag = "session", responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(
    AxState(app): AxState<AppState>,
    SessionAuth(token): SessionAuth,
) -> Result<Json<WhoAmI>, ApiError> {
    let token = token.ok_or(ApiError::Unauthorized)?;
    let session = app
        .store
        .session(&token, app.now_ms())
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Json(WhoAmI {
        user: session.user,
        expires_at: rfc3339(session.expires_at_ms),
    }))
}

/// `POST /v1/session/logout` — revokes the session and clears the cookie.
#[utoipa::path(post, path = "/v1/session/logout", tag = "session", responses((status = 204)))]
pub async fn logout(
    AxState(app): AxState<AppState>,
    SessionAuth(token): SessionAuth,
) -> Result<Response, ApiError> {
    if let Some(token) = token {
        app.store.revoke_session(&token).await?;
    }
    let clear = set_cookie(SESSION_COOKIE, "", "/", 0, "Lax", app.secure_cookies)?;
    Ok(([(header::SET_COOKIE, clear)], StatusCode::NO_CONTENT).into_response())
}
