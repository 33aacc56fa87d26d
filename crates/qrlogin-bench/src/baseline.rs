//! The unit a login's CPU is counted in: one trivial request.
//!
//! CPU per login in microseconds depends on the machine, its frequency and
//! what else runs; divided by the CPU of one `GET /healthz` on the same
//! server in the same run (same connections, same load generator, same
//! pace), it says how much work a login is beside the least a request can
//! cost: parsing, routing, the response, the socket. `run
//! --healthz-baseline N` sends N of them before the logins.

use crate::http::Auth;
use crate::instances::Instance;
use futures_util::stream::{self, StreamExt};
use hyper::{Method, StatusCode};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Requests a login makes with SSE (create, events, scan, approve,
/// redeem): the baseline's pace at a given login rate.
pub const REQUESTS_PER_LOGIN: f64 = 5.0;

#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub requests: u64,
    pub failed: u64,
    pub elapsed_s: f64,
    pub per_s: f64,
    /// Requests per second it was paced to (`None`: as fast as it went).
    pub paced_per_s: Option<f64>,
    /// Server CPU (all instances) per request, microseconds.
    pub server_us_per_request: Option<f64>,
}

/// Sends `n` `GET /healthz`, spread over the instances, `concurrency` at
/// once, paced to `pace` per second when given; measures the instances'
/// CPU meanwhile.
pub async fn healthz(
    instances: &[Instance],
    n: u64,
    concurrency: usize,
    pace: Option<f64>,
) -> Baseline {
    // Every instance's CPU, or none when one is not measured.
    let cpu = || instances.iter().map(Instance::cpu).sum::<Option<f64>>();
    let before = cpu();
    let start = Instant::now();
    let results: Vec<bool> = stream::iter(0..n)
        .map(|k| async move {
            if let Some(p) = pace {
                let at = start + Duration::from_secs_f64(k as f64 / p);
                tokio::time::sleep_until(at.into()).await;
            }
            let i = &instances[(k as usize) % instances.len()];
            let timeout = i.http.timeout();
            matches!(
                i.http
                    .call_within(timeout, Method::GET, "/healthz", &Auth::None, None)
                    .await,
                Ok((StatusCode::OK, _, _))
            )
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let after = cpu();
    let ok = results.iter().filter(|r| **r).count() as u64;
    Baseline {
        requests: n,
        failed: n - ok,
        elapsed_s: elapsed,
        per_s: if elapsed > 0.0 {
            ok as f64 / elapsed
        } else {
            0.0
        },
        paced_per_s: pace,
        server_us_per_request: match (before, after) {
            (Some(b), Some(a)) if ok > 0 => Some((a - b).max(0.0) * 1e6 / ok as f64),
            _ => None,
        },
    }
}
