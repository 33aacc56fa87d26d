//! Extractors: untrusted request parts become typed values here, or the
//! request ends with a clear 4xx JSON error.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use qrlogin_core::{BrowserSecret, LoginId, SessionRef, SessionToken, User};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Cookie holding the browser secret, scoped to `/v1/logins/{id}`.
pub const BROWSER_COOKIE: &str = "qrl_bs";
/// Cookie holding the web session token.
pub const SESSION_COOKIE: &str = "qrl_session";

/// A login id from the path, well formed or a 400.
pub struct LoginPath(pub LoginId);

impl<S: Send + Sync> FromRequestParts<S> for LoginPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("malformed login id"))?;
        raw.parse()
            .map(LoginPath)
            .map_err(|_| ApiError::bad_request("malformed login id"))
    }
}

/// JSON body whose rejections are our JSON errors (400 / 413 / 415).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

/// An optional JSON body: empty is `None`, anything else must parse.
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rej| {
                if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::bad_request("unreadable body")
                }
            })?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(OptionalJson(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| OptionalJson(Some(v)))
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::bad_request("expected Content-Type: application/json")
        }
        _ => ApiError::bad_request(format!("malformed JSON body: {}", rej.body_text())),
    }
}

/// Value of cookie `name`, if present.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Authorization: Bearer <x>` value, if present.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A credential from the bearer header if that parses as `T`, else from
/// cookie `name`. A bearer that is not a `T` (say, the site's own
/// Authorization header) must not hide a valid cookie.
fn bearer_or_cookie<T: FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    bearer(headers)
        .and_then(|s| s.parse().ok())
        .or_else(|| cookie(headers, name).and_then(|s| s.parse().ok()))
}

/// The browser secret (cookie, or bearer for header binding). Missing or
/// malformed secrets are not a distinct error: the handler answers 404 like
/// for a wrong secret.
pub struct BrowserAuth(pub Option<BrowserSecret>);

impl<S: Send + Sync> FromRequestParts<S> for BrowserAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(BrowserAuth(bearer_or_cookie(
            &parts.headers,
            BROWSER_COOKIE,
        )))
    }
}

impl BrowserAuth {
    pub fn require(self) -> Result<BrowserSecret, ApiError> {
        self.0.ok_or(ApiError::NotFound)
    }
}

/// The web session a request presents (bearer, else the `qrl_session`
/// cookie), checked as far as that is possible without the store: in opaque
/// mode a well-formed token, in JWT mode a JWT that verifies (signature,
/// algorithm, issuer, audience, expiry). Either way the result is the
/// reference to the session record, which the handler then looks up.
/// `None` for anything else; the handler answers 401.
pub struct SessionAuth(pub Option<SessionRef>);

impl FromRequestParts<AppState> for SessionAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let found = match &state.jwt {
            None => bearer_or_cookie::<SessionToken>(&parts.headers, SESSION_COOKIE)
                .map(|t| t.session_ref()),
            Some(keys) => {
                let now = state.now_ms();
                let check = |s: &str| keys.verify(s, now).ok().map(|v| v.session);
                // As for opaque tokens: a bearer that is not ours (the
                // site's own Authorization header) must not hide the cookie.
                bearer(&parts.headers)
                    .and_then(check)
                    .or_else(|| cookie(&parts.headers, SESSION_COOKIE).and_then(check))
            }
        };
        Ok(SessionAuth(found))
    }
}

/// The signed-in phone user, from a verified mobile token. The only source
/// of a user id on the phone side.
pub struct PhoneUser(pub User);

impl FromRequestParts<AppState> for PhoneUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let result = state.verifier.verify(token).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(qrlogin_core::VerifyError::Invalid) => "invalid",
            Err(_) => "unavailable",
        };
        metrics::counter!(
            "qrlogin_mobile_verifications_total",
            "verifier" => state.verifier.kind(),
            "outcome" => outcome
        )
        .increment(1);
        Ok(PhoneUser(result?))
    }
}

/// The client's IP: the socket peer, or, when the peer is a configured
/// trusted proxy, the right-most untrusted address of `X-Forwarded-For`.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(ClientIp(client_ip(
            peer_ip(&parts.extensions),
            &parts.headers,
            &state.trusted_proxies,
        )))
    }
}

/// The socket peer's address (from [`ConnectInfo`]); loopback when absent
/// (a router driven without a listener, as in tests).
pub fn peer_ip(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    // Walked from the right (the hop nearest us) without collecting.
    headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.rsplit(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

/// The request's User-Agent (see [`user_agent`]), read without cloning the
/// whole header map as a `HeaderMap` extractor would.
pub struct UserAgent(pub String);

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(UserAgent(user_agent(&parts.headers)))
    }
}

/// `Last-Event-ID` as a version, when present and a number.
pub struct LastEventId(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(LastEventId(
            parts
                .headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        ))
    }
}

/// The request's User-Agent, truncated; what the phone shows about the browser.
pub fn user_agent(headers: &HeaderMap) -> String {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ua.chars().take(512).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        let trusted = vec![proxy, "10.0.0.2".parse().unwrap()];
        assert_eq!(client_ip(other, &h, &trusted), other);
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        // Several headers read as one list, in order: the last one is nearest.
        h.append("x-forwarded-for", "198.51.100.1, 10.0.0.2".parse().unwrap());
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn reads_cookies_and_bearer() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; qrl_bs=xyz; b=2".parse().unwrap());
        h.insert(header::AUTHORIZATION, "Bearer tok".parse().unwrap());
        assert_eq!(cookie(&h, "qrl_bs"), Some("xyz"));
        assert_eq!(cookie(&h, "nope"), None);
        assert_eq!(bearer(&h), Some("tok"));
    }
}
