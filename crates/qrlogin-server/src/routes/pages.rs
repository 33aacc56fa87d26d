//! The demo pages, embedded in the binary (see build.rs).

use crate::error::ApiError;
use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Strict CSP for our own pages: only our scripts and styles, nothing
/// inline, and no framing anywhere (no clickjacking of "Approve").
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") | Some("md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

pub(crate) fn serve(path: &str) -> Result<Response, ApiError> {
    let (_, bytes) = ASSETS
        .iter()
        .find(|(p, _)| *p == path)
        .ok_or(ApiError::NoRoute)?;
    let cache = if path.ends_with(".html") {
        "no-cache"
    } else {
        "public, max-age=300"
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(path)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
        ],
        *bytes,
    )
        .into_response())
}

pub async fn login_page() -> Result<Response, ApiError> {
    serve("login.html")
}

pub async fn confirm_page(Path(_id): Path<String>) -> Result<Response, ApiError> {
    serve("confirm.html")
}

pub async fn phone_page() -> Result<Response, ApiError> {
    serve("phone.html")
}

pub async fn asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    serve(&path)
}
