//! Refuses cross-site state-changing requests that ride on cookies.
//!
//! Cookies are SameSite already; this is the second lock. A browser sends
//! `Origin` on every POST/DELETE; when a request carries cookies and an
//! `Origin` that is not ours (or `Sec-Fetch-Site: cross-site`), it did not
//! come from our pages and is refused. Non-browser clients (no cookies) are
//! unaffected.

use crate::app::AppState;
use crate::error::ApiError;
use crate::limit::IpBucket;
use crate::routes::extract::ClientIp;
use axum::extract::{Request, State as AxState};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub async fn cross_site_guard(
    AxState(app): AxState<AppState>,
    req: Request,
    next: Next,
) -> Response {
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
            return ApiError::Forbidden("cross-site request refused").into_response();
        }
    }
    next.run(req).await
}

/// The catch-all per-IP limit every request passes.
pub async fn rate_limit_any(
    AxState(app): AxState<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
    next: Next,
) -> Response {
    if let Err(e) = app.limits.check_ip(IpBucket::Any, ip) {
        return e.into_response();
    }
    next.run(req).await
}

/// Most a refused body is read (and thrown away) before answering 413.
const DRAIN_LIMIT: u64 = 1024 * 1024;

/// Refuses a declared-too-large body with a clean 413. The body is read and
/// discarded first (up to [`DRAIN_LIMIT`]): closing a socket with unread
/// bytes makes the kernel reset the connection, and the client would then
/// lose the 413 itself. Bodies without a length are limited by the
/// extractors (`DefaultBodyLimit`).
pub async fn refuse_large_bodies(
    AxState(app): AxState<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > app.max_body as u64 => {
            if len <= DRAIN_LIMIT {
                let mut body = req.into_body().into_data_stream();
                while let Some(Ok(_)) = futures_util::StreamExt::next(&mut body).await {}
            }
            ApiError::PayloadTooLarge.into_response()
        }
        _ => next.run(req).await,
    }
}
