//! One way to assemble the service, for the `qrlogin` binary and for
//! library users alike:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use qrlogin_server::{QrLogin, ServeConfig};
//! let app = QrLogin::builder(ServeConfig::defaults())
//!     // .store(my_store).clock(my_clock).verifier(my_verifier).sessions(jwt)
//!     .build()
//!     .await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! app.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Whatever is not given comes from the configuration: the store from
//! `--store`, the verifier from `--mobile-verifier`, JWT sessions from
//! `--session-format`. Every background task the service needs (the
//! rate-limit sweeper, the metrics upkeep, a verifier's key refresh, webhook delivery) is started by
//! [`QrLoginBuilder::build`] and ends with the app.

use crate::app::{router, AppState, Parts};
use crate::config::{ServeConfig, SessionFormat};
use crate::jwt::JwtSessions;
use crate::keys::SigningKey;
use crate::oidc::Oidc;
use crate::site::Site;
use crate::{http1, identity, routes};
use anyhow::Context as _;
use axum::Router;
use qrlogin_core::{Clock, MemoryStore, MobileVerifier, Store};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The assembled service: its state, its router and its background tasks
/// (aborted when the last handle to the app is dropped).
pub struct QrLogin {
    state: AppState,
    router: Router,
    tasks: Tasks,
    /// Header and keep-alive timeouts, connection cap (`serve` applies them).
    conn_limits: http1::ConnLimits,
}

/// Background tasks, aborted on drop.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Collects what the service is built from; see the [module docs](self).
#[must_use = "a builder does nothing until .build() or .spawn()"]
pub struct QrLoginBuilder {
    cfg: ServeConfig,
    store: Option<Arc<dyn Store>>,
    clock: Option<Arc<dyn Clock>>,
    verifier: Option<Arc<dyn MobileVerifier>>,
    sessions: Option<Arc<JwtSessions>>,
    public_url: Option<String>,
}

impl QrLogin {
    pub fn builder(cfg: ServeConfig) -> QrLoginBuilder {
        QrLoginBuilder {
            cfg,
            store: None,
            clock: None,
            verifier: None,
            sessions: None,
            public_url: None,
        }
    }

    /// The routes, to serve yourself or nest in a bigger app. Keep the
    /// `QrLogin` alive while serving: dropping it stops the background tasks.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` completes, then lets open
    /// requests finish (HTTP/1.1; see [`http1::serve_http1`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let QrLogin {
            router,
            tasks,
            conn_limits,
            ..
        } = self;
        let r = http1::serve_http1(listener, router, conn_limits, shutdown).await;
        drop(tasks);
        r
    }

    /// Serves on `listener` in the background.
    pub fn spawn_on(self, listener: TcpListener) -> std::io::Result<Running> {
        let addr = listener.local_addr()?;
        let state = self.state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(listener, async move {
            let _ = rx.await;
        }));
        Ok(Running {
            addr,
            public_url: state.public_url().to_string(),
            state,
            shutdown: Some(tx),
            task,
        })
    }
}

impl QrLoginBuilder {
    /// The store (default: opened from `--store`).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The clock (default: the system clock); tests move a manual one.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Your own phone-credential verifier, instead of `--mobile-verifier`.
    /// The demo users are then off.
    pub fn verifier(mut self, verifier: Arc<dyn MobileVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// JWT web sessions signed with these keys, instead of what
    /// `--session-format` and `--jwt-key-file` say.
    pub fn sessions(mut self, keys: Arc<JwtSessions>) -> Self {
        self.sessions = Some(keys);
        self
    }

    /// The public URL, instead of `--public-url` (or `http://<listen>`).
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Assembles the service and starts its background tasks. Must run
    /// inside a Tokio runtime.
    pub async fn build(self) -> anyhow::Result<QrLogin> {
        let cfg = self.cfg;
        let public_url = self
            .public_url
            .or_else(|| cfg.public_url.clone())
            .unwrap_or_else(|| format!("http://{}", cfg.listen));
        let clock = self.clock.unwrap_or_else(AppState::system_clock);
        // Refuse a demo-users mistake, or a bad path or branding, before
        // connecting to anything.
        let demo_on = match self.verifier {
            None => identity::demo_users_on(&cfg, &public_url)?,
            Some(_) => false,
        };
        let site = Site::build(&cfg, &public_url, demo_on)?;
        let geoip = open_geoip(&cfg)?;

        let admin_token = admin_token(&cfg)?;
        let store = match self.store {
            Some(s) => s,
            None => open_store(&cfg).await?,
        };
        // Events: recorded by the store only when webhooks are on.
        let webhooks = crate::webhooks::from_config(&cfg)?;
        store.set_events(webhooks.is_some());
        let store: Arc<dyn Store> = match &cfg.audit_log {
            Some(target) => Arc::new(crate::audit::AuditedStore::new(
                store,
                crate::audit::AuditSink::open(target)?,
            )),
            None => store,
        };
        let (verifier, demo) = match self.verifier {
            Some(v) => (v, None),
            None => identity::from_config(&cfg, &public_url, store.clone(), clock.clone())?,
        };
        let (jwt, oidc) = match self.sessions {
            Some(k) => {
                let oidc = oidc_from_config(&cfg, &public_url, Some(k.key().clone()))?;
                (Some(k), oidc)
            }
            None => sessions_and_oidc(&cfg, &public_url)?,
        };
        let mut tasks = Vec::new();
        if let Some(handle) = routes::ops::prometheus() {
            tasks.push(tokio::spawn(routes::ops::metrics_upkeep(handle)));
        }
        if let Some(task) = verifier.background() {
            tasks.push(tokio::spawn(task));
        }
        if let Some(delivery) = webhooks {
            tasks.push(tokio::spawn(delivery.run(store.clone(), clock.clone())));
        }
        if let Some(geo) = &geoip {
            tasks.push(tokio::spawn(geo.reloader()));
        }
        let kind = verifier.kind();
        let state = AppState::new(
            &cfg,
            Parts {
                store,
                clock,
                public_url,
                demo,
                verifier,
                jwt,
                oidc,
                site,
                geoip,

                admin_token,
            },
        );
        tasks.push(spawn_limit_sweeper(&state));
        tracing::info!(verifier = kind, demo = state.demo_on(), "phone identity");
        let conn_limits = http1::ConnLimits::from_config(&cfg);
        tracing::info!(
            header_timeout_s = conn_limits.header_timeout.as_secs(),
            keepalive_timeout_s = conn_limits.keepalive_timeout.as_secs(),
            max_connections = conn_limits.max_connections,
            max_streams_per_ip = cfg.max_streams_per_ip,
            "connection limits"
        );
        match cfg.rate_limits {
            true => tracing::info!(
                "rate limits: {}",
                crate::limit::Rates::default()
                    .with(&cfg.rate_limit)
                    .describe()
            ),
            false => tracing::warn!("rate limits are off (--rate-limits false)"),
        }
        Ok(QrLogin {
            router: router(state.clone()),
            state,
            tasks: Tasks(tasks),
            conn_limits,
        })
    }

    /// Binds `--listen` (port 0: any free port, then the public URL
    /// defaults to the bound address), builds, and serves in the background.
    pub async fn spawn(mut self) -> anyhow::Result<Running> {
        let listener = TcpListener::bind(self.cfg.listen)
            .await
            .with_context(|| format!("binding {}", self.cfg.listen))?;
        let addr = listener.local_addr()?;
        if self.public_url.is_none() && self.cfg.public_url.is_none() {
            self.public_url = Some(format!("http://{addr}"));
        }
        Ok(self.build().await?.spawn_on(listener)?)
    }
}

/// Opens the store named by `--store`.
pub async fn open_store(cfg: &ServeConfig) -> anyhow::Result<Arc<dyn Store>> {
    let ttls = cfg.ttls();
    if cfg.store == "memory" {
        check_min_replicas(cfg)?;
        return Ok(Arc::new(MemoryStore::new(ttls)));
    }
    check_store_url(&cfg.store)?;
    let store = qrlogin_redis::RedisStore::connect(
        &cfg.store,
        ttls,
        Duration::from_millis(cfg.store_timeout_ms),
    )
    .await
    .with_context(|| format!("connecting to {}", crate::redact_url(&cfg.store)))?
    .with_min_replicas(cfg.redis_min_replicas);
    if cfg.redis_min_replicas > 0 {
        tracing::info!(
            min_replicas = cfg.redis_min_replicas,
            "redeem, logout and revoke wait for replicas (WAIT)"
        );
    }
    Ok(Arc::new(store))
}

/// `--redis-min-replicas` means nothing without Redis: refused, so nobody
/// believes a memory store replicates.
fn check_min_replicas(cfg: &ServeConfig) -> anyhow::Result<()> {
    if cfg.store == "memory" && cfg.redis_min_replicas > 0 {
        anyhow::bail!(
            "--redis-min-replicas {} needs a Redis --store (the memory store has no replicas)",
            cfg.redis_min_replicas
        );
    }
    Ok(())
}

/// The site-backend API's token, from `--admin-token-file`.
fn admin_token(cfg: &ServeConfig) -> anyhow::Result<Option<crate::admin_token::AdminToken>> {
    cfg.admin_token_file
        .as_deref()
        .map(crate::admin_token::AdminToken::from_file)
        .transpose()
}

/// `memory` or a Redis URL (which URLs are Redis URLs is the Redis store's
/// to say); the error names the choices without echoing a password.
pub fn check_store_url(url: &str) -> anyhow::Result<()> {
    if url == "memory" {
        return Ok(());
    }
    qrlogin_redis::check_url(url).map_err(|e| {
        anyhow::anyhow!(
            "unsupported --store {:?}: use `memory` or a Redis URL ({e})",
            crate::redact_url(url)
        )
    })
}

/// The one signing key, when JWT sessions or the OpenID Provider need it:
/// from `--jwt-key-file`, else made now, with a warning: it dies with the
/// process, and other instances would refuse this one's tokens; so with a
/// shared store that is an error unless `--jwt-ephemeral-key` says it is
/// meant.
pub fn signing_key(cfg: &ServeConfig) -> anyhow::Result<Arc<SigningKey>> {
    let key = match &cfg.jwt_key_file {
        Some(path) => SigningKey::from_file(path)?,
        None => {
            if cfg.store != "memory" && !cfg.jwt_ephemeral_key {
                anyhow::bail!(
                    "--session-format jwt and --oidc-clients with a shared store need \
                     --jwt-key-file (the same key file on every instance); pass \
                     --jwt-ephemeral-key true to sign with a key made at start-up that only \
                     this process knows"
                );
            }
            let key = SigningKey::generate()?;
            tracing::warn!(
                kid = key.kid(),
                "JWTs are signed with a key made at start-up that only this process \
                 knows: they stop verifying when it restarts, and other instances refuse \
                 them. Give every instance the same --jwt-key-file."
            );
            key
        }
    };
    Ok(Arc::new(key))
}

/// What signs with the service's key: JWT sessions and the OpenID Provider.
pub type Signers = (Option<Arc<JwtSessions>>, Option<Arc<Oidc>>);

/// JWT mode's keys and rules (`None` in opaque mode) and the OpenID
/// Provider (`None` without `--oidc-clients`), sharing one signing key.
pub fn sessions_and_oidc(cfg: &ServeConfig, public_url: &str) -> anyhow::Result<Signers> {
    let jwt_mode = cfg.session_format == SessionFormat::Jwt;
    if !jwt_mode && cfg.oidc_clients.is_none() && cfg.oidc_clients_inline.is_none() {
        return Ok((None, None));
    }
    let key = signing_key(cfg)?;
    let jwt = jwt_mode.then(|| {
        let issuer = cfg
            .jwt_issuer
            .clone()
            .unwrap_or_else(|| public_url.trim_end_matches('/').to_string());
        let keys = JwtSessions::new(key.clone(), issuer, cfg.jwt_audience.clone());
        tracing::info!(
            kid = keys.kid(),
            issuer = keys.issuer(),
            "JWT web sessions (ES256)"
        );
        Arc::new(keys)
    });
    Ok((jwt, oidc_from_config(cfg, public_url, Some(key))?))
}

/// The OpenID Provider from `--oidc-clients` and `--oidc-*`, signing with `key`.
fn oidc_from_config(
    cfg: &ServeConfig,
    public_url: &str,
    key: Option<Arc<SigningKey>>,
) -> anyhow::Result<Option<Arc<Oidc>>> {
    // A `--oidc-clients FILE` (flag, environment or file) wins over an
    // inline `[[oidc-clients]]` list in the config file.
    let clients = match (&cfg.oidc_clients, &cfg.oidc_clients_inline) {
        (Some(path), _) => crate::oidc::Clients::from_file(path)?,
        (None, Some(json)) => crate::oidc::Clients::parse_tables(json).context("config file")?,
        (None, None) => return Ok(None),
    };
    let key = match key {
        Some(k) => k,
        None => signing_key(cfg)?,
    };
    let issuer = cfg
        .oidc_issuer
        .clone()
        .unwrap_or_else(|| public_url.to_string())
        .trim_end_matches('/')
        .to_string();
    tracing::info!(issuer = %issuer, clients = clients.len(), "OpenID Provider and device grant on");
    Ok(Some(Arc::new(Oidc {
        clients,
        issuer,
        key,
        acr: cfg.oidc_acr.clone(),
        access_token_ttl_ms: cfg.oidc_access_token_ttl.max(1) * 1000,
        device_ttl_ms: cfg.device_code_ttl.max(1) * 1000,
        device_interval_s: cfg.device_interval.max(1),
    })))
}

/// Everything `build` would resolve from `cfg`, short of connecting to the
/// store or binding: store URL, identity (files read, flags combined), JWT
/// keys, mount path, branding and app links. What `qrlogin check-config` runs.
pub fn check(cfg: &ServeConfig) -> anyhow::Result<()> {
    check_store_url(&cfg.store)?;
    check_min_replicas(cfg)?;
    admin_token(cfg)?;
    let public_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.listen));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(cfg.ttls()));
    let (_, demo) = identity::from_config(cfg, &public_url, store, AppState::system_clock())?;
    sessions_and_oidc(cfg, &public_url)?;
    Site::build(cfg, &public_url, demo.is_some())?;
    crate::webhooks::from_config(cfg)?;
    open_geoip(cfg)?;
    Ok(())
}

/// Opens `--geoip-db` when given (the file must exist and be a MaxMind
/// database: a typo fails start-up and `check-config`, never silently
/// turns the risk rule off).
pub fn open_geoip(cfg: &ServeConfig) -> anyhow::Result<Option<Arc<crate::geoip::GeoIp>>> {
    match &cfg.geoip_db {
        None => Ok(None),
        Some(path) => Ok(Some(Arc::new(crate::geoip::GeoIp::open(path)?))),
    }
}

/// A service running in the background.
pub struct Running {
    pub addr: SocketAddr,
    pub public_url: String,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting connections and lets open requests finish.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
        self.task.abort();
    }
}

/// Forgets idle rate-limit keys every minute; ends with the app.
fn spawn_limit_sweeper(state: &AppState) -> JoinHandle<()> {
    let weak = Arc::downgrade(&state.0);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match weak.upgrade() {
                Some(inner) => inner.limits.forget_idle(),
                None => break,
            }
        }
    })
}
