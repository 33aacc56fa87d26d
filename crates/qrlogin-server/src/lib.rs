//! The qrlogin HTTP service: browser and phone APIs, Server-Sent Events and
//! long-poll, the demo pages, health and metrics.
//!
//! Embed it with [`spawn`] (binds, serves in the background, returns the
//! address) or run it with [`serve`] (until Ctrl-C).

pub mod app;
pub mod config;
pub mod error;
pub mod identity;
pub mod limit;
pub mod matching;
pub mod openapi;
pub mod qr;
pub mod routes;
pub mod watch;

pub use app::{router, AppState};
pub use config::ServeConfig;
pub use error::ApiError;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use identity::DemoIdentity;
use qrlogin_core::{Clock, MemoryStore, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Opens the store named by `--store`.
pub async fn open_store(cfg: &ServeConfig) -> anyhow::Result<Arc<dyn Store>> {
    let ttls = cfg.ttls();
    if cfg.store == "memory" {
        return Ok(Arc::new(MemoryStore::new(ttls)));
    }
    if cfg.store.starts_with("redis://")
        || cfg.store.starts_with("rediss://")
        || cfg.store.starts_with("redis+unix://")
    {
        let store = qrlogin_redis::RedisStore::connect(
            &cfg.store,
            ttls,
            Duration::from_millis(cfg.store_timeout_ms),
        )
        .await
        .with_context(|| format!("connecting to {}", redact_url(&cfg.store)))?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!(
        "unsupported --store {:?}: use `memory`, redis://, rediss:// or redis+unix://",
        redact_url(&cfg.store)
    )
}

/// A store URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// A service running in the background.
pub struct Running {
    pub addr: SocketAddr,
    pub public_url: String,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
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

/// Binds `cfg.listen`, opens the store, and serves in the background.
pub async fn spawn(cfg: ServeConfig) -> anyhow::Result<Running> {
    let store = open_store(&cfg).await?;
    spawn_with(cfg, store, AppState::system_clock()).await
}

/// Like [`spawn`] with a given store and clock (tests inject both).
pub async fn spawn_with(
    cfg: ServeConfig,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let public_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let demo = match &cfg.users_file {
        Some(path) => DemoIdentity::from_file(path)?,
        None => DemoIdentity::seeded()?,
    };
    routes::ops::prometheus();
    let state = AppState::new(&cfg, store, clock, public_url.clone(), Some(demo));
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    spawn_limit_sweeper(&state);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // TCP_NODELAY: an SSE event must leave at once, not wait behind
        // the previous event's delayed ACK (Nagle adds ~40 ms per wake-up).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });
    Ok(Running {
        addr,
        public_url,
        state,
        shutdown: Some(tx),
        task,
    })
}

/// Forgets idle rate-limit keys every minute; ends with the app.
fn spawn_limit_sweeper(state: &AppState) {
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
    });
}

/// Runs until Ctrl-C / SIGTERM.
pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let store_desc = redact_url(&cfg.store);
    let users_file = cfg.users_file.is_some();
    let mut running = spawn(cfg).await?;
    // The first line on stdout is machine-readable: tests and scripts read
    // the bound address from it.
    println!("listening on http://{}", running.addr);
    tracing::info!(
        addr = %running.addr,
        public_url = %running.public_url,
        store = %store_desc,
        "qrlogin serving; login page at {}/ and phone at {}/phone",
        running.public_url,
        running.public_url
    );
    if store_desc == "memory" {
        tracing::info!(
            "store: in-memory (single node; use --store redis://… to run several instances)"
        );
    }
    if users_file {
        tracing::warn!(
            "demo identity is ON (users from --users-file): for trying qrlogin, not for production"
        );
    } else {
        tracing::warn!("demo identity is ON (alice/wonderland, bob/builder): for trying qrlogin, not for production");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut running.task).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
