//! The site backend's API (`--admin-token-file`): end every session of a
//! user, e.g. after a password change or when an account is locked.

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::limit::IpBucket;
use crate::revoke::{self, RevokedBy};
use crate::routes::extract::{bearer, ClientIp};
use crate::routes::sessions::RevokedCount;
use axum::extract::{Path, State as AxState};
use axum::http::HeaderMap;
use axum::Json;

/// Longest user id accepted (as the identity providers' `sub`).
const MAX_USER_ID: usize = 256;

/// `POST /v1/admin/users/{user_id}/sessions/revoke-all` — revokes every web
/// session of `user_id` and answers how many ended. 404 unless
/// `--admin-token-file` is set. JWT session mode: services that verify the
/// JWTs offline keep accepting them until they expire.
#[utoipa::path(post, path = "/v1/admin/users/{user_id}/sessions/revoke-all", tag = "admin", security(("admin_token" = [])), params(("user_id" = String, Path, description = "the user id, as the phone identity gives it")), responses((status = 200, body = RevokedCount), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "no --admin-token-file"), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn revoke_all(
    AxState(app): AxState<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RevokedCount>, ApiError> {
    let token = app.admin_token.as_ref().ok_or(ApiError::NoRoute)?;
    // Wrong bearers share the sign-in quota: guessing is rate-limited.
    app.limits.check_ip(IpBucket::SignIn, ip)?;
    let presented = bearer(&headers).ok_or(ApiError::Unauthorized)?;
    if !token.matches(presented) {
        return Err(ApiError::Unauthorized);
    }
    let Ok(Path(user_id)) = path else {
        return Err(ApiError::bad_request("malformed user id"));
    };
    if user_id.is_empty() || user_id.len() > MAX_USER_ID {
        return Err(ApiError::bad_request("malformed user id"));
    }
    let revoked = revoke::all(&app, &user_id, RevokedBy::Admin).await?;
    Ok(Json(RevokedCount { revoked }))
}
