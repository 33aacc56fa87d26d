//! The device authorization grant (RFC 8628) as a login: the device is the
//! "browser", its device code is the browser secret (`<login id>.<secret>`,
//! so the token endpoint finds the login), and the QR it shows is the
//! login's own `/m/{id}` link. A phone without a camera types the user code
//! at `/device` instead.
//!
//! User codes are 8 letters from a 20-consonant alphabet (no vowels, so no
//! words; no look-alikes), shown as `BCDF-GHJK`: 20^8 ≈ 2.6·10^10, and
//! lookups are limited per address like login-id guessing (RFC 8628 §5.1).

use super::clients::GRANT_DEVICE;
use super::token::{issue, TokenForm, TokenResponse};
use super::{authenticate, no_store, Client, Grant, OAuthError, OAuthErrorCode, Oidc};
use crate::app::AppState;
use crate::error::ApiError;
use crate::limit::IpBucket;
use crate::routes::extract::{ApiJson, ClientIp, UserAgent};
use axum::extract::State as AxState;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use qrlogin_core::{
    BrowserSecret, GrantKey, GrantKind, LoginId, SessionToken, State, TransitionError,
};
use serde::{Deserialize, Serialize};

const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// A fresh user code, `XXXX-XXXX`.
fn user_code() -> Result<String, OAuthError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b)
        .map_err(|_| OAuthError::new(OAuthErrorCode::ServerError, "no randomness"))?;
    // 256 = 12·20 + 16: reject the top 16 values so every letter is equally likely.
    let mut out = String::with_capacity(9);
    let mut i = 0;
    let mut pool = b.to_vec();
    while out.len() < 9 {
        if i == pool.len() {
            let mut more = [0u8; 8];
            getrandom::fill(&mut more)
                .map_err(|_| OAuthError::new(OAuthErrorCode::ServerError, "no randomness"))?;
            pool.extend_from_slice(&more);
        }
        let v = pool[i];
        i += 1;
        if v >= 240 {
            continue;
        }
        if out.len() == 4 {
            out.push('-');
        }
        out.push(ALPHABET[(v % 20) as usize] as char);
    }
    Ok(out)
}

/// A typed user code as stored: letters only, upper case.
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The device's pending request and poll pacing, kept with its login.
#[derive(Serialize, Deserialize)]
struct DeviceState {
    client_id: String,
    scope: String,
    /// Seconds the device must wait between polls; +5 at every `slow_down`.
    interval: u64,
    last_poll_ms: u64,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct DeviceForm {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Space-separated scope tokens (RFC 6749 §3.3); a malformed one is
    /// `invalid_scope`, unknown ones are left out of the grant.
    #[schema(pattern = r"^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$")]
    pub scope: Option<String>,
}

/// Whether `scope` is `scope-token *( SP scope-token )` with each token
/// `1*NQCHAR` (RFC 6749 §3.3).
fn well_formed_scope(scope: &str) -> bool {
    scope.split(' ').all(|t| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: u64,
    pub interval: u64,
    /// With number matching on: the number the device shows next to the
    /// QR, which the phone must pick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_code: Option<String>,
}

/// `POST /oauth2/device_authorization`
#[utoipa::path(post, path = "/oauth2/device_authorization", tag = "oidc", security((), ("client_basic" = [])), request_body(content = DeviceForm, content_type = "application/x-www-form-urlencoded"), responses((status = 200, body = DeviceAuthorization), (status = 400, body = crate::oidc::error::OAuthErrorBody), (status = 401, description = "invalid_client (with `WWW-Authenticate: Basic` when Basic was sent)", body = crate::oidc::error::OAuthErrorBody), (status = 429, body = crate::error::ErrorBody), (status = 500, description = "server_error: no randomness for the codes", body = crate::oidc::error::OAuthErrorBody), (status = 503, body = crate::oidc::error::OAuthErrorBody)))]
pub async fn device_authorization(
    AxState(app): AxState<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(ua): UserAgent,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if app.oidc.is_none() {
        return crate::error::ApiError::NoRoute.into_response();
    }
    match start(&app, ip, ua, &headers, &body).await {
        Ok(r) => no_store(Json(r).into_response()),
        Err(e) => e.into_response(),
    }
}

async fn start(
    app: &AppState,
    ip: std::net::IpAddr,
    ua: String,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DeviceAuthorization, OAuthError> {
    let oidc = app
        .oidc
        .as_ref()
        .ok_or_else(|| OAuthError::invalid_request("no OpenID Provider here"))?;
    // The address's create budget (a device authorization opens a login).
    app.limits.check_ip(IpBucket::Create, ip)?;
    let form: DeviceForm = super::token::parse_form(headers, body)?;
    let client = authenticate(
        oidc,
        headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )
    .await?;
    if !client.allows(GRANT_DEVICE) {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "this client may not use the device grant",
        ));
    }
    if form.scope.as_deref().is_some_and(|s| !well_formed_scope(s)) {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidScope,
            "scope is space-separated tokens of printable ASCII (RFC 6749 §3.3)",
        ));
    }
    let scope = super::granted_scope(form.scope.as_deref().unwrap_or("openid"));
    let (opened, secret) = crate::routes::browser::open_login(
        app,
        ip,
        ua,
        Some(client.id.clone()),
        Some(oidc.device_ttl_ms),
        true,
    )
    .await?;
    let id = opened.record.id;
    let now = app.now_ms();
    let ttls = app.store.ttls();
    let keep = oidc.device_ttl_ms + ttls.scan_extension_ms + ttls.final_keep_ms;
    let state = DeviceState {
        client_id: client.id.clone(),
        scope,
        interval: oidc.device_interval_s,
        last_poll_ms: 0,
    };
    let json = serde_json::to_string(&state)
        .map_err(|_| OAuthError::new(OAuthErrorCode::ServerError, "device state"))?;
    app.store
        .put_grant(
            &GrantKey::of_login(GrantKind::Device, &id),
            &json,
            keep,
            now,
        )
        .await?;
    let code = user_code()?;
    app.store
        .put_grant(
            &GrantKey::of_secret(GrantKind::UserCode, &normalise(&code)),
            &id.to_string(),
            oidc.device_ttl_ms,
            now,
        )
        .await?;
    metrics::counter!("qrlogin_device_authorizations_total").increment(1);
    Ok(DeviceAuthorization {
        device_code: format!("{id}.{}", secret.expose()),
        user_code: code,
        verification_uri: format!("{}/device", app.public_url),
        verification_uri_complete: opened.created.qr_payload,
        expires_in: oidc.device_ttl_ms / 1000,
        interval: oidc.device_interval_s,
        match_code: opened.created.match_code,
    })
}

/// The token endpoint's device-code grant: the login's state as RFC 8628
/// §3.5 words it, paced per device code.
pub(crate) async fn poll(
    app: &AppState,
    oidc: &Oidc,
    client: &Client,
    form: &TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let code = form
        .device_code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("device_code is missing"))?;
    let bad = || OAuthError::invalid_grant("the device code is unknown");
    let (id, secret) = code.split_once('.').ok_or_else(bad)?;
    let id: LoginId = id.parse().map_err(|_| bad())?;
    let secret: BrowserSecret = secret.parse().map_err(|_| bad())?;
    let now = app.now_ms();
    let key = GrantKey::of_login(GrantKind::Device, &id);
    let Some(json) = app.store.grant(&key, now).await? else {
        return Err(OAuthError::new(
            OAuthErrorCode::ExpiredToken,
            "the device code expired",
        ));
    };
    let mut state: DeviceState = serde_json::from_str(&json)
        .map_err(|_| OAuthError::new(OAuthErrorCode::ServerError, "device state"))?;
    if state.client_id != client.id {
        return Err(bad());
    }
    let rec = match app.store.get(&id, now).await? {
        Some(r) if r.secret_hash.ct_eq(&secret.hash()) => r,
        Some(_) => return Err(bad()),
        None => {
            return Err(OAuthError::new(
                OAuthErrorCode::ExpiredToken,
                "the device code expired",
            ))
        }
    };
    match rec.state_at(now) {
        State::Pending | State::Scanned => {
            let too_soon =
                state.last_poll_ms > 0 && now < state.last_poll_ms + state.interval * 1000;
            if too_soon {
                state.interval += 5;
            }
            state.last_poll_ms = now;
            let ttl = rec.expires_at_ms.saturating_sub(now) + app.store.ttls().final_keep_ms;
            let json = serde_json::to_string(&state)
                .map_err(|_| OAuthError::new(OAuthErrorCode::ServerError, "device state"))?;
            app.store.put_grant(&key, &json, ttl.max(1), now).await?;
            if too_soon {
                Err(OAuthError::new(
                    OAuthErrorCode::SlowDown,
                    format!("poll at most every {} s", state.interval),
                ))
            } else {
                Err(OAuthError::new(
                    OAuthErrorCode::AuthorizationPending,
                    "waiting for the phone",
                ))
            }
        }
        State::Approved => {
            let token = SessionToken::new_for(id);
            let user = match app.store.redeem(&id, &secret.hash(), &token, now).await {
                Ok(u) => u,
                Err(TransitionError::Store(e)) => return Err(e.into()),
                // A concurrent poll won the redeem: the tokens went to it.
                Err(_) => {
                    return Err(OAuthError::invalid_grant(
                        "the device code was already used",
                    ))
                }
            };
            // The device state stays until it expires: a later poll finds
            // the login consumed and gets invalid_grant, not expired_token.
            metrics::counter!("qrlogin_logins_redeemed_total").increment(1);
            let grant = Grant {
                client_id: client.id.clone(),
                scope: state.scope,
                sub: user.id,
                name: user.name,
                auth_time: now / 1000,
                sid: token.session_ref().to_string(),
                nonce: None,
                redirect_uri: None,
                code_challenge: None,
            };
            issue(app, oidc, client, &grant).await
        }
        State::Denied | State::Cancelled => Err(OAuthError::new(
            OAuthErrorCode::AccessDenied,
            "the sign-in was denied",
        )),
        State::Expired => Err(OAuthError::new(
            OAuthErrorCode::ExpiredToken,
            "the device code expired",
        )),
        State::Consumed => Err(OAuthError::invalid_grant(
            "the device code was already used",
        )),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LookupBody {
    /// Eight letters, with any separators (`BCDF-GHJK`, `bcdf ghjk`).
    #[schema(pattern = "^[^A-Za-z]*([A-Za-z][^A-Za-z]*){8}$", max_length = 64)]
    pub user_code: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Lookup {
    pub login_id: String,
    /// The confirm page for that login (what the QR would have opened).
    pub confirm: String,
}

/// `POST /v1/device/lookup` — a typed user code to its login.
#[utoipa::path(post, path = "/v1/device/lookup", tag = "oidc", request_body = LookupBody, responses((status = 200, body = Lookup), (status = 400, body = crate::error::ErrorBody), (status = 404, description = "unknown or expired user code, or no OpenID Provider", body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn lookup(
    AxState(app): AxState<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LookupBody>,
) -> Result<Json<Lookup>, ApiError> {
    crate::oidc::authorize::oidc_of(&app)?;
    app.limits.check_ip(IpBucket::Scan, ip)?;
    let code = normalise(&body.user_code);
    if code.len() != 8 {
        return Err(ApiError::bad_request("a code is 8 letters, like BCDF-GHJK"));
    }
    let id = app
        .store
        .grant(
            &GrantKey::of_secret(GrantKind::UserCode, &code),
            app.now_ms(),
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(Lookup {
        confirm: format!("{}/m/{id}", app.public_url),
        login_id: id,
    }))
}

/// `GET /device` — the page to type a code on.
#[utoipa::path(get, path = "/device", tag = "pages", responses((status = 200, description = "the page to type a device's user code on", content_type = "text/html"), (status = 404, description = "no OpenID Provider here (no --oidc-clients)", body = crate::error::ErrorBody)))]
pub async fn device_page(AxState(app): AxState<AppState>) -> Result<Response, ApiError> {
    crate::oidc::authorize::oidc_of(&app)?;
    Ok(crate::routes::pages::device_page(&app))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_8_letters_of_the_alphabet() {
        for _ in 0..200 {
            let c = user_code().unwrap();
            assert_eq!(c.len(), 9);
            assert_eq!(&c[4..5], "-");
            assert!(normalise(&c).bytes().all(|b| ALPHABET.contains(&b)), "{c}");
            assert_eq!(normalise(&c).len(), 8);
        }
        assert_eq!(normalise(" bcdf-ghjk "), "BCDFGHJK");
    }

    #[test]
    fn scopes_are_nqchar_tokens_separated_by_one_space() {
        for ok in ["openid", "openid profile offline_access", "a!#[]~"] {
            assert!(well_formed_scope(ok), "{ok:?}");
        }
        for bad in [
            "",
            " openid",
            "openid ",
            "openid  profile",
            "a\"b",
            "a\\b",
            "é",
            "a\tb",
        ] {
            assert!(!well_formed_scope(bad), "{bad:?}");
        }
    }
}
