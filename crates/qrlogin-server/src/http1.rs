//! The HTTP/1.1 accept loop: one task per connection, straight onto hyper's
//! HTTP/1 builder, with graceful shutdown.
//!
//! Why hand-rolled instead of `axum::serve`: see [`serve_http1`]. Why
//! [`detach_head`]: one 8 KiB read buffer per idle waiting browser instead of
//! two (BENCHMARKS.md, RSS per waiter).

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How the accept loop treats slow, idle and greedy clients
/// (`--header-timeout`, `--keepalive-timeout`, `--max-connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// A request head must be complete this long after the connection was
    /// accepted, or after the first byte of the next request on a kept-alive
    /// connection.
    pub header_timeout: Duration,
    /// An idle kept-alive connection (no request in flight, no byte of the
    /// next one) is closed after this; zero turns keep-alive off.
    pub keepalive_timeout: Duration,
    /// Most connections open at once; accepting pauses beyond it.
    pub max_connections: usize,
}

/// File descriptors `--max-connections 0` leaves for everything else (the
/// store's connections, upstream calls, logs).
const RESERVED_FDS: u64 = 256;

impl ConnLimits {
    /// From the configuration; `--max-connections 0` is the soft
    /// file-descriptor limit minus [`RESERVED_FDS`] (at least 64).
    pub fn from_config(cfg: &crate::ServeConfig) -> Self {
        let max_connections = match cfg.max_connections {
            0 => {
                let soft = rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .map(|(soft, _)| soft)
                    .unwrap_or(1024);
                usize::try_from(soft.saturating_sub(RESERVED_FDS).max(64)).unwrap_or(usize::MAX)
            }
            n => n,
        };
        ConnLimits {
            header_timeout: Duration::from_secs(cfg.header_timeout.max(1)),
            keepalive_timeout: Duration::from_secs(cfg.keepalive_timeout),
            max_connections,
        }
    }
}

impl Default for ConnLimits {
    /// As `ServeConfig::defaults()` says.
    fn default() -> Self {
        ConnLimits::from_config(&crate::ServeConfig::defaults())
    }
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
/// and the trusted-proxy logic read it; IPv4-mapped peers of a dual-stack
/// listener are given as IPv4), graceful shutdown, and surviving accept
/// errors (e.g. out of file descriptors: wait a second, go on).
///
/// What it adds ([`ConnLimits`]): a deadline for every request head and
/// for idle keep-alive (see [`Deadline`] for why not hyper's own header
/// timer), and at most `max_connections` open connections.
pub async fn serve_http1(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder.keep_alive(!limits.keepalive_timeout.is_zero());
    // Shared by every connection task: an `Arc` is 8 bytes of each idle
    // connection's task, the builder itself over a hundred.
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    // Each connection holds a receiver: a send (or the sender's drop, when
    // this task is aborted) asks it to finish gracefully; `closed()` on the
    // sender tells when all connections are gone.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Full: stop accepting (new connections wait in the kernel's
                // backlog) until a connection closes.
                metrics::counter!("qrlogin_accept_paused_total").increment(1);
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: not accepting until a connection closes \
                         (--max-connections)"
                    );
                    last_warning = Some(Instant::now());
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = &mut shutdown => break,
        };
        // TCP_NODELAY: an SSE event must leave at once, not wait behind
        // the previous event's delayed ACK (Nagle adds ~40 ms per wake-up).
        let _ = tcp.set_nodelay(true);
        // One spelling per client: an IPv4 client of a `[::]` listener is
        // its IPv4 address, for rate limits, matching, proxies and logs.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let open = OpenConnection::new(slot);
        let (builder, app, mut stop) = (builder.clone(), app.clone(), stop_rx.clone());
        let fut = async move {
            // The connection is built inside the task, not moved into it:
            // a moved-in value and its pinned copy would both take room in
            // the task for as long as the connection lives.
            let activity = Arc::new(Activity::default());
            let io = TokioIo::new(Watched {
                tcp,
                activity: activity.clone(),
            });
            let for_requests = activity.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                detach_head(&mut req);
                req.extensions_mut().insert(ConnectInfo(peer));
                let in_flight = InFlight::new(&for_requests);
                let call = tower::Service::call(&mut app.clone(), req);
                async move {
                    let resp = call.await?;
                    Ok::<_, std::convert::Infallible>(resp.map(|body| Tracked {
                        body,
                        _in_flight: in_flight,
                    }))
                }
            });
            let conn = builder.serve_connection(io, service);
            drop(builder);
            tokio::pin!(conn);
            let mut deadline = Deadline::new(limits);
            let mut stopping = false;
            let stop_changed = stop.changed();
            tokio::pin!(stop_changed);
            let res = std::future::poll_fn(|cx| {
                if !stopping && stop_changed.as_mut().poll(cx).is_ready() {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                if let Poll::Ready(res) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Some(res));
                }
                match deadline.poll_passed(cx, &activity) {
                    true => Poll::Ready(None),
                    false => Poll::Pending,
                }
            })
            .await;
            match res {
                Some(Err(e)) => tracing::trace!("connection from {peer}: {e}"),
                Some(Ok(())) => {}
                None => {
                    metrics::counter!("qrlogin_connections_timed_out_total").increment(1);
                    tracing::trace!("connection from {peer}: closed by its deadline");
                }
            }
            drop(open);
        };
        tokio::spawn(fut);
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(());
    stop_tx.closed().await;
    Ok(())
}

/// A connection slot of `--max-connections`, and the open-connections gauge.
struct OpenConnection(#[allow(dead_code)] OwnedSemaphorePermit);

impl OpenConnection {
    fn new(slot: OwnedSemaphorePermit) -> Self {
        metrics::gauge!("qrlogin_open_connections").increment(1.0);
        OpenConnection(slot)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("qrlogin_open_connections").decrement(1.0);
    }
}

/// What a connection's requests and socket tell its task, so that it knows
/// which deadline applies.
#[derive(Default)]
struct Activity {
    /// Requests whose handler runs or whose response is being sent.
    in_flight: AtomicU32,
    /// Requests handed over so far (wrapping): tells the task that one
    /// came and went between two of its looks.
    started: AtomicU32,
    /// Bytes arrived while no request was in flight: the next head began.
    head_begun: AtomicBool,
}

/// One request in flight, from hyper handing it over until its response
/// body is done (or dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Relaxed);
        activity.started.fetch_add(1, Relaxed);
        // The bytes seen so far were this request's head.
        activity.head_begun.store(false, Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A response body that keeps its request counted as in flight.
struct Tracked {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting when bytes arrive while no request is in flight.
struct Watched {
    tcp: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before && self.activity.in_flight.load(Relaxed) == 0 {
            self.activity.head_begun.store(true, Relaxed);
        }
        res
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Where a connection stands, for its deadline.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head, which must be complete by then.
    Head(Instant),
    /// A request is in flight: no deadline (a waiting browser may wait as
    /// long as its login lives).
    Busy,
    /// Kept alive with nothing in flight since then.
    Idle(Instant),
}

/// The one deadline of a connection: the request head's (`--header-timeout`)
/// or idle keep-alive's (`--keepalive-timeout`), and the timer enforcing it.
///
/// Why not hyper's `header_read_timeout` (with a `TokioTimer`): hyper starts
/// that timer whenever it waits for a head, so on a kept-alive connection it
/// is also the idle timeout, and the two cannot differ; and a keep-alive
/// longer than the header timeout is what proxies in front of us need. So
/// the connection's task keeps the phase itself, from what [`Activity`]
/// says after every poll of the connection (every change happens inside
/// one). The timer exists only while there is a deadline: a waiting browser
/// (a request in flight) holds none, and a request whose head arrived with
/// the connection's first read never makes one.
struct Deadline {
    header_timeout: Duration,
    keepalive_timeout: Duration,
    phase: Phase,
    /// `Activity::started` when last looked at.
    started: u32,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    fn new(limits: ConnLimits) -> Self {
        Deadline {
            header_timeout: limits.header_timeout,
            keepalive_timeout: limits.keepalive_timeout,
            phase: Phase::Head(Instant::now() + limits.header_timeout),
            started: 0,
            timer: None,
        }
    }

    /// Updates the phase and polls the timer: true once the deadline passed.
    fn poll_passed(&mut self, cx: &mut Context<'_>, activity: &Activity) -> bool {
        let busy = activity.in_flight.load(Relaxed) > 0;
        let started = activity.started.load(Relaxed);
        // A request came (and maybe went already) since the last look.
        let served = started != self.started;
        self.started = started;
        let head_from_now = || Phase::Head(Instant::now() + self.header_timeout);
        self.phase = if busy {
            Phase::Busy
        } else if served || matches!(self.phase, Phase::Busy) {
            // The last response is done: idle, or the next head has begun.
            match activity.head_begun.swap(false, Relaxed) {
                true => head_from_now(),
                false => Phase::Idle(Instant::now()),
            }
        } else {
            match self.phase {
                Phase::Idle(_) if activity.head_begun.swap(false, Relaxed) => head_from_now(),
                keep => keep,
            }
        };
        let at = match self.phase {
            Phase::Busy => {
                self.timer = None;
                return false;
            }
            Phase::Head(at) => at,
            Phase::Idle(since) => since + self.keepalive_timeout,
        };
        let timer = match &mut self.timer {
            Some(t) => {
                if t.deadline() != at {
                    t.as_mut().reset(at);
                }
                t
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        timer.as_mut().poll(cx).is_ready()
    }
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

#[cfg(test)]
mod tests {
    use super::detach_head;
    use axum::http::header::{ACCEPT, AUTHORIZATION};
    use axum::http::{HeaderValue, Request, Uri};
    use bytes::{Bytes, BytesMut};

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
