//! The pages, their assets and the browser SDK, embedded in the binary (see
//! build.rs) and rendered once at start-up with the mount path and the
//! branding ([`crate::site`]); and the origin-root files native apps read.

use crate::app::AppState;
use crate::error::ApiError;
use crate::site::asset;
use axum::extract::{Path, State as AxState};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("ts") | Some("txt") | Some("md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn respond(app: &AppState, path: &str, cache: &'static str, body: Bytes) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(path)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (header::CONTENT_SECURITY_POLICY, app.site.csp.clone()),
        ],
        body,
    )
        .into_response()
}

/// A page: never cached without asking (it names the current asset version).
fn page(app: &AppState, body: &Bytes) -> Response {
    respond(app, "page.html", "no-cache", body.clone())
}

pub async fn login_page(AxState(app): AxState<AppState>) -> Response {
    page(&app, &app.site.login)
}

pub async fn confirm_page(AxState(app): AxState<AppState>, Path(_id): Path<String>) -> Response {
    page(&app, &app.site.confirm)
}

pub async fn phone_page(AxState(app): AxState<AppState>) -> Response {
    page(&app, &app.site.phone)
}

/// The OpenID Provider's authorize page (the QR login for one client).
pub(crate) fn authorize_page(app: &AppState) -> Response {
    page(app, &app.site.authorize)
}

/// The device grant's "type the code" page.
pub(crate) fn device_page(app: &AppState) -> Response {
    page(app, &app.site.device)
}

/// `{base}/_qrlogin/assets/{version}/{*path}`. Under the current version
/// an asset is cached for good (the version changes with every file and
/// with the branding); under any other (a page from an older instance
/// during a rolling deploy) it is served, but not to be kept.
pub async fn asset_file(
    AxState(app): AxState<AppState>,
    Path((version, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let cache = if version == app.site.version {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    if path == "brand.css" {
        return Ok(respond(&app, &path, cache, app.site.brand_css.clone()));
    }
    // Page templates and the SDK have routes of their own.
    if path.ends_with(".html") || path.starts_with("sdk/") {
        return Err(ApiError::NoRoute);
    }
    let bytes = asset(&path).ok_or(ApiError::NoRoute)?;
    Ok(respond(&app, &path, cache, Bytes::from_static(bytes)))
}

/// `{base}/_qrlogin/sdk/{*path}`: the browser SDK (`qrlogin.js`, its CSS
/// and types) at a stable URL sites can link, cached briefly.
pub async fn sdk_file(
    AxState(app): AxState<AppState>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let bytes = asset(&format!("sdk/{path}")).ok_or(ApiError::NoRoute)?;
    Ok(respond(
        &app,
        &path,
        "public, max-age=300",
        Bytes::from_static(bytes),
    ))
}

/// A JSON file for native apps at the origin root: public, cacheable,
/// served directly (Apple and Google fetch them without redirects).
fn well_known(json: Option<&Bytes>) -> Result<Response, ApiError> {
    let body = json.ok_or(ApiError::NoRoute)?.clone();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response())
}

/// `/.well-known/apple-app-site-association` (with `--app-links ios:…`).
pub async fn apple_app_site_association(
    AxState(app): AxState<AppState>,
) -> Result<Response, ApiError> {
    well_known(app.site.apple_json.as_ref())
}

/// `/.well-known/assetlinks.json` (with `--app-links android:…`).
pub async fn assetlinks(AxState(app): AxState<AppState>) -> Result<Response, ApiError> {
    well_known(app.site.android_json.as_ref())
}
