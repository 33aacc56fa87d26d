//! The web session a redeemed login yields, and (JWT mode) the public keys
//! that verify it.

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::routes::browser::{rfc3339, set_cookie};
use crate::routes::extract::{SessionAuth, SESSION_COOKIE};
use axum::extract::State as AxState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use qrlogin_core::User;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub user: User,
    pub expires_at: String,
}

/// `GET /v1/session` — who the session (opaque token or, in JWT mode, a
/// verified JWT) belongs to. The server-side record is always consulted, so
/// a logged-out session is refused in both modes.
#[utoipa::path(get, path = "/v1/session", tag = "session", security(("session_token" = []), ("session_cookie" = [])), responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn whoami(
    AxState(app): AxState<AppState>,
    SessionAuth(session): SessionAuth,
) -> Result<Json<WhoAmI>, ApiError> {
    let session = session.ok_or(ApiError::Unauthorized)?;
    let session = app
        .store
        .session(&session, app.now_ms())
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Json(WhoAmI {
        user: session.user,
        expires_at: rfc3339(session.expires_at_ms),
    }))
}

/// `POST /v1/session/logout` — revokes the session (deletes its server-side
/// record) and clears the cookie. In JWT mode only a JWT that verifies can
/// revoke its record.
#[utoipa::path(post, path = "/v1/session/logout", tag = "session", security((), ("session_token" = []), ("session_cookie" = [])), responses((status = 204, description = "the session (if any) is revoked and its cookie cleared"), (status = 503, body = ErrorBody)))]
pub async fn logout(
    AxState(app): AxState<AppState>,
    SessionAuth(session): SessionAuth,
) -> Result<Response, ApiError> {
    if let Some(session) = session {
        crate::revoke::by_ref(&app, &session).await?;
    }
    let clear = set_cookie(
        SESSION_COOKIE,
        "",
        app.mount().cookie_root(),
        0,
        "Lax",
        app.secure_cookies,
    )?;
    Ok(([(header::SET_COOKIE, clear)], StatusCode::NO_CONTENT).into_response())
}

/// One public key of [`JwkSetDoc`] (RFC 7517/7518), for the OpenAPI
/// document only: the handler serves `jsonwebtoken`'s own `JwkSet`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct JwkDoc {
    /// `EC`
    kty: String,
    /// `P-256`
    crv: String,
    /// base64url x coordinate
    x: String,
    /// base64url y coordinate
    y: String,
    /// RFC 7638 SHA-256 thumbprint of the key; the JWT header's `kid`.
    kid: String,
    /// `ES256`
    alg: String,
    /// `sig`
    #[schema(rename = "use")]
    use_: String,
}

/// `{"keys": [...]}`, the JWK set of `/.well-known/jwks.json`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct JwkSetDoc {
    keys: Vec<JwkDoc>,
}

/// How long verifiers may cache the key set. Keys change only when the
/// service restarts with another key file (or, without one, at every
/// restart), so five minutes bounds how long a rotated key stays unknown.
const JWKS_MAX_AGE: &str = "public, max-age=300";

/// `GET /.well-known/jwks.json` — in JWT mode the public key that signs
/// session JWTs, for services that verify them offline; 404 in opaque mode
/// (there is nothing to verify).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "session", responses((status = 200, body = JwkSetDoc, description = "JWT mode: the signing key (public part only); cacheable"), (status = 404, body = ErrorBody, description = "opaque session mode")))]
pub async fn jwks(AxState(app): AxState<AppState>) -> Result<Response, ApiError> {
    let keys = app.signing_key.as_ref().ok_or(ApiError::NoRoute)?;
    Ok((
        [
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(JWKS_MAX_AGE),
            ),
            // Public data: verifiers running in a browser on another origin
            // (WebCrypto) may fetch it.
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
        ],
        Json(keys.jwks()),
    )
        .into_response())
}
