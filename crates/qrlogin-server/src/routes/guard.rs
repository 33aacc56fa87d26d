//! The front door: every request passes [`front_door`], one middleware that
//! rate-limits, refuses oversized and cross-site requests, sets the security
//! headers and records metrics.
//!
//! One middleware instead of a stack of eight layers because axum clones a
//! route's whole layer stack (a boxed service per layer) and boxes a future
//! per `from_fn` layer on every request; folding them saves those
//! allocations on the hot path (BENCHMARKS.md §2) without changing what is
//! checked or in which order.

use crate::app::AppState;
use crate::error::ApiError;
use crate::limit::IpBucket;
use crate::routes::extract::{client_ip, peer_ip};
use crate::routes::ops::record_request;
use axum::body::{Body, BodyDataStream, HttpBody};
use axum::extract::{MatchedPath, Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use metrics::SharedString;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most a refused body is read (and thrown away) before answering 413.
const DRAIN_LIMIT: u64 = 1024 * 1024;
/// Longest the front door waits for a body it reads (a chunked one, or one
/// it drains): our bodies are a few hundred bytes, and a client trickling
/// one must not hold its task for as long as it likes.
const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// Routes (relative to the base path) that are web pages or public files:
/// they choose their own caching; everything else (the API, errors) is
/// per-user and short-lived, so `no-store`.
const PAGES: [&str; 8] = [
    "/",
    "",
    "/m/{id}",
    "/phone",
    "/_qrlogin/assets/{version}/{*path}",
    "/_qrlogin/sdk/{*path}",
    "/.well-known/apple-app-site-association",
    "/.well-known/assetlinks.json",
];

/// Every request, in this order: the catch-all per-IP rate limit, the
/// body-size check (declared lengths; chunked bodies are read here, capped),
/// the cross-site check, the handler; then the security headers (on every
/// answer, refusals included) and the metrics.
pub async fn front_door(AxState(app): AxState<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    // Shared (`Arc`), so the two metrics that carry it do not each copy it.
    let route: SharedString = match req.extensions().get::<MatchedPath>() {
        Some(p) => Arc::<str>::from(p.as_str()).into(),
        None => SharedString::const_str("unmatched"),
    };
    let page = {
        let rel = route
            .strip_prefix(app.mount().base.as_str())
            .unwrap_or(&route);
        PAGES.contains(&rel)
    };

    let mut resp = match refusal(&app, req).await {
        Ok(req) => next.run(req).await,
        Err(refused) => refused,
    };

    let h = resp.headers_mut();
    set_default(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set_default(h, header::REFERRER_POLICY, "no-referrer");
    set_default(h, HeaderName::from_static("x-frame-options"), "DENY");
    if !page {
        set_default(h, header::CACHE_CONTROL, "no-store");
    }
    if app.secure_cookies {
        // Served over https: tell browsers never to try plain http.
        set_default(
            h,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
    record_request(&method, route, resp.status(), start.elapsed());
    resp
}

/// Reads a body, at most `max` bytes. Over that, the rest
/// is drained (up to DRAIN_LIMIT) and the answer is the 413.
async fn read_capped(body: Body, max: usize) -> Result<Bytes, Response> {
    let mut stream = body.into_data_stream();
    // Most bodies arrive in one chunk: kept as it is, not copied.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut len = 0usize;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Err(
                ApiError::BadRequest("the request body could not be read".into()).into_response(),
            );
        };
        if len + chunk.len() > max {
            let seen = (len + chunk.len()) as u64;
            let drained = drain_stream(&mut stream, DRAIN_LIMIT.saturating_sub(seen)).await;
            return Err(too_large(drained));
        }
        len += chunk.len();
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            None => buf.extend_from_slice(&chunk),
            Some(f) => {
                buf.reserve(f.len() + chunk.len());
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// Reads and discards a body, at most `limit` bytes; true when it ended.
async fn drain(body: Body, limit: u64) -> bool {
    drain_stream(&mut body.into_data_stream(), limit).await
}

async fn drain_stream(stream: &mut BodyDataStream, limit: u64) -> bool {
    let mut left = limit;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) if (c.len() as u64) <= left => left -= c.len() as u64,
            _ => return false,
        }
    }
    true
}

/// The 413; when the body was not read to its end the connection cannot be
/// reused, and `Connection: close` tells the client so.
fn too_large(drained: bool) -> Response {
    let resp = ApiError::PayloadTooLarge.into_response();
    if drained {
        resp
    } else {
        closing(resp)
    }
}

/// `resp` with `Connection: close`: the rest of the request was not read,
/// so the connection cannot carry another one.
fn closing(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn set_default(h: &mut HeaderMap, name: HeaderName, value: &'static str) {
    if !h.contains_key(&name) {
        h.insert(name, HeaderValue::from_static(value));
    }
}

/// The request back when it may proceed, or the answer refusing it.
async fn refusal(app: &AppState, req: Request) -> Result<Request, Response> {
    // The catch-all per-IP limit every request passes.
    // Handlers with their own bucket extract `ClientIp` again rather than
    // read it from here: with no trusted proxies that is one extension
    // lookup, cheaper than the allocation of inserting it as an extension.
    let ip = client_ip(
        peer_ip(req.extensions()),
        req.headers(),
        &app.trusted_proxies,
    );
    if let Err(e) = app.limits.check_ip(IpBucket::Any, ip) {
        return Err(e.into_response());
    }

    // A declared-too-large body gets a clean 413. The body is read and
    // discarded first (up to DRAIN_LIMIT): closing a socket with unread
    // bytes makes the kernel reset the connection, and the client would
    // then lose the 413 itself.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > app.max_body as u64) {
        let drained = len <= DRAIN_LIMIT
            && tokio::time::timeout(BODY_DEADLINE, drain(req.into_body(), DRAIN_LIMIT))
                .await
                .unwrap_or(false);
        return Err(too_large(drained));
    }
    // Every other body that has not ended is read here, up to the limit,
    // within BODY_DEADLINE. A chunked one for the same reason as above:
    // refused only after it has been drained, so the connection stays
    // usable (left to the extractors, the rest of it would be unread when
    // the 413 goes out, and the client could reuse a keep-alive connection
    // the server is about to close). A declared one within the limit so
    // that a client trickling it byte by byte (slowloris past the header
    // timeout) gets a 408 instead of holding its connection and task for
    // as long as it likes: once the head is in, the connection has no
    // deadline of its own (http1.rs, `Phase::Busy`).
    let req = if !req.body().is_end_stream() {
        let (parts, body) = req.into_parts();
        let body = match tokio::time::timeout(BODY_DEADLINE, read_capped(body, app.max_body)).await
        {
            Ok(read) => read?,
            Err(_) => return Err(closing(ApiError::RequestTimeout.into_response())),
        };
        Request::from_parts(parts, Body::from(body))
    } else {
        req
    };

    // Cross-site state-changing requests that ride on cookies are refused.
    // Cookies are SameSite already; this is the second lock. A browser
    // sends `Origin` on every POST/DELETE; when a request carries cookies
    // and an `Origin` that is not ours (or `Sec-Fetch-Site: cross-site`),
    // it did not come from our pages. Non-browser clients (no cookies) are
    // unaffected.
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method && req.headers().contains_key(header::COOKIE) {
        let h = req.headers();
        let foreign_origin = h
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|o| o != app.public_origin);
        let cross_site = h
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "cross-site");
        if foreign_origin || cross_site {
            return Err(ApiError::Forbidden("cross-site request refused").into_response());
        }
    }
    Ok(req)
}
