//! Application state and the router: which path goes to which handler, and
//! the layers every request passes through.

use crate::config::{MatchMode, ServeConfig};
use crate::jwt::JwtSessions;
use crate::limit::{Limits, Rates, Streams};
use crate::routes;
use crate::routes::extract::ProxyRange;
use crate::site::Site;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use qrlogin_core::MobileVerifier;
use qrlogin_core::{Clock, Store, SystemClock};
use qrlogin_identity::DemoIdentity;
use std::sync::Arc;
use std::time::Duration;

/// Everything a handler needs; cheap to clone (one `Arc`). Built only by
/// [`QrLogin::builder`](crate::QrLogin::builder); its fields are the
/// crate's own.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

#[doc(hidden)]
pub struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) verifier: Arc<dyn MobileVerifier>,
    pub(crate) demo: Option<DemoIdentity>,
    /// `https://example.com` — no trailing slash.
    pub(crate) public_url: String,
    /// The origin part of `public_url`, for the phone's context and the
    /// cross-site check.
    pub(crate) public_origin: String,
    pub(crate) secure_cookies: bool,
    pub(crate) site_name: String,
    pub(crate) mobile_token_ttl_ms: u64,
    pub(crate) backstop: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) trusted_proxies: Vec<ProxyRange>,
    pub(crate) limits: Limits,
    /// Open SSE streams and long-polls per client (`--max-streams-per-ip`).
    pub(crate) streams: Arc<Streams>,
    pub(crate) match_mode: MatchMode,
    /// `--geoip-db`, when given: places and the scan's risk verdict.
    pub(crate) geoip: Option<Arc<crate::geoip::GeoIp>>,
    /// `--risk-distance-km`.
    pub(crate) risk_distance_km: u32,
    pub(crate) max_body: usize,
    /// JWT session mode's key and rules; `None` in opaque mode (the default).
    pub(crate) jwt: Option<Arc<JwtSessions>>,
    /// The one signing key (JWT sessions, ID tokens), when either is on;
    /// `/.well-known/jwks.json` publishes it.
    pub(crate) signing_key: Option<Arc<crate::keys::SigningKey>>,
    /// The OpenID Provider face; `None` without `--oidc-clients`.
    pub(crate) oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Mount and public paths, branding, rendered pages, app links.
    pub(crate) site: Site,
    /// Whether the browser learns who scanned before approval.
    pub(crate) show_scanner_name: bool,
    /// The site-backend API's bearer (`--admin-token-file`); `None`: 404.
    pub(crate) admin_token: Option<crate::admin_token::AdminToken>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// What the builder resolved, besides the configuration.
pub(crate) struct Parts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub public_url: String,
    pub demo: Option<DemoIdentity>,
    pub verifier: Arc<dyn MobileVerifier>,
    pub jwt: Option<Arc<JwtSessions>>,
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    pub site: Site,
    pub geoip: Option<Arc<crate::geoip::GeoIp>>,

    pub admin_token: Option<crate::admin_token::AdminToken>,
}

impl AppState {
    pub(crate) fn new(cfg: &ServeConfig, p: Parts) -> Self {
        let public_url = p.public_url.trim_end_matches('/').to_string();
        let public_origin = origin_of(&public_url);
        Self(Arc::new(Inner {
            store: p.store,
            clock: p.clock,
            verifier: p.verifier,
            demo: p.demo,
            secure_cookies: public_url.starts_with("https://"),
            public_origin,
            public_url,
            site_name: cfg.site_name.clone(),
            mobile_token_ttl_ms: cfg.mobile_token_ttl * 1000,
            backstop: Duration::from_secs(cfg.backstop.max(1)),
            max_wait: Duration::from_secs(cfg.max_wait),
            trusted_proxies: cfg.trusted_proxies.clone(),
            limits: Limits::new(cfg.rate_limits, Rates::default().with(&cfg.rate_limit)),
            streams: Streams::new(cfg.max_streams_per_ip),
            match_mode: cfg.match_code,
            geoip: p.geoip,
            risk_distance_km: cfg.risk_distance_km,
            max_body: cfg.max_body,
            signing_key: p
                .jwt
                .as_ref()
                .map(|j| j.key().clone())
                .or_else(|| p.oidc.as_ref().map(|o| o.key.clone())),
            jwt: p.jwt,
            oidc: p.oidc,
            site: p.site,
            show_scanner_name: cfg.show_scanner_name,
            admin_token: p.admin_token,
        }))
    }

    /// The real clock, for embedders and tests that pass one explicitly.
    pub fn system_clock() -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }

    /// The store this service runs on.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// The public URL (no trailing slash).
    pub fn public_url(&self) -> &str {
        &self.0.public_url
    }

    /// Where routes are served (`""` for the root) and what links use.
    pub fn mount(&self) -> &crate::site::Mount {
        &self.0.site.mount
    }

    /// Whether the demo sign-in is on.
    pub fn demo_on(&self) -> bool {
        self.0.demo.is_some()
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// `scheme://host[:port]` of a URL (everything before the path).
pub fn origin_of(url: &str) -> String {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => url[..after_scheme + i].to_string(),
        None => url.to_string(),
    }
}

/// Every route qrlogin serves under its base path, relative to it. New
/// routes and pages go here (the router nests this under `--base-path`).
fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/logins", post(routes::browser::create))
        .route(
            "/v1/logins/{id}",
            get(routes::browser::status).delete(routes::browser::cancel),
        )
        .route("/v1/logins/{id}/qr.svg", get(routes::browser::qr_svg))
        .route("/v1/logins/{id}/qr.png", get(routes::browser::qr_png))
        .route("/v1/logins/{id}/events", get(routes::browser::events))
        .route("/v1/logins/{id}/redeem", post(routes::browser::redeem))
        .route("/v1/mobile/session", post(routes::phone::sign_in))
        .route("/v1/mobile/logins/{id}/scan", post(routes::phone::scan))
        .route(
            "/v1/mobile/logins/{id}/approve",
            post(routes::phone::approve),
        )
        .route("/v1/mobile/logins/{id}/deny", post(routes::phone::deny))
        .route("/v1/mobile/sessions", get(routes::sessions::list))
        .route(
            "/v1/mobile/sessions/revoke-all",
            post(routes::sessions::revoke_all),
        )
        .route(
            "/v1/mobile/sessions/{sid}",
            axum::routing::delete(routes::sessions::revoke_one),
        )
        .route(
            "/v1/admin/users/{user_id}/sessions/revoke-all",
            post(routes::admin::revoke_all),
        )
        .route("/v1/session", get(routes::session::whoami))
        .route("/v1/session/logout", post(routes::session::logout))
        .route("/.well-known/jwks.json", get(routes::session::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(crate::oidc::endpoints::discovery),
        )
        .route("/oauth2/authorize", get(crate::oidc::authorize::authorize))
        .route(
            "/oauth2/authorize/login",
            post(crate::oidc::authorize::start),
        )
        .route(
            "/v1/logins/{id}/continue",
            get(crate::oidc::authorize::continue_login),
        )
        .route("/oauth2/token", post(crate::oidc::token::token))
        .route(
            "/oauth2/userinfo",
            get(crate::oidc::endpoints::userinfo).post(crate::oidc::endpoints::userinfo),
        )
        .route("/oauth2/revoke", post(crate::oidc::endpoints::revoke))
        .route(
            "/oauth2/logout",
            get(crate::oidc::endpoints::logout).post(crate::oidc::endpoints::logout),
        )
        .route(
            "/oauth2/device_authorization",
            post(crate::oidc::device::device_authorization),
        )
        .route("/v1/device/lookup", post(crate::oidc::device::lookup))
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/metrics", get(routes::ops::metrics))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        // Pages.
        .route("/", get(routes::pages::login_page))
        .route("/m/{id}", get(routes::pages::confirm_page))
        .route("/phone", get(routes::pages::phone_page))
        .route("/device", get(crate::oidc::device::device_page))
        .route(
            "/_qrlogin/assets/{version}/{*path}",
            get(routes::pages::asset_file),
        )
        .route("/_qrlogin/sdk/{*path}", get(routes::pages::sdk_file))
}

/// Paths that standards fix at the origin root, whatever the base path.
/// The JWKS is also served under the base path (with the other routes).
fn origin_root(base: &str) -> Router<AppState> {
    let r = Router::new()
        .route(
            "/.well-known/apple-app-site-association",
            get(routes::pages::apple_app_site_association),
        )
        .route(
            "/.well-known/assetlinks.json",
            get(routes::pages::assetlinks),
        );
    if base.is_empty() {
        r
    } else {
        r.route("/.well-known/jwks.json", get(routes::session::jwks))
    }
}

/// The whole router: [`routes`] nested under the base path, the origin-root
/// files beside them, and the two layers every request passes through.
pub(crate) fn router(state: AppState) -> Router {
    let max_body = state.max_body;
    let base = state.site.mount.base.clone();
    let app = if base.is_empty() {
        routes()
    } else {
        // `{base}/` is the login page too (axum's nest matches `{base}`).
        Router::new()
            .route(&format!("{base}/"), get(routes::pages::login_page))
            .nest(&base, routes())
    };
    // Two layers only (see routes::guard for why): the body limit the
    // extractors read, and the front door doing everything else.
    app.merge(origin_root(&base))
        .fallback(routes::ops::not_found)
        .method_not_allowed_fallback(routes::ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::guard::front_door,
        ))
        .with_state(state)
}
