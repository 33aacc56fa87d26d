//! The authorization endpoint (OpenID Connect Core §3.1.2, RFC 6749 §4.1,
//! RFC 7636, RFC 9207, RFC 9700 §2.1/§4.1):
//!
//! * `GET /oauth2/authorize` checks the request and serves the authorize
//!   page. An unknown client or redirect URI gets an error page, never a
//!   redirect (so qrlogin is no open redirector); every other error
//!   redirects to the client with `error`, `state` and `iss`.
//! * `POST /oauth2/authorize/login` (the page, with the same query) checks
//!   it again — nothing is trusted from the first round — and creates the
//!   login for that client, bound to this browser by the secret cookie.
//! * `GET /v1/logins/{id}/continue` (the page, once approved) redeems the
//!   login into a single-use code bound to client, redirect URI, PKCE
//!   challenge and nonce, and redirects to the client.

use super::{html_page, random_token, Client, Grant, Oidc, CODE_TTL_MS};
use crate::app::AppState;
use crate::error::ApiError;
use crate::limit::IpBucket;
use crate::routes::extract::{BrowserAuth, ClientIp, LoginPath, UserAgent};
use axum::extract::{RawQuery, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use qrlogin_core::{GrantKey, GrantKind, SessionToken, State, TransitionError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A checked authorization request, kept with its login until the code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
}

/// Why a request was refused, and how to tell the user agent.
#[derive(Debug)]
pub enum Refusal {
    /// No trustworthy redirect URI: show a page.
    Page(&'static str),
    /// Redirect to the client with this URL (error, description, state, iss).
    Redirect { url: String, error: &'static str },
}

impl Refusal {
    fn into_response(self, app: &AppState) -> Response {
        match self {
            Refusal::Page(why) => html_page(
                app,
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                why,
            ),
            Refusal::Redirect { url, .. } => redirect(&url),
        }
    }
}

/// A `303 See Other` to `url`, not cached.
pub(crate) fn redirect(url: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(url) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `redirect_uri` with `pairs` added to its query (it may have one already).
pub(crate) fn with_query(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => redirect_uri.to_string(),
    }
}

fn error_redirect(
    oidc: &Oidc,
    redirect_uri: &str,
    state: Option<&str>,
    error: &'static str,
    why: &str,
) -> Refusal {
    let mut pairs = vec![("error", error), ("error_description", why)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &oidc.issuer));
    Refusal::Redirect {
        url: with_query(redirect_uri, &pairs),
        error,
    }
}

/// The most any one parameter may carry (a `state` or `nonce` is an opaque
/// value of the client; a few hundred bytes in practice).
const MAX_PARAM: usize = 1024;

/// Checks an authorization request (the raw query string).
pub fn check(oidc: &Oidc, query: &str) -> Result<(Arc<Client>, AuthRequest), Refusal> {
    let mut params: HashMap<String, String> = HashMap::new();
    let mut repeated = false;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if params.insert(k.into_owned(), v.into_owned()).is_some() {
            repeated = true;
        }
    }
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let client = get("client_id")
        .and_then(|id| oidc.clients.get(id))
        .cloned()
        .ok_or(Refusal::Page(
            "The application asking you to sign in is not known here (client_id).",
        ))?;
    let redirect_uri = get("redirect_uri")
        .filter(|r| client.redirect_uris.iter().any(|u| u == r))
        .ok_or(Refusal::Page(
            "The address to return to (redirect_uri) is not one this application registered.",
        ))?
        .to_string();
    if repeated {
        return Err(error_redirect(
            oidc,
            &redirect_uri,
            None,
            "invalid_request",
            "a parameter is repeated",
        ));
    }
    let state = get("state");
    let fail = |error: &'static str, why: &str| {
        Err(error_redirect(oidc, &redirect_uri, state, error, why))
    };
    if params.values().any(|v| v.len() > MAX_PARAM) {
        return fail("invalid_request", "a parameter is too long");
    }
    if get("response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    if !client.allows(super::clients::GRANT_CODE) {
        return fail(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        );
    }
    let scope = get("scope").unwrap_or("");
    if !scope.split(' ').any(|s| s == "openid") {
        return fail("invalid_scope", "scope must include openid");
    }
    if get("request").is_some() {
        return fail("request_not_supported", "request objects are not supported");
    }
    if get("request_uri").is_some() {
        return fail("request_uri_not_supported", "request_uri is not supported");
    }
    if get("prompt").is_some_and(|p| p.split(' ').any(|v| v == "none")) {
        // No provider session to reuse: every sign-in is a fresh QR login.
        return fail("login_required", "signing in needs the phone");
    }
    let challenge = get("code_challenge");
    match (challenge, get("code_challenge_method")) {
        (Some(_), Some("S256")) => {}
        (Some(_), None | Some("plain")) => {
            return fail(
                "invalid_request",
                "code_challenge_method must be S256 (plain is refused)",
            )
        }
        (Some(_), Some(_)) => return fail("invalid_request", "unknown code_challenge_method"),
        (None, Some(_)) => {
            return fail(
                "invalid_request",
                "code_challenge_method without code_challenge",
            )
        }
        (None, None) if client.public => {
            return fail(
                "invalid_request",
                "public clients must use PKCE (code_challenge, S256)",
            )
        }
        (None, None) => {}
    }
    if let Some(c) = challenge {
        let ok = (43..=128).contains(&c.len())
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !ok {
            return fail(
                "invalid_request",
                "code_challenge is not a base64url S256 value",
            );
        }
    }
    Ok((
        client.clone(),
        AuthRequest {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.clone(),
            scope: super::granted_scope(scope),
            state: state.map(str::to_string),
            nonce: get("nonce").map(str::to_string),
            code_challenge: challenge.map(str::to_string),
        },
    ))
}

pub(crate) fn oidc_of(app: &AppState) -> Result<&Arc<Oidc>, ApiError> {
    app.oidc.as_ref().ok_or(ApiError::NoRoute)
}

/// `GET /oauth2/authorize`
#[utoipa::path(get, path = "/oauth2/authorize", tag = "oidc", params(("response_type" = Option<String>, Query), ("client_id" = Option<String>, Query), ("redirect_uri" = Option<String>, Query), ("scope" = Option<String>, Query), ("state" = Option<String>, Query), ("nonce" = Option<String>, Query), ("code_challenge" = Option<String>, Query), ("code_challenge_method" = Option<String>, Query), ("prompt" = Option<String>, Query)), responses((status = 200, description = "the authorize page (QR login for the client)", content_type = "text/html"), (status = 303, description = "RFC 6749 §4.1.2.1 error redirect to the client (error, state, iss)"), (status = 400, description = "unknown client or redirect_uri: an error page, never a redirect", content_type = "text/html"), (status = 404, description = "no OpenID Provider here (no --oidc-clients)", body = crate::error::ErrorBody)))]
pub async fn authorize(
    AxState(app): AxState<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let oidc = oidc_of(&app)?;
    match check(oidc, query.as_deref().unwrap_or("")) {
        Ok(_) => Ok(crate::routes::pages::authorize_page(&app)),
        Err(r) => Ok(r.into_response(&app)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct StartBody {
    /// The authorization request's query string, as the page got it.
    pub query: String,
}

/// What the authorize page gets: the login as `POST /v1/logins` answers
/// it, plus the client and where to go once approved.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Started {
    #[serde(flatten)]
    pub login: crate::routes::browser::Created,
    pub client: ClientInfo,
    /// `GET` this (a navigation) once the login is approved.
    #[serde(rename = "continue")]
    pub continue_to: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientInfo {
    pub id: String,
    pub name: String,
}

/// `POST /oauth2/authorize/login`
#[utoipa::path(post, path = "/oauth2/authorize/login", tag = "oidc", request_body = StartBody, responses((status = 201, body = Started), (status = 400, description = "refused request (with `redirect` to send the browser to) or malformed body", body = crate::error::ErrorBody), (status = 404, description = "no OpenID Provider here (no --oidc-clients)", body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn start(
    AxState(app): AxState<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(ua): UserAgent,
    crate::routes::extract::ApiJson(body): crate::routes::extract::ApiJson<StartBody>,
) -> Result<Response, ApiError> {
    let oidc = oidc_of(&app)?;
    app.limits.check_ip(IpBucket::Create, ip)?;
    let (client, req) = match check(oidc, body.query.trim_start_matches('?')) {
        Ok(ok) => ok,
        Err(Refusal::Page(why)) => return Err(ApiError::bad_request(why)),
        Err(Refusal::Redirect { url, error }) => {
            #[derive(Serialize)]
            struct Refused<'a> {
                error: &'a str,
                message: &'a str,
                redirect: &'a str,
            }
            return Ok((
                StatusCode::BAD_REQUEST,
                Json(Refused {
                    error,
                    message: "the authorization request was refused; redirect to tell the client",
                    redirect: &url,
                }),
            )
                .into_response());
        }
    };
    let (opened, _) =
        crate::routes::browser::open_login(&app, ip, ua, Some(client.id.clone()), None, false)
            .await?;
    let id = opened.record.id;
    let ttls = app.store.ttls();
    let keep =
        opened.record.expires_at_ms - app.now_ms() + ttls.scan_extension_ms + ttls.final_keep_ms;
    let json = serde_json::to_string(&req).map_err(|_| ApiError::Internal)?;
    app.store
        .put_grant(
            &GrantKey::of_login(GrantKind::AuthRequest, &id),
            &json,
            keep,
            app.now_ms(),
        )
        .await?;
    let mut resp = (
        StatusCode::CREATED,
        Json(Started {
            login: opened.created,
            client: ClientInfo {
                id: client.id.clone(),
                name: client.name.clone(),
            },
            continue_to: app.mount().link(&format!("/v1/logins/{id}/continue")),
        }),
    )
        .into_response();
    if let Some(c) = opened.cookie {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// `GET /v1/logins/{id}/continue`
#[utoipa::path(get, path = "/v1/logins/{id}/continue", tag = "oidc", params(("id" = String, Path, description = "login id")), responses((status = 303, description = "to the client with code, state and iss (or error=access_denied)"), (status = 404, description = "unknown, finished or foreign login (a page), or no OpenID Provider here (JSON)", content((crate::error::ErrorBody = "application/json"), ("text/html"))), (status = 409, description = "not approved yet (a page)", content_type = "text/html"), (status = 503, body = crate::error::ErrorBody)))]
pub async fn continue_login(
    AxState(app): AxState<AppState>,
    LoginPath(id): LoginPath,
    auth: BrowserAuth,
) -> Result<Response, ApiError> {
    let oidc = oidc_of(&app)?;
    let gone = || {
        Ok(html_page(
            &app,
            StatusCode::NOT_FOUND,
            "This sign-in has ended",
            "Go back to the application and start again.",
        ))
    };
    let Some(secret) = auth.0 else { return gone() };
    let now = app.now_ms();
    let key = GrantKey::of_login(GrantKind::AuthRequest, &id);
    let Some(json) = app.store.grant(&key, now).await? else {
        return gone();
    };
    let req: AuthRequest = serde_json::from_str(&json).map_err(|_| ApiError::Internal)?;
    let deny = |why: &str| {
        Ok(error_redirect(
            oidc,
            &req.redirect_uri,
            req.state.as_deref(),
            "access_denied",
            why,
        )
        .into_response(&app))
    };
    // Redeem: approved → consumed, with the OP session (the ID token's sid).
    let token = SessionToken::new_for(id);
    let user = match app.store.redeem(&id, &secret.hash(), &token, now).await {
        Ok(u) => u,
        Err(TransitionError::WrongState(State::Denied)) => {
            return deny("the sign-in was denied on the phone")
        }
        Err(TransitionError::WrongState(State::Cancelled)) => {
            return deny("the sign-in was cancelled")
        }
        Err(TransitionError::Expired) => return deny("the sign-in expired"),
        Err(TransitionError::WrongState(s)) => {
            return Ok(html_page(
                &app,
                StatusCode::CONFLICT,
                "Not approved yet",
                &format!("This sign-in is {s}; approve it on your phone first."),
            ))
        }
        Err(TransitionError::Store(e)) => return Err(e.into()),
        Err(_) => return gone(),
    };
    let _ = app.store.delete_grant(&key).await;
    metrics::counter!("qrlogin_logins_redeemed_total").increment(1);
    let code = random_token().map_err(|_| ApiError::Internal)?;
    let grant = Grant {
        client_id: req.client_id.clone(),
        scope: req.scope.clone(),
        sub: user.id,
        name: user.name,
        auth_time: now / 1000,
        sid: token.session_ref().to_string(),
        nonce: req.nonce.clone(),
        redirect_uri: Some(req.redirect_uri.clone()),
        code_challenge: req.code_challenge.clone(),
    };
    let json = grant.to_json().map_err(|_| ApiError::Internal)?;
    app.store
        .put_grant(
            &GrantKey::of_secret(GrantKind::Code, &code),
            &json,
            CODE_TTL_MS,
            now,
        )
        .await?;
    metrics::counter!("qrlogin_oidc_codes_issued_total").increment(1);
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = &req.state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &oidc.issuer));
    let mut resp = redirect(&with_query(&req.redirect_uri, &pairs));
    if let Some(c) = super::clear_login_cookie(&app, &id) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(resp)
}
