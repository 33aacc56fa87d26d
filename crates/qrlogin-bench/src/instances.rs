//! Runs across several instances of the service (issue 13, scale-out).
//!
//! `--url` given N times: login `k`'s browser (create, wait, redeem) uses
//! instance `k mod N` and its phone (scan, approve) instance `k + 1 mod N`,
//! so every wake-up crosses instances through the store's hints, as behind
//! a load balancer. Each instance's `/metrics` is read before and after the
//! run: the requests it answered by route (proof of where the phone went)
//! and the hint messages its subscriber received
//! (`qrlogin_hint_messages_total`, and `qrlogin_hint_messages_unwatched_total`
//! for logins nobody waits on there). With `--server-pid` per instance, its
//! CPU too. "Per login" is always divided by the run's completed logins, so
//! the instances' figures add up to the total.

use crate::http::{Auth, Http};
use crate::scrape::Scrape;
use crate::sys::{self, Rss};
use hyper::{Method, StatusCode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Hint messages received by an instance's subscriber.
pub const HINT_MESSAGES: &str = "qrlogin_hint_messages_total";
/// Of those, hints for a login with no watcher on that instance.
pub const HINT_MESSAGES_UNWATCHED: &str = "qrlogin_hint_messages_unwatched_total";
/// Requests answered, labelled by route.
const HTTP_REQUESTS: &str = "qrlogin_http_requests_total";

/// Which instance login `k` uses for its browser (create, redeem), for
/// the browser's wait and for its phone. Normally the wait goes where the
/// create went and the phone to the next instance; with `wait_elsewhere`
/// (a load balancer that spreads every request) the wait goes to the next
/// instance and the phone stays on the creator's, so the waiting instance
/// is never the one that created the login nor the phone's.
pub fn assign(k: u64, instances: usize, wait_elsewhere: bool) -> (usize, usize, usize) {
    let n = instances.max(1) as u64;
    let browser = k % n;
    let next = ((browser + 1) % n) as usize;
    if wait_elsewhere {
        (browser as usize, next, browser as usize)
    } else {
        (browser as usize, browser as usize, next)
    }
}

/// One instance under load.
pub struct Instance {
    pub url: String,
    pub http: Http,
    pub pid: Option<u32>,
    /// Logins whose browser / phone the bench sent here.
    pub browser_logins: AtomicU64,
    pub phone_logins: AtomicU64,
}

impl Instance {
    pub fn new(url: String, http: Http, pid: Option<u32>) -> Instance {
        Instance {
            url,
            http,
            pid,
            browser_logins: AtomicU64::new(0),
            phone_logins: AtomicU64::new(0),
        }
    }

    /// `GET /metrics`, parsed; the error as text when it cannot be read.
    pub async fn scrape(&self) -> Result<Scrape, String> {
        let (status, _, body) = self
            .http
            .call_within(
                self.http.timeout(),
                Method::GET,
                "/metrics",
                &Auth::None,
                None,
            )
            .await
            .map_err(|f| format!("GET /metrics: {f}"))?;
        if status != StatusCode::OK {
            return Err(format!("GET /metrics answered {status}"));
        }
        Ok(Scrape::parse(&String::from_utf8_lossy(&body)))
    }

    pub fn cpu(&self) -> Option<f64> {
        self.pid.and_then(|p| sys::cpu_seconds(p).ok())
    }

    pub fn rss(&self) -> Option<Rss> {
        self.pid.and_then(|p| sys::rss_of(p).ok())
    }
}

/// What one instance did during the run.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceReport {
    pub url: String,
    pub server_pid: Option<u32>,
    /// Logins whose browser (create, wait, redeem) the bench sent here.
    pub browser_logins: u64,
    /// Logins whose phone (scan, approve) the bench sent here.
    pub phone_logins: u64,
    /// Requests the instance itself counted during the run, by route
    /// (`/metrics` scrapes left out); `None` when /metrics was unreadable.
    pub requests: Option<BTreeMap<String, u64>>,
    pub cpu_s: Option<f64>,
    /// `cpu_s` / the run's completed logins.
    pub cpu_us_per_login: Option<f64>,
    pub rss_before: Option<Rss>,
    pub rss_after: Option<Rss>,
    /// `None` when the counter is not exposed (the memory store has no
    /// subscriber; binaries before issue 13 have no counter).
    pub hint_messages: Option<u64>,
    pub hint_messages_per_login: Option<f64>,
    pub hint_messages_unwatched: Option<u64>,
    pub hint_messages_unwatched_per_login: Option<f64>,
    /// Why /metrics could not be read, if it could not.
    pub metrics_error: Option<String>,
}

/// Hint messages received by all instances together.
#[derive(Debug, Clone, Serialize)]
pub struct HintTotals {
    /// Instances whose counter was read (the sums are over those).
    pub instances_reporting: usize,
    pub messages: u64,
    /// Hint messages delivered per completed login, all instances: with a
    /// classic PUBLISH on one channel, (hints per login) × instances.
    pub per_login: f64,
    pub unwatched: u64,
    /// Of those, delivered to an instance where nobody waited for the
    /// login: work for logins it does not serve.
    pub unwatched_per_login: f64,
}

/// An instance's state before the run.
pub struct Before {
    scrape: Result<Scrape, String>,
    cpu: Option<f64>,
    rss: Option<Rss>,
}

/// Reads /metrics first (its own cost stays outside the CPU window), then
/// CPU and RSS.
pub async fn before(i: &Instance) -> Before {
    let scrape = i.scrape().await;
    Before {
        scrape,
        cpu: i.cpu(),
        rss: i.rss(),
    }
}

/// The instance's CPU in the run's window (read right after the load, before
/// any scrape).
pub fn cpu_after(i: &Instance) -> Option<f64> {
    i.cpu()
}

fn per(n: f64, logins: u64) -> Option<f64> {
    (logins > 0).then(|| n / logins as f64)
}

/// The counter's growth, `None` when absent from both scrapes.
fn counter_delta(b: &Scrape, a: &Scrape, name: &str) -> Option<u64> {
    (b.has(name) || a.has(name)).then(|| (a.sum(name) - b.sum(name)).max(0.0).round() as u64)
}

/// The report of one instance, from its `before` state, its CPU read
/// right after the load (`cpu_after`) and a scrape now.
pub async fn report(
    i: &Instance,
    b: Before,
    cpu_after: Option<f64>,
    logins: u64,
) -> InstanceReport {
    let after = i.scrape().await;
    let rss_after = i.rss();
    let cpu_s = match (b.cpu, cpu_after) {
        (Some(x), Some(y)) => Some((y - x).max(0.0)),
        _ => None,
    };
    let (requests, hints, unwatched, metrics_error) = match (&b.scrape, &after) {
        (Ok(bs), Ok(a)) => {
            let before = bs.sum_by(HTTP_REQUESTS, "route");
            let requests = a
                .sum_by(HTTP_REQUESTS, "route")
                .into_iter()
                .filter(|(route, _)| route != "/metrics")
                .map(|(route, n)| {
                    let d = (n - before.get(&route).copied().unwrap_or(0.0)).max(0.0);
                    (route, d.round() as u64)
                })
                .filter(|(_, d)| *d > 0)
                .collect();
            (
                Some(requests),
                counter_delta(bs, a, HINT_MESSAGES),
                counter_delta(bs, a, HINT_MESSAGES_UNWATCHED),
                None,
            )
        }
        (Err(e), _) | (_, Err(e)) => (None, None, None, Some(e.clone())),
    };
    // A subscriber that received hints but never an unwatched one shows
    // no unwatched counter at all: that is zero, not unknown.
    let unwatched = unwatched.or(hints.map(|_| 0));
    InstanceReport {
        url: i.url.clone(),
        server_pid: i.pid,
        browser_logins: i.browser_logins.load(Ordering::Relaxed),
        phone_logins: i.phone_logins.load(Ordering::Relaxed),
        requests,
        cpu_s,
        cpu_us_per_login: cpu_s.and_then(|s| per(s * 1e6, logins)),
        rss_before: b.rss,
        rss_after,
        hint_messages: hints,
        hint_messages_per_login: hints.and_then(|h| per(h as f64, logins)),
        hint_messages_unwatched: unwatched,
        hint_messages_unwatched_per_login: unwatched.and_then(|h| per(h as f64, logins)),
        metrics_error,
    }
}

/// The sum over the instances whose hint counter was read; `None` when
/// none was.
pub fn hint_totals(reports: &[InstanceReport], logins: u64) -> Option<HintTotals> {
    let reporting: Vec<&InstanceReport> = reports
        .iter()
        .filter(|r| r.hint_messages.is_some())
        .collect();
    if reporting.is_empty() {
        return None;
    }
    let messages: u64 = reporting.iter().filter_map(|r| r.hint_messages).sum();
    let unwatched: u64 = reporting
        .iter()
        .filter_map(|r| r.hint_messages_unwatched)
        .sum();
    Some(HintTotals {
        instances_reporting: reporting.len(),
        messages,
        per_login: per(messages as f64, logins).unwrap_or(0.0),
        unwatched,
        unwatched_per_login: per(unwatched as f64, logins).unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phone_uses_the_next_instance() {
        assert_eq!(assign(0, 1, false), (0, 0, 0));
        assert_eq!(assign(7, 1, false), (0, 0, 0));
        assert_eq!(assign(0, 2, false), (0, 0, 1));
        assert_eq!(assign(1, 2, false), (1, 1, 0));
        assert_eq!(assign(5, 4, false), (1, 1, 2));
        assert_eq!(assign(3, 4, false), (3, 3, 0));
        for n in 2..9 {
            for k in 0..50 {
                let (b, w, p) = assign(k, n, false);
                assert!(b < n && p < n && b == w && b != p, "k={k} n={n}");
            }
        }
    }

    #[test]
    fn wait_elsewhere_waits_on_neither_the_creator_nor_the_phone() {
        assert_eq!(assign(0, 1, true), (0, 0, 0));
        assert_eq!(assign(0, 2, true), (0, 1, 0));
        assert_eq!(assign(5, 4, true), (1, 2, 1));
        for n in 2..9 {
            for k in 0..50 {
                let (b, w, p) = assign(k, n, true);
                assert!(w < n && w != b && w != p, "k={k} n={n}");
            }
        }
    }

    #[test]
    fn counters_absent_or_present() {
        let b = Scrape::parse("qrlogin_hint_messages_total 10\n");
        let a = Scrape::parse(
            "qrlogin_hint_messages_total 40\nqrlogin_hint_messages_unwatched_total 12\n",
        );
        assert_eq!(counter_delta(&b, &a, HINT_MESSAGES), Some(30));
        assert_eq!(counter_delta(&b, &a, HINT_MESSAGES_UNWATCHED), Some(12));
        let none = Scrape::parse("other 1\n");
        assert_eq!(counter_delta(&none, &none, HINT_MESSAGES), None);
    }
}
