//! The token endpoint (RFC 6749 §3.2, §4.1.3, §6; RFC 7636 §4.6; RFC 8628
//! §3.4–3.5): authorization codes (single use; a second use revokes what
//! the first issued), refresh tokens (rotated on use; a replayed one
//! revokes the family), device codes (polled).
//!
//! What it issues: an ES256 ID token (`iss`, `sub`, `aud`, `exp`, `iat`,
//! `auth_time`, `nonce`, `amr: ["qr"]`, `acr` when configured, `sid`, and
//! `name` with the `profile` scope), an opaque access token for userinfo,
//! and a refresh token when the client may use that grant.

use super::clients::{GRANT_CODE, GRANT_DEVICE, GRANT_REFRESH};
use super::{
    authenticate, no_store, random_token, Client, Grant, OAuthError, OAuthErrorCode, Oidc,
};
use crate::app::AppState;
use crate::limit::IpBucket;
use crate::routes::extract::ClientIp;
use axum::extract::State as AxState;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use qrlogin_core::{GrantKey, GrantKind, SessionRef, Taken};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Every parameter any grant type takes (`application/x-www-form-urlencoded`).
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct TokenForm {
    /// Required (RFC 6749 §4.1.3); an `Option` so that its absence is an
    /// OAuth `invalid_request`, not a deserialisation error.
    #[schema(required = true)]
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub device_code: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub id_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    auth_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    amr: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    sid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// Parses a form body; anything else is `invalid_request`.
pub(crate) fn parse_form<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, OAuthError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, _) in url::form_urlencoded::parse(body) {
        if !seen.insert(k.into_owned()) {
            return Err(OAuthError::invalid_request("a parameter is repeated"));
        }
    }
    serde_urlencoded_from(body)
}

fn serde_urlencoded_from<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OAuthError> {
    let pairs: serde_json::Map<String, serde_json::Value> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    serde_json::from_value(serde_json::Value::Object(pairs))
        .map_err(|_| OAuthError::invalid_request("malformed parameters"))
}

/// `POST /oauth2/token`
#[utoipa::path(post, path = "/oauth2/token", tag = "oidc", security((), ("client_basic" = [])), request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"), responses((status = 200, body = TokenResponse), (status = 400, description = "RFC 6749 §5.2 error (also authorization_pending, slow_down, access_denied, expired_token for the device grant)", body = crate::oidc::error::OAuthErrorBody), (status = 401, description = "invalid_client (with `WWW-Authenticate: Basic` when Basic was sent)", body = crate::oidc::error::OAuthErrorBody), (status = 429, body = crate::error::ErrorBody), (status = 500, description = "server_error: a stored grant that cannot be read, or no randomness or signature for the tokens", body = crate::oidc::error::OAuthErrorBody), (status = 503, description = "temporarily_unavailable", body = crate::oidc::error::OAuthErrorBody)))]
pub async fn token(
    AxState(app): AxState<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if app.oidc.is_none() {
        // No clients: the endpoint does not exist (a plain 404, not an
        // RFC 6749 error), like every other OIDC endpoint.
        return crate::error::ApiError::NoRoute.into_response();
    }
    match token_inner(&app, ip, &headers, &body).await {
        Ok(r) => no_store(Json(r).into_response()),
        Err(e) => e.into_response(),
    }
}

async fn token_inner(
    app: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, OAuthError> {
    let oidc = app
        .oidc
        .as_ref()
        .ok_or_else(|| OAuthError::invalid_request("no OpenID Provider here"))?;
    // The address's poll budget: its refusal stays the service's 429 with
    // Retry-After (RFC 8628's `slow_down` is per device code, in
    // `device::poll`).
    app.limits.check_ip(IpBucket::Poll, ip)?;
    let form: TokenForm = parse_form(headers, body)?;
    let client = authenticate(
        oidc,
        headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )
    .await?;
    let grant_type = form
        .grant_type
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?;
    if ![GRANT_CODE, GRANT_REFRESH, GRANT_DEVICE].contains(&grant_type) {
        return Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "unsupported grant_type",
        ));
    }
    if !client.allows(grant_type) {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "this client may not use this grant type",
        ));
    }
    match grant_type {
        GRANT_CODE => code_grant(app, oidc, &client, &form).await,
        GRANT_REFRESH => refresh_grant(app, oidc, &client, &form).await,
        _ => super::device::poll(app, oidc, &client, &form).await,
    }
}

async fn code_grant(
    app: &AppState,
    oidc: &Oidc,
    client: &Client,
    form: &TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let code = form
        .code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let now = app.now_ms();
    let key = GrantKey::of_secret(GrantKind::Code, code);
    let grant = match app.store.take_grant(&key, now).await? {
        None => return Err(OAuthError::invalid_grant("the code is unknown or expired")),
        Some(Taken::Again(json)) => {
            // A code used twice has leaked (RFC 6749 §4.1.2): end what the
            // first use issued — the OP session all its tokens hang on.
            if let Ok(g) = Grant::from_json(&json) {
                revoke_sid(app, &g.sid).await;
                tracing::warn!(client = %g.client_id, "authorization code replayed; its tokens are revoked");
                metrics::counter!("qrlogin_oidc_code_replays_total").increment(1);
            }
            return Err(OAuthError::invalid_grant("the code was already used"));
        }
        Some(Taken::First(json)) => Grant::from_json(&json)?,
    };
    if grant.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if form.redirect_uri.as_deref() != grant.redirect_uri.as_deref() {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    match (&grant.code_challenge, form.code_verifier.as_deref()) {
        (Some(challenge), Some(verifier)) => {
            use base64::Engine as _;
            let ok_form = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()));
            if !ok_form || computed.as_bytes() != challenge.as_bytes() {
                return Err(OAuthError::invalid_grant(
                    "code_verifier does not match the code_challenge",
                ));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is missing")),
        // RFC 9700 §2.1.1: a verifier for a code issued without a challenge
        // is an injection attempt.
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "no code_challenge was sent for this code",
            ))
        }
        (None, None) => {}
    }
    issue(app, oidc, client, &grant).await
}

async fn refresh_grant(
    app: &AppState,
    oidc: &Oidc,
    client: &Client,
    form: &TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let rt = form
        .refresh_token
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let now = app.now_ms();
    let grant = match app
        .store
        .take_grant(&GrantKey::of_secret(GrantKind::RefreshToken, rt), now)
        .await?
    {
        None => {
            return Err(OAuthError::invalid_grant(
                "the refresh token is unknown, revoked or expired",
            ))
        }
        Some(Taken::Again(json)) => {
            // RFC 9700 §4.14.2: a rotated refresh token presented again
            // means it was stolen; end the whole family.
            if let Ok(g) = Grant::from_json(&json) {
                revoke_sid(app, &g.sid).await;
                metrics::counter!("qrlogin_oidc_refresh_replays_total").increment(1);
            }
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used",
            ));
        }
        Some(Taken::First(json)) => Grant::from_json(&json)?,
    };
    if grant.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the refresh token belongs to another client",
        ));
    }
    if !session_alive(app, &grant.sid).await? {
        return Err(OAuthError::invalid_grant("the session has ended"));
    }
    let mut g = grant;
    if let Some(asked) = form.scope.as_deref() {
        // Narrowing only (RFC 6749 §6).
        let had: Vec<&str> = g.scope.split(' ').collect();
        if asked.split(' ').any(|s| !had.contains(&s)) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidScope,
                "a refresh cannot widen the scope",
            ));
        }
        g.scope = super::granted_scope(asked);
    }
    g.nonce = None;
    issue(app, oidc, client, &g).await
}

/// Whether the OP session `sid` names is still alive (not logged out, not
/// revoked by a replay).
pub(crate) async fn session_alive(app: &AppState, sid: &str) -> Result<bool, OAuthError> {
    let Ok(r) = sid.parse::<SessionRef>() else {
        return Ok(false);
    };
    Ok(app.store.session(&r, app.now_ms()).await?.is_some())
}

/// Ends the OP session `sid` names, and with it every token hanging on it.
pub(crate) async fn revoke_sid(app: &AppState, sid: &str) {
    if let Ok(r) = sid.parse::<SessionRef>() {
        if let Err(e) = app.store.revoke_session(&r).await {
            tracing::warn!(error = %e, "revoking an OP session");
        }
    }
}

/// Mints the ID token, the access token and (when allowed) a new refresh
/// token for `grant`.
pub(crate) async fn issue(
    app: &AppState,
    oidc: &Oidc,
    client: &Client,
    grant: &Grant,
) -> Result<TokenResponse, OAuthError> {
    let now = app.now_ms();
    let ttl = oidc.access_token_ttl_ms;
    let profile = grant.scope.split(' ').any(|s| s == "profile");
    let claims = IdTokenClaims {
        iss: &oidc.issuer,
        sub: &grant.sub,
        aud: &client.id,
        exp: (now + ttl) / 1000,
        iat: now / 1000,
        auth_time: grant.auth_time,
        nonce: grant.nonce.as_deref(),
        amr: ["qr"],
        acr: oidc.acr.as_deref(),
        sid: &grant.sid,
        name: profile.then_some(grant.name.as_str()),
    };
    let id_token = oidc
        .key
        .sign(&claims, "JWT")
        .map_err(|e| OAuthError::new(OAuthErrorCode::ServerError, e.to_string()))?;
    let mut stored = grant.clone();
    stored.redirect_uri = None;
    stored.code_challenge = None;
    stored.nonce = None;
    let json = stored.to_json()?;
    let access_token = random_token()?;
    app.store
        .put_grant(
            &GrantKey::of_secret(GrantKind::AccessToken, &access_token),
            &json,
            ttl,
            now,
        )
        .await?;
    let refresh_token = if client.allows(GRANT_REFRESH) {
        let rt = random_token()?;
        let session_ms = app.store.ttls().session_ms;
        app.store
            .put_grant(
                &GrantKey::of_secret(GrantKind::RefreshToken, &rt),
                &json,
                session_ms,
                now,
            )
            .await?;
        Some(rt)
    } else {
        None
    };
    metrics::counter!("qrlogin_oidc_tokens_issued_total").increment(1);
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl / 1000,
        id_token,
        refresh_token,
        scope: grant.scope.clone(),
    })
}
