//! The delivery task: takes events from the store's shared queue, POSTs
//! each, signed, to the site's backend, retries with exponential backoff
//! and jitter until the event is `max_age` old (then drops it with a
//! warning and a metric), and acknowledges it on a 2xx answer.
//!
//! Every instance runs one, under its own consumer name; events an
//! instance took and stopped holding (it died) are taken over by another
//! after `reclaim_after` (see `qrlogin_core::events`). The `webhook-id` is
//! the event's own id, the same on every retry and instance.

use super::payload;
use super::signing::WebhookSecret;
use qrlogin_core::{Clock, Event, QueuedEvent, Store};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How often the queue is polled (never a blocking read: see the Redis
/// store's events module).
const POLL: Duration = Duration::from_millis(200);
/// Events taken per poll, and most held in memory at once.
const TAKE: usize = 100;
const MAX_HELD: usize = 2_000;
/// First retry delay; doubled per attempt up to [`MAX_BACKOFF_MS`].
const FIRST_BACKOFF_MS: u64 = 500;
const MAX_BACKOFF_MS: u64 = 10 * 60 * 1000;

/// What the task needs; built from the configuration by the builder.
pub struct Delivery {
    pub url: reqwest::Url,
    pub secret: WebhookSecret,
    pub timeout: Duration,
    pub max_age_ms: u64,
    pub reclaim_after_ms: u64,
}

/// One event this instance holds.
struct Held {
    receipt: String,
    event: Event,
    body: Vec<u8>,
    attempts: u32,
    next_at_ms: u64,
}

/// The URL as it may be logged: scheme, host, port and path (no
/// credentials, no query).
pub fn loggable(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    )
}

/// The delay before attempt `attempts + 1`: exponential, capped, with
/// ±25 % jitter so many instances do not retry in step.
fn backoff_ms(attempts: u32) -> u64 {
    let base = FIRST_BACKOFF_MS
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(MAX_BACKOFF_MS);
    let jitter = random_u64() % (base / 2 + 1);
    base - base / 4 + jitter
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Jitter and a consumer name: a failed read only makes them less random.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

fn consumer_name() -> String {
    format!("qrl-{}-{:08x}", std::process::id(), random_u64() as u32)
}

impl Delivery {
    /// Runs until the app is dropped (the builder aborts it).
    pub async fn run(self, store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
        let client = match reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("qrlogin-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhooks: cannot build the HTTP client");
                return;
            }
        };
        let consumer = consumer_name();
        tracing::info!(url = %loggable(&self.url), consumer, "webhooks on");
        // By local order of taking, so one login's events go out in order.
        let mut held: BTreeMap<u64, Held> = BTreeMap::new();
        let mut next_seq = 0u64;
        let mut last_hold_ms = clock.now_ms();
        let mut store_down = false;
        loop {
            let now = clock.now_ms();
            if held.len() < MAX_HELD {
                match store
                    .events_take(&consumer, TAKE, self.reclaim_after_ms, now)
                    .await
                {
                    Ok(got) => {
                        store_down = false;
                        let known: HashSet<String> =
                            held.values().map(|h| h.receipt.clone()).collect();
                        for QueuedEvent { receipt, event } in got {
                            if known.contains(&receipt) {
                                continue;
                            }
                            let body =
                                serde_json::to_vec(&payload::body(&event)).unwrap_or_default();
                            next_seq += 1;
                            held.insert(
                                next_seq,
                                Held {
                                    receipt,
                                    event,
                                    body,
                                    attempts: 0,
                                    next_at_ms: now,
                                },
                            );
                        }
                    }
                    Err(e) => {
                        if !store_down {
                            tracing::warn!(error = %e, "webhooks: cannot read the event queue");
                        }
                        store_down = true;
                    }
                }
            }
            if now.saturating_sub(last_hold_ms) >= self.reclaim_after_ms / 3 && !held.is_empty() {
                let receipts: Vec<String> = held.values().map(|h| h.receipt.clone()).collect();
                if store.events_hold(&consumer, &receipts, now).await.is_ok() {
                    last_hold_ms = now;
                }
            }
            self.round(&client, store.as_ref(), clock.as_ref(), &mut held)
                .await;
            tokio::time::sleep(POLL).await;
        }
    }

    /// Delivers what is due: logins side by side, each login's events one
    /// after another in order (a failure stops that login's row until its
    /// retry), then acknowledges.
    async fn round(
        &self,
        client: &reqwest::Client,
        store: &dyn Store,
        clock: &dyn Clock,
        held: &mut BTreeMap<u64, Held>,
    ) {
        let now = clock.now_ms();
        let mut done: Vec<u64> = Vec::new();
        // Too old: dropped.
        for (seq, h) in held.iter() {
            if now.saturating_sub(h.event.at_ms) > self.max_age_ms {
                metrics::counter!("qrlogin_webhooks_dropped_total", "type" => h.event.kind.as_str())
                    .increment(1);
                tracing::warn!(
                    webhook_id = %h.event.id,
                    r#type = h.event.kind.as_str(),
                    attempts = h.attempts,
                    "webhooks: event dropped after --webhook-max-age without a 2xx answer"
                );
                done.push(*seq);
            }
        }
        // Rows per login, in order; a row starts at its first event.
        let mut rows: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut blocked: HashSet<String> = HashSet::new();
        for (seq, h) in held.iter() {
            if done.contains(seq) {
                continue;
            }
            let lid = h.event.login_id.to_string();
            if blocked.contains(&lid) {
                continue;
            }
            if h.next_at_ms > now {
                // Later events of this login wait for it.
                blocked.insert(lid);
                continue;
            }
            rows.entry(lid).or_default().push(*seq);
        }
        let results = futures_util::future::join_all(rows.into_values().map(|row| {
            let held = &*held;
            async move {
                let mut out = Vec::new();
                for seq in row {
                    let Some(h) = held.get(&seq) else { continue };
                    let ok = self.post(client, h).await;
                    out.push((seq, ok));
                    if !ok {
                        break;
                    }
                }
                out
            }
        }))
        .await;
        for (seq, ok) in results.into_iter().flatten() {
            let Some(h) = held.get_mut(&seq) else {
                continue;
            };
            if ok {
                metrics::counter!("qrlogin_webhooks_delivered_total", "type" => h.event.kind.as_str())
                    .increment(1);
                done.push(seq);
            } else {
                metrics::counter!("qrlogin_webhooks_failed_total", "type" => h.event.kind.as_str())
                    .increment(1);
                h.attempts += 1;
                h.next_at_ms = now + backoff_ms(h.attempts);
            }
        }
        if done.is_empty() {
            return;
        }
        let receipts: Vec<String> = done
            .iter()
            .filter_map(|s| held.get(s).map(|h| h.receipt.clone()))
            .collect();
        match store.events_ack(&receipts).await {
            Ok(()) => {
                for s in done {
                    held.remove(&s);
                }
            }
            // Delivered but not acknowledged: kept and delivered again
            // (same id) until the store takes the acknowledgement.
            Err(e) => tracing::warn!(error = %e, "webhooks: cannot acknowledge events"),
        }
    }

    /// One signed POST; true on a 2xx answer.
    async fn post(&self, client: &reqwest::Client, h: &Held) -> bool {
        let ts = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)) as i64;
        let sig = self.secret.sign(&h.event.id, ts, &h.body);
        let res = client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &h.event.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(h.body.clone())
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                tracing::debug!(status = r.status().as_u16(), webhook_id = %h.event.id, "webhooks: receiver refused");
                false
            }
            Err(e) => {
                // reqwest's error names the URL: strip it (it may carry
                // credentials).
                tracing::debug!(error = %e.without_url(), webhook_id = %h.event.id, "webhooks: no answer");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for a in 1..40 {
            let b = backoff_ms(a);
            let base = (FIRST_BACKOFF_MS << (a - 1).min(20)).min(MAX_BACKOFF_MS);
            assert!(b >= base - base / 4 && b <= base + base / 4, "{a}: {b}");
        }
        let url: reqwest::Url = "https://user:pw@example.com:8443/hooks?token=x"
            .parse()
            .unwrap();
        assert_eq!(loggable(&url), "https://example.com:8443/hooks");
    }
}
