//! The HTTP/1.1 accept loop: one task per connection, straight onto hyper's
//! HTTP/1 builder, with graceful shutdown.
//!
//! Why hand-rolled instead of `axum::serve`: see [`serve_http1`]. Why
//! [`detach_head`]: one 8 KiB read buffer per idle waiting browser instead of
//! two (BENCHMARKS.md, RSS per waiter).

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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
pub async fn serve_http1(
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
