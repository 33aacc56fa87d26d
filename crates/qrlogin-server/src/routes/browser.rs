//! The browser side: create a login, show its QR, watch it, redeem, cancel.

use crate::app::AppState;
use crate::config::MatchMode;
use crate::error::{ApiError, ErrorBody};
use crate::limit::{IpBucket, StreamSlot};
use crate::qr;
use crate::routes::extract::{
    BrowserAuth, ClientIp, LastEventId, LoginPath, OptionalJson, UserAgent, BROWSER_COOKIE,
    SESSION_COOKIE,
};
use crate::watch::{Seen, Watcher};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use qrlogin_core::{BrowserContext, BrowserSecret, LoginId, NewLogin, SessionToken, State, User};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;

/// RFC 3339 text of a Unix time in milliseconds.
pub fn rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Whole seconds from `now_ms` until `at_ms` (rounded up; 0 once past).
pub(crate) fn secs_until(now_ms: u64, at_ms: u64) -> u64 {
    at_ms.saturating_sub(now_ms).div_ceil(1000)
}

/// What the QR code of login `id` holds: the phone's confirm page.
pub(crate) fn qr_payload(app: &AppState, id: LoginId) -> String {
    format!("{}/m/{id}", app.public_url)
}

/// Builds a `Set-Cookie` value with the attributes qrlogin always uses.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    same_site: &str,
    secure: bool,
) -> Result<HeaderValue, ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    ))
    .map_err(|_| ApiError::Internal)
}

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Binding {
    #[default]
    Cookie,
    Header,
}

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
pub struct CreateBody {
    #[serde(default)]
    pub binding: Binding,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Created {
    pub login_id: String,
    pub qr_payload: String,
    pub qr_svg: String,
    pub qr_png: String,
    pub expires_at: String,
    pub expires_in: u64,
    pub events: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_code: Option<String>,
}

/// `POST /v1/logins`
#[utoipa::path(post, path = "/v1/logins", tag = "browser", request_body(content = Option<CreateBody>, description = "optional; {\"binding\":\"header\"} for non-browser clients"), responses((status = 201, body = Created, description = "created; sets the qrl_bs cookie unless header binding"), (status = 400, body = ErrorBody, description = "the body is not a valid CreateBody"), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    AxState(app): AxState<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(user_agent): UserAgent,
    OptionalJson(body): OptionalJson<CreateBody>,
) -> Result<Response, ApiError> {
    app.limits.check_ip(IpBucket::Create, ip)?;
    let body = body.unwrap_or_default();
    let header_binding = matches!(body.binding, Binding::Header);
    let (opened, _) = open_login(&app, ip, user_agent, None, None, header_binding).await?;
    let mut resp = (StatusCode::CREATED, Json(opened.created)).into_response();
    if let Some(cookie) = opened.cookie {
        resp.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

/// A login just created, as its browser is told about it.
pub(crate) struct Opened {
    pub created: Created,
    /// The browser-secret cookie (cookie binding).
    pub cookie: Option<HeaderValue>,
    pub record: qrlogin_core::LoginRecord,
}

/// Creates a login for a browser (or a device) at `ip`: what
/// `POST /v1/logins`, the OIDC authorize page and the device grant share.
/// `client_id` names the relying party a protocol face made it for;
/// `pending_ms` overrides the pending lifetime (device codes). Also hands
/// back the browser secret (the device grant makes its device code of it).
pub(crate) async fn open_login(
    app: &AppState,
    ip: std::net::IpAddr,
    user_agent: String,
    client_id: Option<String>,
    pending_ms: Option<u64>,
    header_binding: bool,
) -> Result<(Opened, BrowserSecret), ApiError> {
    let match_code = match app.match_mode {
        MatchMode::Off => None,
        _ => Some(crate::matching::new_code().map_err(|_| ApiError::Internal)?),
    };
    let id = LoginId::random();
    let secret = BrowserSecret::random();
    let now = app.now_ms();
    let rec = app
        .store
        .create(
            NewLogin {
                id,
                secret_hash: secret.hash(),
                browser: BrowserContext {
                    ip: ip.to_string(),
                    user_agent,
                    // Looked up once, here, and stored with the login: the
                    // scan compares it with the phone's place atomically.
                    place: app.geoip.as_ref().map(|g| g.lookup(ip)),
                },
                match_code,
                client_id,
                pending_ms,
            },
            now,
        )
        .await?;
    metrics::counter!("qrlogin_logins_created_total").increment(1);
    let base = app.mount().link(&format!("/v1/logins/{id}"));
    let expires_in = secs_until(now, rec.expires_at_ms);
    let created = Created {
        login_id: id.to_string(),
        qr_payload: qr_payload(app, id),
        qr_svg: format!("{base}/qr.svg"),
        qr_png: format!("{base}/qr.png"),
        expires_at: rfc3339(rec.expires_at_ms),
        expires_in,
        events: format!("{base}/events"),
        status: base.clone(),
        browser_secret: header_binding.then(|| secret.expose()),
        // `always`: shown from the start. `on-risk`: only once a scan has
        // asked the phone for it (the `scanned` event), so the browser never
        // shows a number the phone will not ask for.
        match_code: match app.match_mode {
            MatchMode::Always => rec.match_code.map(|c| format!("{c:02}")),
            _ => None,
        },
    };
    let cookie = if header_binding {
        None
    } else {
        let ttls = app.store.ttls();
        let max_age = expires_in + (ttls.scan_extension_ms + ttls.final_keep_ms) / 1000;
        Some(set_cookie(
            BROWSER_COOKIE,
            &secret.expose(),
            &base,
            max_age,
            "Strict",
            app.secure_cookies,
        )?)
    };
    Ok((
        Opened {
            created,
            cookie,
            record: rec,
        },
        secret,
    ))
}

/// What the bound browser sees of its login (status and SSE data).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusBody {
    pub state: State,
    pub version: u64,
    pub expires_at: String,
    pub expires_in: u64,
    /// Who scanned (from `scanned` on; while `scanned` only with
    /// `--show-scanner-name true`, the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// While `scanned`, when the phone was asked to pick it: the number
    /// the browser must show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_code: Option<String>,
}

impl StatusBody {
    fn of(app: &AppState, rec: &Seen, state: State, now_ms: u64) -> Self {
        Self {
            state,
            version: rec.version,
            expires_at: rfc3339(rec.expires_at_ms),
            expires_in: secs_until(now_ms, rec.expires_at_ms),
            user: match state {
                State::Scanned if !app.show_scanner_name => None,
                State::Scanned | State::Approved | State::Consumed => rec.user.clone(),
                _ => None,
            },
            match_code: match state {
                State::Scanned if rec.match_required => rec.match_code.map(|c| format!("{c:02}")),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    pub wait: Option<String>,
    pub since: Option<String>,
}

/// `GET /v1/logins/{id}?wait=S&since=STATE` — state now, or long-poll.
#[utoipa::path(get, path = "/v1/logins/{id}", tag = "browser", security(("browser_secret" = []), ("browser_cookie" = [])), params(("id" = String, Path, description = "login id"), ("wait" = Option<u64>, Query, description = "long-poll up to this many seconds"), ("since" = Option<State>, Query, description = "wait for a state other than this")), responses((status = 200, body = StatusBody), (status = 404, body = ErrorBody, description = "unknown, expired or consumed login, or not this browser's (one answer for all)"), (status = 429, body = ErrorBody, description = "slow_down (polling too fast), or too_many_streams (a long-poll beyond --max-streams-per-ip)"), (status = 503, body = ErrorBody)))]
pub async fn status(
    AxState(app): AxState<AppState>,
    LoginPath(id): LoginPath,
    ClientIp(ip): ClientIp,
    auth: BrowserAuth,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Json<StatusBody>, ApiError> {
    app.limits.check_ip(IpBucket::Poll, ip)?;
    let Query(q) = query.map_err(|_| ApiError::bad_request("malformed query"))?;
    let wait = match q.wait.as_deref() {
        None => Duration::ZERO,
        Some(w) => Duration::from_secs(
            w.parse::<u64>()
                .map_err(|_| ApiError::bad_request("wait must be a whole number of seconds"))?,
        )
        .min(app.max_wait),
    };
    let since = q
        .since
        .as_deref()
        .map(|s| {
            s.parse::<State>()
                .map_err(|_| ApiError::bad_request("unknown state in since"))
        })
        .transpose()?;
    let secret = auth.require()?;
    // A long-poll holds a slot of the client's streams for as long as it
    // may wait; a plain status read does not.
    let _slot = match wait.is_zero() {
        true => None,
        false => app.streams.open(ip)?,
    };
    let mut w = Watcher::open(&app, id, &secret).await?;
    let since = since.unwrap_or(w.reported());
    if w.reported() == since && !wait.is_zero() {
        metrics::gauge!("qrlogin_waiting_browsers", "via" => "poll").increment(1.0);
        let res = tokio::time::timeout(wait, w.next()).await;
        metrics::gauge!("qrlogin_waiting_browsers", "via" => "poll").decrement(1.0);
        if let Ok(r) = res {
            r?;
        }
    }
    let now = app.now_ms();
    Ok(Json(StatusBody::of(&app, &w.rec, w.current(), now)))
}

fn event_of(w: &Watcher, now_ms: u64) -> Event {
    let state = w.reported();
    let body = StatusBody::of(w.app(), &w.rec, state, now_ms);
    Event::default()
        .event(state.as_str())
        .id(w.rec.version.to_string())
        .json_data(&body)
        .unwrap_or_else(|_| Event::default().event(state.as_str()))
}

/// What an SSE stream keeps between events: the watcher, whether the
/// current state is still to be sent, and the waiter gauge.
///
/// One struct, taken by reference inside the stream's future: moving it
/// into a local of that future (as `let w = w?` would) keeps two copies of
/// the watcher for as long as the browser waits.
struct SseState {
    w: Watcher,
    send_now: bool,
    _gauge: SseGauge,
    /// One of the client's `--max-streams-per-ip`, held until the stream ends.
    _slot: Option<StreamSlot>,
}

/// Decrements the SSE waiter gauge when the stream is dropped.
struct SseGauge;
impl SseGauge {
    fn new() -> Self {
        metrics::gauge!("qrlogin_waiting_browsers", "via" => "sse").increment(1.0);
        SseGauge
    }
}
impl Drop for SseGauge {
    fn drop(&mut self) {
        metrics::gauge!("qrlogin_waiting_browsers", "via" => "sse").decrement(1.0);
    }
}

/// How often an idle SSE stream carries a keep-alive (proxies' read
/// timeouts must be longer; the SDK falls back to long-poll when neither an
/// event nor a keep-alive arrives for a while).
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The keep-alive: an event named `ping` with data `{}` and no `id`, not a
/// comment, so that an `EventSource` sees it (`addEventListener('ping')`)
/// and can tell a quiet stream from a stalled one; without an id it leaves
/// `Last-Event-ID` alone. Built once: each stream clones it (a reference
/// count), so a waiter costs what it did with the default comment.
static SSE_PING: std::sync::LazyLock<KeepAlive> = std::sync::LazyLock::new(|| {
    KeepAlive::new()
        .interval(SSE_KEEP_ALIVE)
        .event(Event::default().event("ping").data("{}"))
});

/// `GET /v1/logins/{id}/events` — Server-Sent Events of state changes.
///
/// On connect the current state is sent (named after itself) unless the
/// client's `Last-Event-ID` says it has seen that version; then one event per
/// change; the stream ends after a final state.
///
/// The answer says `X-Accel-Buffering: no` and `Cache-Control: no-cache,
/// no-transform`: a reverse proxy that buffers (nginx by default) or
/// compresses would otherwise hold the events back until the stream ends,
/// and the browser would wait without ever seeing an error to fall back on.
#[utoipa::path(get, path = "/v1/logins/{id}/events", tag = "browser", security(("browser_secret" = []), ("browser_cookie" = [])), params(("id" = String, Path, description = "login id"), ("Last-Event-ID" = Option<String>, Header, description = "resume after this version (the id of the last event seen); anything that is not a version is ignored, as an EventSource may send any id back")), responses((status = 200, content_type = "text/event-stream", description = "events named after states, id the version, data StatusBody; on an idle stream a keep-alive event named ping (data {}, no id) every 15 s, which clients ignore or use to tell a quiet stream from a stalled one"), (status = 404, body = ErrorBody, description = "unknown, expired or consumed login, or not this browser's (one answer for all)"), (status = 429, body = ErrorBody, description = "slow_down, or too_many_streams (beyond --max-streams-per-ip)"), (status = 503, body = ErrorBody)))]
pub async fn events(
    AxState(app): AxState<AppState>,
    LoginPath(id): LoginPath,
    ClientIp(ip): ClientIp,
    auth: BrowserAuth,
    LastEventId(last_seen): LastEventId,
) -> Result<impl IntoResponse, ApiError> {
    app.limits.check_ip(IpBucket::Poll, ip)?;
    let secret = auth.require()?;
    let slot = app.streams.open(ip)?;
    let w = Watcher::open(&app, id, &secret).await?;
    let send_now = last_seen.is_none_or(|seen| w.rec.version > seen);
    let state = SseState {
        w,
        send_now,
        _gauge: SseGauge::new(),
        _slot: slot,
    };
    let stream = stream::unfold(state, |mut st| async move {
        if st.send_now {
            st.send_now = false;
            let ev = event_of(&st.w, st.w.now_ms());
            return Some((Ok::<Event, Infallible>(ev), st));
        }
        if st.w.reported().is_final() {
            return None;
        }
        // A store outage keeps the stream open (keep-alives flow) until the
        // store answers again; only a login that would be over by then ends
        // it, and the client reconnects with Last-Event-ID.
        st.w.next_riding_out_outages().await?;
        let ev = event_of(&st.w, st.w.now_ms());
        Some((Ok(ev), st))
    });
    let sse = Sse::new(stream).keep_alive(SSE_PING.clone());
    Ok((
        [
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-transform"),
            ),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        sse,
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Redeemed {
    /// The web session: the opaque token, or in JWT mode the signed JWT
    /// (ES256; verify with `/.well-known/jwks.json`). Also set as the
    /// `qrl_session` cookie.
    pub token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub user: User,
}

/// `POST /v1/logins/{id}/redeem` — approved → consumed, exactly once.
#[utoipa::path(post, path = "/v1/logins/{id}/redeem", tag = "browser", security(("browser_secret" = []), ("browser_cookie" = [])), params(("id" = String, Path, description = "login id")), responses((status = 200, body = Redeemed, description = "sets the qrl_session cookie"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "not approved (yet), or already redeemed by a concurrent call"), (status = 503, body = ErrorBody)))]
pub async fn redeem(
    AxState(app): AxState<AppState>,
    LoginPath(id): LoginPath,
    auth: BrowserAuth,
) -> Result<Response, ApiError> {
    let secret = auth.require()?;
    // The store's session record is created in the same atomic step in
    // both modes; JWT mode only changes what the browser is handed.
    let token = SessionToken::new_for(id);
    let now = app.now_ms();
    let user = app
        .store
        .redeem(&id, &secret.hash(), &token, now)
        .await
        .map_err(ApiError::for_browser)?;
    metrics::counter!("qrlogin_logins_redeemed_total").increment(1);
    let session_ms = app.store.ttls().session_ms;
    let expires_in = session_ms / 1000;
    let token = match &app.jwt {
        None => token.expose(),
        // Signing with a loaded key does not fail in practice; if it did,
        // the login is consumed without a usable session (fail closed), and
        // the session record nobody can present is removed.
        Some(keys) => match keys.issue(&token.session_ref(), &user, now, now + session_ms) {
            Ok(jwt) => jwt,
            Err(e) => {
                tracing::error!(error = %e, "signing a session JWT");
                let _ = app.store.revoke_session(&token.session_ref()).await;
                return Err(ApiError::Internal);
            }
        },
    };
    let cookie = set_cookie(
        SESSION_COOKIE,
        &token,
        app.mount().cookie_root(),
        expires_in,
        "Lax",
        app.secure_cookies,
    )?;
    let mut resp = Json(Redeemed {
        token,
        token_type: "Bearer",
        expires_in,
        user,
    })
    .into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// `DELETE /v1/logins/{id}` — the browser gives up.
#[utoipa::path(delete, path = "/v1/logins/{id}", tag = "browser", security(("browser_secret" = []), ("browser_cookie" = [])), params(("id" = String, Path, description = "login id")), responses((status = 204, description = "cancelled"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "already final"), (status = 503, body = ErrorBody)))]
pub async fn cancel(
    AxState(app): AxState<AppState>,
    LoginPath(id): LoginPath,
    auth: BrowserAuth,
) -> Result<StatusCode, ApiError> {
    let secret = auth.require()?;
    app.store
        .cancel(&id, &secret.hash(), app.now_ms())
        .await
        .map_err(ApiError::for_browser)?;
    Ok(StatusCode::NO_CONTENT)
}

fn qr_response(app: &AppState, content_type: &'static str, body: Vec<u8>) -> Response {
    let max_age = app.store.ttls().pending_ms / 1000;
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_str(&format!("public, max-age={max_age}, immutable"))
                    .unwrap_or(HeaderValue::from_static("no-store")),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /v1/logins/{id}/qr.svg` — public: the QR holds only the id.
#[utoipa::path(get, path = "/v1/logins/{id}/qr.svg", tag = "browser", params(("id" = String, Path, description = "login id")), responses((status = 200, content_type = "image/svg+xml", description = "QR code of qr_payload")))]
pub async fn qr_svg(
    AxState(app): AxState<AppState>,
    LoginPath(id): LoginPath,
) -> Result<Response, ApiError> {
    let svg = qr::svg(&qr_payload(&app, id)).map_err(|_| ApiError::Internal)?;
    Ok(qr_response(&app, "image/svg+xml", svg.into_bytes()))
}

/// `GET /v1/logins/{id}/qr.png`
#[utoipa::path(get, path = "/v1/logins/{id}/qr.png", tag = "browser", params(("id" = String, Path, description = "login id")), responses((status = 200, content_type = "image/png", description = "QR code of qr_payload")))]
pub async fn qr_png(
    AxState(app): AxState<AppState>,
    LoginPath(id): LoginPath,
) -> Result<Response, ApiError> {
    let png = qr::png(&qr_payload(&app, id)).map_err(|_| ApiError::Internal)?;
    Ok(qr_response(&app, "image/png", png))
}
