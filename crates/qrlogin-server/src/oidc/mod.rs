//! qrlogin as an OpenID Provider (authorization code + PKCE) and an RFC 8628
//! device authorization server: the standard faces a site's OIDC client
//! library, a TV or a CLI already speak, whose sign-in step is "scan with
//! your phone".
//!
//! Both grants are logins of the one state machine (docs/DECISIONS.md §13):
//!
//! * **Code flow.** `/oauth2/authorize` checks the request and serves the
//!   authorize page; the page creates a login for that client (its name on
//!   the page and the phone) bound to the browser by the usual secret
//!   cookie, and watches it by SSE like `/`. Approved, the browser follows
//!   `/v1/logins/{id}/continue`, which redeems the login (consumed, with an
//!   OP session whose reference is the ID token's `sid`) into a single-use
//!   code and redirects to the client.
//! * **Device flow.** `/oauth2/device_authorization` creates a login whose
//!   "browser" is the device and whose browser secret is the device code
//!   (`<login id>.<secret>`, like a session token, so the token endpoint
//!   finds the login); `verification_uri_complete` is the login's QR link
//!   `/m/{id}`. Polling reads the login's state; approved, it redeems.
//!
//! Codes, access and refresh tokens, pending requests and user codes are
//! store grants ([`qrlogin_core::grant`]): hashed, expiring, and
//! take-once where a second use must be seen.

pub mod authorize;
pub mod clients;
pub mod device;
pub mod endpoints;
pub mod error;
pub mod token;

use crate::keys::SigningKey;
use crate::routes::browser::set_cookie;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
pub use clients::{Client, Clients};
pub use error::{OAuthError, OAuthErrorCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How long an authorization code lives (RFC 6749 §4.1.2: short; ≤ 60 s
/// by the issue).
pub const CODE_TTL_MS: u64 = 60_000;

/// The provider's settings and keys; `None` in the app without clients.
pub struct Oidc {
    pub clients: Clients,
    /// `--oidc-issuer`, default the public URL (no trailing slash).
    pub issuer: String,
    pub key: Arc<SigningKey>,
    /// `--oidc-acr`: the `acr` claim, when configured.
    pub acr: Option<String>,
    pub access_token_ttl_ms: u64,
    pub device_ttl_ms: u64,
    pub device_interval_s: u64,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer)
            .field("clients", &self.clients.len())
            .field("key", &self.key)
            .finish()
    }
}

/// 256 random bits, base64url: codes, tokens.
pub(crate) fn random_token() -> Result<String, OAuthError> {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)
        .map_err(|_| OAuthError::new(OAuthErrorCode::ServerError, "no randomness"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// A granted scope: what was asked for, of what we know (`openid`,
/// `profile`, `offline_access`), space-separated.
pub(crate) fn granted_scope(requested: &str) -> String {
    let known = ["openid", "profile", "offline_access"];
    let mut out: Vec<&str> = Vec::new();
    for s in requested.split(' ').filter(|s| known.contains(s)) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

/// What an authorization code, an access token and a refresh token stand
/// for: the user, the client, and the OP session they belong to (revoking
/// it — logout, a replayed code, a replayed refresh token — ends them all).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub client_id: String,
    pub scope: String,
    pub sub: String,
    pub name: String,
    /// Unix seconds of the QR approval.
    pub auth_time: u64,
    /// The OP session ([`qrlogin_core::SessionRef`] text).
    pub sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Code only: the redirect URI it was issued for, and the PKCE challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
}

impl Grant {
    pub fn to_json(&self) -> Result<String, OAuthError> {
        serde_json::to_string(self)
            .map_err(|_| OAuthError::new(OAuthErrorCode::ServerError, "grant"))
    }
    pub fn from_json(s: &str) -> Result<Self, OAuthError> {
        serde_json::from_str(s)
            .map_err(|_| OAuthError::new(OAuthErrorCode::ServerError, "stored grant is not valid"))
    }
}

/// A plain HTML page for errors that must not redirect (unknown client or
/// redirect URI: RFC 6749 §4.1.2.1) and for the end of a logout; under the
/// pages' Content-Security-Policy, with their stylesheet.
pub(crate) fn html_page(
    app: &crate::app::AppState,
    status: StatusCode,
    title: &str,
    text: &str,
) -> Response {
    let esc = crate::site::escape_html;
    let css = app.mount().link(&format!(
        "{}/{}/app.css",
        crate::site::ASSETS_DIR,
        app.site.version
    ));
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><link rel=\"stylesheet\" href=\"{css}\"></head>\
         <body><main class=\"card\"><h1>{t}</h1><p>{x}</p></main></body></html>",
        t = esc(title),
        x = esc(text),
        css = esc(&css),
    );
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, app.site.csp.clone());
    resp
}

/// `Cache-Control: no-store` and `Pragma: no-cache` on a token answer
/// (RFC 6749 §5.1).
pub(crate) fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: each
/// part form-urlencoded) — `(id, secret)` — or `None` without that header.
pub(crate) fn basic_credentials(
    headers: &HeaderMap,
) -> Result<Option<(String, String)>, OAuthError> {
    use base64::Engine as _;
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| OAuthError::invalid_client(true))?;
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| OAuthError::invalid_client(true))?;
    let raw = String::from_utf8(raw).map_err(|_| OAuthError::invalid_client(true))?;
    let (id, secret) = raw
        .split_once(':')
        .ok_or(OAuthError::invalid_client(true))?;
    let dec = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((dec(id), dec(secret))))
}

/// Authenticates the client of a token, device or revocation request:
/// `client_secret_basic`, `client_secret_post`, or a public client naming
/// itself (`none`). Never both Basic and a posted secret.
pub(crate) async fn authenticate(
    oidc: &Oidc,
    headers: &HeaderMap,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<Arc<Client>, OAuthError> {
    let basic = basic_credentials(headers)?;
    let (id, secret, via_basic) = match (&basic, form_secret) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ))
        }
        (Some((id, secret)), None) => {
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the Basic credentials",
                ));
            }
            (id.as_str(), Some(secret.as_str()), true)
        }
        (None, secret) => (
            form_id.ok_or_else(|| OAuthError::invalid_client(false))?,
            secret,
            false,
        ),
    };
    let client = oidc
        .clients
        .get(id)
        .cloned()
        .ok_or(OAuthError::invalid_client(via_basic))?;
    match (client.public, secret) {
        (true, None) => Ok(client),
        (true, Some(_)) => Err(OAuthError::invalid_client(via_basic)),
        (false, None) => Err(OAuthError::invalid_client(via_basic)),
        (false, Some(s)) if client.secret_matches(s).await => Ok(client),
        (false, Some(_)) => Err(OAuthError::invalid_client(via_basic)),
    }
}

/// Drops the browser-secret cookie of a finished authorize login.
pub(crate) fn clear_login_cookie(
    app: &crate::app::AppState,
    id: &qrlogin_core::LoginId,
) -> Option<HeaderValue> {
    set_cookie(
        crate::routes::extract::BROWSER_COOKIE,
        "",
        &app.mount().link(&format!("/v1/logins/{id}")),
        0,
        "Strict",
        app.secure_cookies,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_filtered_and_deduplicated() {
        assert_eq!(granted_scope("openid profile"), "openid profile");
        assert_eq!(
            granted_scope("profile openid email openid"),
            "profile openid"
        );
        assert_eq!(granted_scope(""), "");
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        use base64::Engine as _;
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode("my%3Aapp:s%2Bcret");
        h.insert(header::AUTHORIZATION, format!("Basic {v}").parse().unwrap());
        assert_eq!(
            basic_credentials(&h).unwrap(),
            Some(("my:app".into(), "s+cret".into()))
        );
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert!(basic_credentials(&h).is_err());
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&h).unwrap(), None);
    }
}
