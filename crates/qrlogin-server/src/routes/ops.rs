//! Health, readiness, metrics.

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use axum::extract::State as AxState;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once (several apps in one
/// process, as in tests, share it).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

/// How often [`metrics_upkeep`] drains the histograms.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Drains the recorder's histogram samples into their summaries every few
/// seconds. `install_recorder` leaves this to the caller: without it every
/// request's duration sample is kept until `/metrics` is scraped, and a
/// service nobody scrapes grows by ~8 bytes per request for ever (the soak
/// saw ~24 KiB/s per instance at 1,700 requests/s; a heap profile showed
/// the heap falling back each time the load generator read `/metrics`).
pub async fn metrics_upkeep(handle: &'static PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// `GET /healthz` — the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, content_type = "text/plain", body = String, description = "process is up")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz` — the store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, content_type = "text/plain", body = String, description = "store reachable"), (status = 503, body = ErrorBody)))]
pub async fn readyz(AxState(app): AxState<AppState>) -> Result<&'static str, ApiError> {
    app.store.ping().await?;
    Ok("ready")
}

/// `GET /metrics` — Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", description = "Prometheus text format"), (status = 503, description = "no metrics recorder")))]
pub async fn metrics() -> Response {
    match prometheus() {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

pub async fn not_found() -> ApiError {
    ApiError::NoRoute
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Counts a finished request by route and status and records its time.
/// Labels are static strings where they can be (method, common statuses),
/// so the hot path allocates only the route label (once, shared by both
/// metrics).
pub fn record_request(
    method: &Method,
    route: metrics::SharedString,
    status: StatusCode,
    elapsed: Duration,
) {
    let method: &'static str = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let status: metrics::SharedString = match status.as_u16() {
        200 => "200".into(),
        204 => "204".into(),
        400 => "400".into(),
        401 => "401".into(),
        403 => "403".into(),
        404 => "404".into(),
        409 => "409".into(),
        410 => "410".into(),
        429 => "429".into(),
        503 => "503".into(),
        other => other.to_string().into(),
    };
    metrics::counter!("qrlogin_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("qrlogin_http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
}
