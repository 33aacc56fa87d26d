//! The phone side: sign in (demo identity), scan, approve, deny. The user is
//! always the one behind the verified mobile token.

use crate::app::AppState;
use crate::config::MatchMode;
use crate::error::{ApiError, ErrorBody};
use crate::limit::IpBucket;
use crate::routes::browser::{rfc3339, secs_until};
use crate::routes::extract::{ApiJson, ClientIp, LoginPath, OptionalJson, PhoneUser};
use crate::routes::place::{compare, PlaceContext};
use axum::extract::State as AxState;
use axum::Json;
use qrlogin_core::risk::network_key;
use qrlogin_core::{
    network_of, Approval, LoginRecord, MatchPolicy, MobileToken, Place, Risk, RiskCheck,
    ScanPolicy, State, User,
};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignIn {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SignedIn {
    pub token: String,
    pub user: User,
}

/// `POST /v1/mobile/session` — the built-in demo identity.
#[utoipa::path(post, path = "/v1/mobile/session", tag = "phone", request_body = SignIn, responses((status = 200, body = SignedIn), (status = 401, body = ErrorBody), (status = 404, description = "the demo users are off", body = ErrorBody), (status = 415, description = "the body is not declared as application/json", body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn sign_in(
    AxState(app): AxState<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Json<SignedIn>, ApiError> {
    app.limits.check_ip(IpBucket::SignIn, ip)?;
    let demo = app.demo.as_ref().ok_or(ApiError::NoRoute)?;
    if body.username.len() > 128 || body.password.len() > 1024 {
        return Err(ApiError::Unauthorized);
    }
    let user = demo
        .check(&body.username, &body.password)
        .await
        .ok_or(ApiError::Unauthorized)?;
    let token = MobileToken::random();
    app.store
        .put_mobile_token(&token.hash(), &user, app.mobile_token_ttl_ms, app.now_ms())
        .await?;
    Ok(Json(SignedIn {
        token: token.expose(),
        user,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Site {
    pub name: String,
    pub origin: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BrowserInfo {
    pub ip: String,
    /// The /24 (IPv4) or /64 (IPv6) the browser is on: an approximate place.
    pub network: String,
    pub user_agent: String,
    pub browser: String,
    pub os: String,
}

/// What the phone must show before it asks "log in?".
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScanContext {
    pub login_id: String,
    pub state: State,
    pub site: Site,
    pub browser: BrowserInfo,
    pub created_at: String,
    pub expires_at: String,
    pub expires_in: u64,
    /// Present when the phone must pick the number the computer shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_choices: Option<Vec<String>>,
    /// The application asking, when the login came through the OpenID
    /// Provider or the device grant: the phone shows its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<crate::oidc::authorize::ClientInfo>,
    /// The browser's place and network beside the phone's, and a sentence
    /// saying whether they differ (`known: false` without `--geoip-db`).
    pub place: PlaceContext,
    /// The scan's risk verdict (only with `--geoip-db`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// The verdict is high: approving needs `"confirm_presence": true`
    /// (the user ticks "I am at this computer now").
    pub presence_required: bool,
}

/// Browser and OS names from a User-Agent (woothee).
pub fn describe_agent(ua: &str) -> (String, String) {
    match woothee::parser::Parser::new().parse(ua) {
        Some(r) => {
            let browser = if r.version.is_empty() || r.version == "UNKNOWN" {
                r.name.to_string()
            } else {
                format!("{} {}", r.name, r.version)
            };
            (browser, r.os.to_string())
        }
        None => ("unknown browser".into(), "unknown OS".into()),
    }
}

fn context_of(
    app: &AppState,
    rec: &LoginRecord,
    phone: Option<&Place>,
    phone_ip: std::net::IpAddr,
) -> ScanContext {
    let (browser, os) = describe_agent(&rec.browser.user_agent);
    let client = rec
        .client_id
        .as_deref()
        .map(|id| crate::oidc::authorize::ClientInfo {
            id: id.to_string(),
            name: app
                .oidc
                .as_ref()
                .and_then(|o| o.clients.get(id))
                .map(|c| c.name.clone())
                .unwrap_or_else(|| id.to_string()),
        });
    ScanContext {
        client,
        place: compare(rec, phone, phone_ip),
        risk: rec.risk.clone(),
        presence_required: rec.presence_required(),
        login_id: rec.id.to_string(),
        state: rec.state,
        site: Site {
            name: app.site_name.clone(),
            origin: app.public_origin.clone(),
        },
        browser: BrowserInfo {
            network: network_of(&rec.browser.ip),
            ip: rec.browser.ip.clone(),
            user_agent: rec.browser.user_agent.clone(),
            browser,
            os,
        },
        created_at: rfc3339(rec.created_at_ms),
        expires_at: rfc3339(rec.expires_at_ms),
        expires_in: secs_until(app.now_ms(), rec.expires_at_ms),
        match_choices: if rec.match_required {
            crate::matching::choices(rec)
        } else {
            None
        },
    }
}

/// `POST /v1/mobile/logins/{id}/scan`
#[utoipa::path(post, path = "/v1/mobile/logins/{id}/scan", tag = "phone", security(("mobile_token" = [])), params(("id" = String, Path, description = "login id")), responses((status = 200, body = ScanContext), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody), (status = 503, description = "store_unavailable, or verifier_unavailable: the identity provider that checks the phone token is down, slow or garbled; retry (never a sign-out)", body = ErrorBody)))]
pub async fn scan(
    AxState(app): AxState<AppState>,
    ClientIp(ip): ClientIp,
    PhoneUser(user): PhoneUser,
    LoginPath(id): LoginPath,
) -> Result<Json<ScanContext>, ApiError> {
    app.limits.check_ip(IpBucket::Scan, ip)?;
    app.limits.check_user(&user.id)?;
    // The phone's place, looked up here; the browser's was stored at create.
    let phone = app.geoip.as_ref().map(|g| g.lookup(ip));
    let matching = match (app.match_mode, &phone) {
        (MatchMode::Off, _) => MatchPolicy::Never,
        (MatchMode::Always, _) => MatchPolicy::Always,
        (MatchMode::OnRisk, Some(_)) => MatchPolicy::IfHighRisk,
        (MatchMode::OnRisk, None) => MatchPolicy::IfOtherNetwork(network_of(&ip.to_string())),
    };
    let policy = ScanPolicy {
        matching,
        risk: phone.as_ref().map(|p| RiskCheck {
            phone: p.clone(),
            phone_network: network_key(p, &ip.to_string()),
            max_distance_km: app.risk_distance_km,
        }),
    };
    let rec = app
        .store
        .scan_assessed(&id, &user, &policy, app.now_ms())
        .await
        .map_err(ApiError::for_phone)?;
    metrics::counter!("qrlogin_logins_scanned_total").increment(1);
    if let Some(r) = &rec.risk {
        let level = if r.is_high() { "high" } else { "low" };
        metrics::counter!("qrlogin_scan_risk_total", "level" => level).increment(1);
    }
    Ok(Json(context_of(&app, &rec, phone.as_ref(), ip)))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct Decision {
    /// The number the computer shows, when the scan answer had
    /// `match_choices`: one or two digits, spaces around them ignored.
    #[schema(pattern = "^ *[0-9]{1,2} *$")]
    pub match_code: Option<String>,
    /// The user ticked "I am at this computer now". Needed when the scan
    /// answer had `presence_required: true`; without it such an approve is
    /// refused with 409 `presence_required` and nothing changes.
    #[serde(default)]
    pub confirm_presence: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Decided {
    pub state: State,
}

/// A `match_code` exactly as the document's pattern says: one or two
/// digits, spaces around them allowed.
fn match_code(text: &str) -> Result<u8, ApiError> {
    let digits = text.trim_matches(' ');
    match digits.len() {
        1 | 2 if digits.bytes().all(|b| b.is_ascii_digit()) => digits
            .parse()
            .map_err(|_| ApiError::bad_request("match_code must be a 2-digit number")),
        _ => Err(ApiError::bad_request("match_code must be a 2-digit number")),
    }
}

/// `POST /v1/mobile/logins/{id}/approve`
#[utoipa::path(post, path = "/v1/mobile/logins/{id}/approve", tag = "phone", security(("mobile_token" = [])), params(("id" = String, Path, description = "login id")), request_body(content = Option<Decision>), responses((status = 200, body = Decided), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "conflict (wrong state), wrong_match_code (the login is now denied), or presence_required: the scan's risk verdict was high and the body lacked \"confirm_presence\": true (nothing changed; ask the user and approve again)", body = ErrorBody), (status = 410, body = ErrorBody), (status = 503, description = "store_unavailable, or verifier_unavailable: the identity provider that checks the phone token is down, slow or garbled; retry (never a sign-out)", body = ErrorBody)))]
pub async fn approve(
    AxState(app): AxState<AppState>,
    PhoneUser(user): PhoneUser,
    LoginPath(id): LoginPath,
    OptionalJson(body): OptionalJson<Decision>,
) -> Result<Json<Decided>, ApiError> {
    app.limits.check_user(&user.id)?;
    let body = body.unwrap_or_default();
    let code = match body.match_code {
        None => None,
        Some(text) => Some(match_code(&text)?),
    };
    let approval = Approval {
        match_code: code,
        confirm_presence: body.confirm_presence,
    };
    let rec = app
        .store
        .approve_checked(&id, &user.id, &approval, app.now_ms())
        .await
        .map_err(ApiError::for_phone)?;
    metrics::counter!("qrlogin_logins_approved_total").increment(1);
    Ok(Json(Decided { state: rec.state }))
}

/// `POST /v1/mobile/logins/{id}/deny`
#[utoipa::path(post, path = "/v1/mobile/logins/{id}/deny", tag = "phone", security(("mobile_token" = [])), params(("id" = String, Path, description = "login id")), responses((status = 200, body = Decided), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody), (status = 503, description = "store_unavailable, or verifier_unavailable: the identity provider that checks the phone token is down, slow or garbled; retry (never a sign-out)", body = ErrorBody)))]
pub async fn deny(
    AxState(app): AxState<AppState>,
    PhoneUser(user): PhoneUser,
    LoginPath(id): LoginPath,
) -> Result<Json<Decided>, ApiError> {
    app.limits.check_user(&user.id)?;
    let rec = app
        .store
        .deny(&id, &user.id, app.now_ms())
        .await
        .map_err(ApiError::for_phone)?;
    metrics::counter!("qrlogin_logins_denied_total").increment(1);
    Ok(Json(Decided { state: rec.state }))
}
