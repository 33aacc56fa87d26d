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
