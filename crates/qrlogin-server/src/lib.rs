//! The qrlogin HTTP service: browser and phone APIs, Server-Sent Events and
//! long-poll, the demo pages, health and metrics.
//!
//! Embed it with [`spawn`] (binds, serves in the background, returns the
//! address) or run it with [`serve`] (until Ctrl-C).

pub mod app;
pub mod config;
pub mod error;
pub mod identity;
pub mod jwt;
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
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use identity::DemoIdentity;
use qrlogin_core::{Clock, MemoryStore, Store};
use std::future::Future;
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
    // Which URLs are Redis URLs is the Redis store's to say.
    qrlogin_redis::check_url(&cfg.store).map_err(|e| {
        anyhow::anyhow!(
            "unsupported --store {:?}: use `memory` or a Redis URL ({e})",
            redact_url(&cfg.store)
        )
    })?;
    let store = qrlogin_redis::RedisStore::connect(
        &cfg.store,
        ttls,
        Duration::from_millis(cfg.store_timeout_ms),
    )
    .await
    .with_context(|| format!("connecting to {}", redact_url(&cfg.store)))?;
    Ok(Arc::new(store))
}

/// JWT mode's keys from `--session-format`, `--jwt-key-file`, `--jwt-issuer`
/// and `--jwt-audience`; `None` in opaque mode. Without a key file a key is
/// made now, with a warning: it dies with the process, and other instances
/// would refuse this one's JWTs; so with a shared store that is an error
/// unless `--jwt-ephemeral-key` says it is meant.
pub fn jwt_sessions(
    cfg: &ServeConfig,
    public_url: &str,
) -> anyhow::Result<Option<Arc<jwt::JwtSessions>>> {
    if cfg.session_format != config::SessionFormat::Jwt {
        return Ok(None);
    }
    let issuer = cfg
        .jwt_issuer
        .clone()
        .unwrap_or_else(|| public_url.trim_end_matches('/').to_string());
    let audience = cfg.jwt_audience.clone();
    let keys = match &cfg.jwt_key_file {
        Some(path) => jwt::JwtSessions::from_file(path, issuer, audience)?,
        None => {
            if cfg.store != "memory" && !cfg.jwt_ephemeral_key {
                anyhow::bail!(
                    "--session-format jwt with a shared store needs --jwt-key-file (the same \
                     key file on every instance); pass --jwt-ephemeral-key true to sign with a \
                     key made at start-up that only this process knows"
                );
            }
            let keys = jwt::JwtSessions::generate(issuer, audience)?;
            tracing::warn!(
                kid = keys.kid(),
                "JWT sessions are signed with a key made at start-up that only this process \
                 knows: its JWTs stop verifying when it restarts, and other instances refuse \
                 them. Give every instance the same --jwt-key-file."
            );
            keys
        }
    };
    tracing::info!(
        kid = keys.kid(),
        issuer = keys.issuer(),
        "JWT web sessions (ES256)"
    );
    Ok(Some(Arc::new(keys)))
}

/// A store URL without its password, for messages (the Redis store's rule).
pub use qrlogin_redis::redact_url;

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
    let jwt = jwt_sessions(&cfg, &public_url)?;
    let verifier: Arc<dyn identity::MobileVerifier> = Arc::new(identity::StoreTokenVerifier::new(
        store.clone(),
        clock.clone(),
    ));
    let state = AppState::with_sessions(
        &cfg,
        store,
        clock,
        public_url.clone(),
        Some(demo),
        verifier,
        jwt,
    );
    let app = router(state.clone());
    spawn_limit_sweeper(&state);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_http1(listener, app, async move {
        let _ = rx.await;
    }));
    Ok(Running {
        addr,
        public_url,
        state,
        shutdown: Some(tx),
        task,
    })
}

/// Serves `app` over HTTP/1.1 on `listener` until `shutdown` completes,
/// then stops accepting, asks every open connection to close once its
/// current response is done, and returns when all have closed.
///
/// Why not `axum::serve`: its per-connection machinery (hyper-util's auto
/// h1/h2 builder) first sniffs for an HTTP/2 preface, reading up to 24 bytes
/// on its own and handing them to hyper through a `Rewind` wrapper. hyper's
/// first read then returns just those bytes, the request head is incomplete,
/// and the second read grows hyper's 8 KiB read buffer to 16 KiB. An idle
/// waiting browser (SSE or long-poll) keeps that buffer for as long as it
/// waits. Served directly, hyper reads the whole head into its first 8 KiB
/// block. qrlogin speaks HTTP/1.1 only (axum's `http2` feature is off), so
/// nothing is lost.
///
/// What this keeps from `axum::serve`: TCP_NODELAY on every accepted socket,
/// [`ConnectInfo<SocketAddr>`] in every request's extensions (the client IP
/// and the trusted-proxy logic read it), graceful shutdown, and surviving
/// accept errors (e.g. out of file descriptors: wait a second, go on).
async fn serve_http1(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // Shared by every connection task: an `Arc` is 8 bytes of each idle
    // connection's task, the builder itself over a hundred.
    let builder = Arc::new(http1::Builder::new());
    // Each connection holds a receiver: a send (or the sender's drop, when
    // this task is aborted) asks it to finish gracefully; `closed()` on the
    // sender tells when all connections are gone.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = &mut shutdown => break,
        };
        // TCP_NODELAY: an SSE event must leave at once, not wait behind
        // the previous event's delayed ACK (Nagle adds ~40 ms per wake-up).
        let _ = tcp.set_nodelay(true);
        let (builder, app, mut stop) = (builder.clone(), app.clone(), stop_rx.clone());
        let fut = async move {
            // The connection is built inside the task, not moved into it:
            // a moved-in value and its pinned copy would both take room in
            // the task for as long as the connection lives.
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                detach_head(&mut req);
                req.extensions_mut().insert(ConnectInfo(peer));
                tower::Service::call(&mut app.clone(), req)
            });
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            drop(builder);
            tokio::pin!(conn);
            let res = tokio::select! {
                res = conn.as_mut() => res,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = res {
                tracing::trace!("connection from {peer}: {e}");
            }
        };
        tokio::spawn(fut);
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(());
    stop_tx.closed().await;
    Ok(())
}

/// Moves the request's URI and header values out of hyper's read buffer
/// into one small buffer of their own.
///
/// hyper parses the head in place: the URI and every header value are
/// slices of its 8 KiB read buffer, which therefore stays shared while the
/// request lives. Right after handing the request over, hyper reads again
/// (to notice a client that hangs up mid-response), and reading into a
/// shared buffer makes it allocate a fresh 8 KiB block. Done synchronously
/// here, before hyper's next read, the copy leaves the read buffer unshared,
/// so hyper reuses it in place: one block per connection instead of two,
/// for every waiting browser (the head itself is a few hundred bytes).
fn detach_head<B>(req: &mut hyper::Request<B>) {
    use bytes::{BufMut as _, BytesMut};
    let origin_form = req.uri().scheme().is_none() && req.uri().authority().is_none();
    let path = match req.uri().path_and_query() {
        Some(pq) if origin_form => pq.as_str(),
        _ => "",
    };
    let total = path.len() + req.headers().values().map(|v| v.len()).sum::<usize>();
    if total == 0 {
        return;
    }
    let mut buf = BytesMut::with_capacity(total);
    buf.put_slice(path.as_bytes());
    for v in req.headers().values() {
        buf.put_slice(v.as_bytes());
    }
    let mut own = buf.freeze();
    if !path.is_empty() {
        let copy = own.split_to(path.len());
        // Same bytes hyper already parsed: it cannot fail; if it somehow
        // did, the original URI simply stays.
        if let Ok(uri) = axum::http::Uri::from_maybe_shared(copy) {
            *req.uri_mut() = uri;
        }
    }
    for v in req.headers_mut().values_mut() {
        let copy = own.split_to(v.len());
        if let Ok(mut owned) = axum::http::HeaderValue::from_maybe_shared(copy) {
            owned.set_sensitive(v.is_sensitive());
            *v = owned;
        }
    }
}

/// The next connection. Like hyper 0.14's and axum's accept loop: a
/// connection that failed before we took it is nobody's problem; anything
/// else (typically out of file descriptors) is logged and retried after a
/// second, since open connections will close and free some.
async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    loop {
        match listener.accept().await {
            Ok(conn) => return conn,
            Err(e)
                if matches!(
                    e.kind(),
                    ConnectionRefused | ConnectionAborted | ConnectionReset
                ) => {}
            Err(e) => {
                tracing::error!("accept error: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::detach_head;
    use axum::http::header::{ACCEPT, AUTHORIZATION};
    use axum::http::{HeaderValue, Request, Uri};
    use bytes::{Bytes, BytesMut};

    /// A store URL that is neither `memory` nor a Redis URL is refused at
    /// start-up, naming the choices, without echoing a password.
    #[tokio::test]
    async fn unknown_store_urls_are_refused() {
        for url in [
            "postgres://u:hunter2@db/x",
            "nonsense",
            "redis+sentinel://:hunter2@s1",
        ] {
            let mut cfg = crate::ServeConfig::defaults();
            cfg.store = url.into();
            let msg = match super::open_store(&cfg).await {
                Ok(_) => panic!("{url} was accepted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(msg.contains("`memory` or a Redis URL"), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }
    }

    /// The situation hyper leaves us in: the head was split off the front
    /// of the read buffer and the request's URI and header values are
    /// slices of it.
    #[test]
    fn detached_head_leaves_the_read_buffer_unshared() {
        let path = "/v1/logins/abc/events?since=pending";
        let (accept, bearer) = ("text/event-stream", "Bearer s3cret");
        let mut read_buf = BytesMut::with_capacity(8192);
        read_buf.extend_from_slice(format!("{path}{accept}{bearer}").as_bytes());
        let head: Bytes = read_buf.split().freeze();
        let a = path.len();
        let b = a + accept.len();
        let uri = Uri::from_maybe_shared(head.slice(..a)).unwrap();
        let kind = HeaderValue::from_maybe_shared(head.slice(a..b)).unwrap();
        let mut auth = HeaderValue::from_maybe_shared(head.slice(b..)).unwrap();
        auth.set_sensitive(true);
        let mut req = Request::builder()
            .uri(uri)
            .header(ACCEPT, kind)
            .header(AUTHORIZATION, auth)
            .body(())
            .unwrap();
        drop(head);
        // Shared: hyper's next read would need a fresh 8 KiB block.
        assert!(!read_buf.try_reclaim(8192));

        detach_head(&mut req);
        // Unshared: the same block is reused in place.
        assert!(read_buf.try_reclaim(8192));
        assert_eq!(read_buf.capacity(), 8192);

        assert_eq!(req.uri().path(), "/v1/logins/abc/events");
        assert_eq!(req.uri().query(), Some("since=pending"));
        assert_eq!(req.headers()[ACCEPT], accept);
        assert_eq!(req.headers()[AUTHORIZATION], bearer);
        assert!(req.headers()[AUTHORIZATION].is_sensitive());
        assert!(!req.headers()[ACCEPT].is_sensitive());
    }

    #[test]
    fn absolute_form_uris_are_kept_and_headers_still_copied() {
        let mut req = Request::builder()
            .uri("http://example.com/x")
            .header("x-a", "1")
            .body(())
            .unwrap();
        detach_head(&mut req);
        assert_eq!(req.uri(), "http://example.com/x");
        assert_eq!(req.headers()["x-a"], "1");

        let mut req = Request::builder().uri("/").body(()).unwrap();
        detach_head(&mut req);
        assert_eq!(req.uri(), "/");
    }
}
