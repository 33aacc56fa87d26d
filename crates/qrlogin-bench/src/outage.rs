//! Redis outages as the load generator sees them.
//!
//! A soak restarts Redis in the middle on purpose; the errors it then
//! causes are acceptable only inside the restart window. The window's start
//! is when Redis went away, its end the first login step that succeeded
//! *after* it went away (sent after it, so it was answered by the restarted
//! Redis): that is when users could log in again, which is later than the
//! moment Redis answers PING (it still has to load its append-only file,
//! and every instance has to reconnect).
//!
//! A probe pings Redis every [`PROBE_EVERY`] over its own connection; the
//! first failed ping opens an outage, the first answered ping after it
//! notes Redis back up. The workers report each successful step's send
//! time ([`Outages::success`]); the first one sent after the outage began
//! closes it.

use crate::redis_stats::{RedisConn, RedisTarget, Reply};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the probe pings: the resolution of the window's start.
pub const PROBE_EVERY: Duration = Duration::from_millis(20);

/// A ping slower than this counts as failed (Redis killed mid-answer, or
/// stuck).
const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// `NONE` in the atomics: no outage open / no success seen.
const NONE: u64 = u64::MAX;

/// One outage, in milliseconds since the run's start.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Outage {
    /// The probe's first failed ping (at most [`PROBE_EVERY`] plus a ping
    /// after Redis went away).
    pub down_ms: u64,
    /// The first ping Redis answered with `PONG` afterwards (`None`: never
    /// during the run).
    pub redis_up_ms: Option<u64>,
    /// The end of the window: the first login step sent after `down_ms`
    /// that succeeded (`None`: none did).
    pub first_success_ms: Option<u64>,
}

/// Shared between the probe and the workers.
pub struct Outages {
    start: Instant,
    /// Start (ms) of the outage the next success may close, or `NONE`.
    open_since: AtomicU64,
    /// Earliest success (ms, answer time) sent after `open_since`, or `NONE`.
    first_success: AtomicU64,
    done: Mutex<Vec<Outage>>,
}

impl Outages {
    pub fn new(start: Instant) -> Arc<Outages> {
        Arc::new(Outages {
            start,
            open_since: AtomicU64::new(NONE),
            first_success: AtomicU64::new(NONE),
            done: Mutex::new(Vec::new()),
        })
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_millis() as u64
    }

    /// A login step sent at `sent` succeeded (answered now).
    pub fn success(&self, sent: Instant) {
        let since = self.open_since.load(Ordering::Relaxed);
        if since != NONE && self.ms(sent) >= since {
            self.first_success
                .fetch_min(self.ms(Instant::now()), Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Outage>> {
        // A panicking holder cannot leave the list half-written (push only).
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every outage, with the first success of each filled in: a success
    /// counts for the latest outage that began before it was sent.
    pub fn finish(&self) -> Vec<Outage> {
        let mut v = self.lock().clone();
        let first = self.first_success.load(Ordering::Relaxed);
        if let Some(last) = v.last_mut() {
            if last.first_success_ms.is_none() && first != NONE {
                last.first_success_ms = Some(first);
            }
        }
        v
    }

    fn went_down(&self, at: Instant) {
        let ms = self.ms(at);
        let mut v = self.lock();
        // The previous outage's first success, if it had one, is final now.
        let first = self.first_success.swap(NONE, Ordering::Relaxed);
        if let Some(last) = v.last_mut() {
            if last.first_success_ms.is_none() && first != NONE {
                last.first_success_ms = Some(first);
            }
        }
        v.push(Outage {
            down_ms: ms,
            redis_up_ms: None,
            first_success_ms: None,
        });
        self.open_since.store(ms, Ordering::Relaxed);
    }

    fn came_up(&self, at: Instant) {
        let ms = self.ms(at);
        if let Some(last) = self.lock().last_mut() {
            last.redis_up_ms.get_or_insert(ms);
        }
    }
}

/// Pings Redis until `stop` says so, recording outages in `out`.
pub async fn probe(target: RedisTarget, out: Arc<Outages>, stop: Arc<AtomicU64>) {
    let mut conn: Option<RedisConn> = None;
    let mut down = false;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while stop.load(Ordering::Relaxed) == 0 {
        tick.tick().await;
        let ok = ping(&target, &mut conn).await;
        let now = Instant::now();
        match (ok, down) {
            (false, false) => {
                down = true;
                out.went_down(now);
            }
            (true, true) => {
                down = false;
                out.came_up(now);
            }
            _ => {}
        }
    }
}

/// One ping on `conn` (connecting first if needed); a failure drops the
/// connection so the next ping reconnects. `LOADING` (Redis replaying its
/// append-only file) counts as down.
async fn ping(target: &RedisTarget, conn: &mut Option<RedisConn>) -> bool {
    let attempt = async {
        if conn.is_none() {
            *conn = Some(RedisConn::connect(target).await?);
        }
        match conn.as_mut() {
            Some(c) => c.command(&["PING"]).await,
            None => anyhow::bail!("no connection"),
        }
    };
    let ok = matches!(
        tokio::time::timeout(PING_TIMEOUT, attempt).await,
        Ok(Ok(Reply::Simple(ref s))) if s == "PONG"
    );
    if !ok {
        *conn = None;
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_sent_after_the_outage_closes_it() {
        let start = Instant::now() - Duration::from_secs(10);
        let o = Outages::new(start);
        // A success before any outage closes nothing.
        o.success(start + Duration::from_secs(1));
        o.went_down(start + Duration::from_secs(5));
        // Sent before Redis went away: not the end of the window.
        o.success(start + Duration::from_secs(4));
        assert_eq!(o.first_success.load(Ordering::Relaxed), NONE);
        o.came_up(start + Duration::from_secs(7));
        o.success(start + Duration::from_secs(8));
        let v = o.finish();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].down_ms, 5000);
        assert_eq!(v[0].redis_up_ms, Some(7000));
        // Answered "now" (10 s after the start, within scheduling noise).
        assert!(v[0].first_success_ms.is_some_and(|t| t >= 10_000));
    }
}
