//! Hints on Redis Cluster: sharded pub/sub, one channel per slot per
//! instance (see [`route`](crate::route) for why), heard through one
//! redis-rs cluster connection in RESP3 whose pushes come to this task.
//!
//! A sharded message stays in the shard (master and replicas) that runs the
//! script, so neither the cluster bus nor other instances carry it.
//!
//! What can take a subscription away, and what the task does:
//! * a slot migrates (resharding, `CLUSTER SETSLOT … NODE`): the old owner
//!   drops the slot's channels and says so with an unrequested
//!   `sunsubscribe`. The task subscribes again (redis-rs routes it to the
//!   new owner, following `MOVED`), then tells the watchers of that slot's
//!   logins to re-read, because a hint may have been missed meanwhile;
//! * a node's connection drops (restart, failover): redis-rs reconnects,
//!   refreshes its slot map and re-subscribes what it tracks; the task
//!   then asks all masters which of this instance's channels they carry
//!   (`PUBSUB SHARDCHANNELS`), subscribes only the missing ones, asks again
//!   until none is missing, and only then tells every watcher to re-read.
//!
//! Repairs run in tasks of their own, so hints from healthy nodes keep
//! flowing while a node is down. Until they are done the feed is not
//! counted alive, so watchers' backstop timers re-read on their own: a lost
//! hint delays a wake-up, never loses a login. A health check every few
//! seconds PINGs every master (keeping the feed alive while nothing
//! happens) and asks the owners of a few random slots whether this
//! instance's channel there still has its subscriber (`PUBSUB
//! SHARDNUMSUB`): a node restart whose disconnection was never reported
//! (seen in repeated runs of the node-restart test) is repaired the same
//! way, within a few checks.

use crate::hints::{parse, HintTask, HINT_MESSAGES, HINT_MESSAGES_UNWATCHED};
use crate::route::{self, HintRoute};
use crate::{bounded, store_error};
use futures_util::{stream, StreamExt};
use qrlogin_core::{Notifier, StoreError};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{PushInfo, PushKind, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How many subscribe commands are in flight at once when subscribing the
/// 16,384 channels (one command each: a sharded subscribe takes channels
/// of one slot only).
const IN_FLIGHT: usize = 256;
/// How often the masters are PINGed to prove the feed alive.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// Delay between attempts to restore a subscription.
const RETRY: Duration = Duration::from_millis(100);
/// Rounds at start-up (each retrying only the channels that failed)
/// before connecting is given up as unavailable.
const START_ROUNDS: usize = 5;
/// The longest pause between repair attempts (a node may be down a while).
const MAX_RETRY: Duration = Duration::from_secs(1);
/// Slots sampled per health check (8 of 16,384: with 3 masters a node
/// missing all its subscriptions is seen with probability 1 − (2/3)⁸ ≈ 96 %
/// per check; the cost is 8 small commands per instance every 5 s).
const SAMPLES: usize = 8;

/// Connects, subscribes all of this instance's sharded channels, and
/// starts the task; returns once subscribed, so a watcher that registers
/// afterwards cannot miss a hint.
pub(crate) async fn start(
    nodes: &[String],
    route: HintRoute,
    notifier: Notifier,
    timeout: Duration,
) -> Result<HintTask, StoreError> {
    let (tx, rx) = mpsc::unbounded_channel::<PushInfo>();
    let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(tx)
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .build()
        .map_err(store_error)?;
    let conn = bounded(timeout, client.get_async_connection()).await?;
    let mut missing = route.channels();
    for _ in 0..START_ROUNDS {
        missing = subscribe(&conn, missing, timeout).await;
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(RETRY).await;
    }
    if let Some(ch) = missing.first() {
        return Err(StoreError::Unavailable(format!(
            "{} hint channels (first {ch}) could not be subscribed",
            missing.len()
        )));
    }
    notifier.mark_alive();
    Ok(HintTask(tokio::spawn(run(
        conn, route, notifier, rx, timeout,
    ))))
}

/// Subscribes `channels` (each command bounded by `timeout`) and returns
/// the ones that failed. Callers retry only those: under load a few of
/// 16,384 commands time out, and starting over from the first channel on
/// every failure never finished (seen in a loaded CI run: a node restarted
/// but was never resubscribed).
async fn subscribe(
    conn: &ClusterConnection,
    channels: Vec<String>,
    timeout: Duration,
) -> Vec<String> {
    stream::iter(channels)
        .map(|ch| {
            let mut c = conn.clone();
            async move {
                match bounded(timeout, c.ssubscribe(&ch)).await {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::debug!(error = %e, channel = %ch, "hint subscribe failed");
                        Some(ch)
                    }
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(std::future::ready)
        .collect()
        .await
}

/// The channel name of a push's data (the first bulk string).
fn channel_of(data: &[Value]) -> Option<String> {
    match data.first() {
        Some(Value::BulkString(b)) => String::from_utf8(b.clone()).ok(),
        Some(Value::SimpleString(s)) => Some(s.clone()),
        _ => None,
    }
}

async fn run(
    conn: ClusterConnection,
    route: HintRoute,
    notifier: Notifier,
    mut rx: mpsc::UnboundedReceiver<PushInfo>,
    timeout: Duration,
) {
    let repairs = Repairs::new(conn.clone(), route.clone(), notifier.clone(), timeout);
    let mut health =
        tokio::time::interval_at(tokio::time::Instant::now() + HEALTH_EVERY, HEALTH_EVERY);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = rx.recv() => {
                let Some(push) = push else { return };
                match push.kind {
                    PushKind::SMessage => {
                        repairs.alive();
                        metrics::counter!(HINT_MESSAGES).increment(1);
                        let payload = match push.data.get(1) {
                            Some(Value::BulkString(b)) => Some(b.as_slice()),
                            _ => None,
                        };
                        match payload.and_then(parse) {
                            Some((id, hint)) => {
                                if !notifier.notify(&id, hint) {
                                    metrics::counter!(HINT_MESSAGES_UNWATCHED).increment(1);
                                }
                            }
                            None => tracing::warn!("ignoring a malformed sharded hint"),
                        }
                    }
                    PushKind::SUnsubscribe => {
                        // Unrequested (this task never unsubscribes): the
                        // slot moved to another node.
                        if let Some(ch) = channel_of(&push.data).filter(|c| route.owns(c)) {
                            repairs.slot_moved(ch);
                        }
                    }
                    PushKind::Disconnection => {
                        tracing::warn!("a cluster node's hint connection dropped; resubscribing");
                        repairs.restore();
                    }
                    _ => {}
                }
            }
            _ = health.tick() => {
                let mut c = conn.clone();
                let ping = c.route_command(
                    redis::cmd("PING"),
                    RoutingInfo::MultiNode((
                        MultipleNodeRoutingInfo::AllMasters,
                        Some(ResponsePolicy::AllSucceeded),
                    )),
                );
                match bounded(timeout, ping).await {
                    Ok(_) => repairs.alive(),
                    Err(e) => tracing::warn!(error = %e, "a cluster master does not answer the hint health PING"),
                }
                if lost_somewhere(&conn, &route, timeout).await {
                    tracing::warn!("a hint slot has lost its subscription; resubscribing");
                    repairs.restore();
                }
            }
        }
    }
}

/// Subscriptions being repaired, in tasks of their own so that hints from
/// the healthy nodes keep flowing meanwhile (a dead node can take minutes
/// to come back). While any repair runs the feed is not counted alive:
/// watchers' backstops re-read, since a hint may be lost.
#[derive(Clone)]
struct Repairs {
    conn: ClusterConnection,
    route: HintRoute,
    notifier: Notifier,
    timeout: Duration,
    /// Repairs running (a full restore counts one).
    pending: Arc<AtomicUsize>,
    /// A full restore is running; `again` asks it for one more round
    /// (another disconnection arrived meanwhile).
    restoring: Arc<AtomicBool>,
    again: Arc<AtomicBool>,
}

impl Repairs {
    fn new(
        conn: ClusterConnection,
        route: HintRoute,
        notifier: Notifier,
        timeout: Duration,
    ) -> Self {
        Repairs {
            conn,
            route,
            notifier,
            timeout,
            pending: Arc::new(AtomicUsize::new(0)),
            restoring: Arc::new(AtomicBool::new(false)),
            again: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The feed proved alive (a message, a pong): counted only when no
    /// subscription is being repaired.
    fn alive(&self) {
        if self.pending.load(Ordering::SeqCst) == 0 {
            self.notifier.mark_alive();
        }
    }

    fn begin(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.notifier.mark_lost();
    }

    fn end(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.notifier.mark_alive();
        }
    }

    /// One slot's channel was dropped by its old owner: subscribe it on the
    /// new one (redis-rs follows `MOVED`), then the watchers of that slot's
    /// logins re-read.
    fn slot_moved(&self, ch: String) {
        let slot = route::slot(ch.as_bytes());
        tracing::info!(slot, "a hint slot moved; subscribing on its new owner");
        self.begin();
        let this = self.clone();
        tokio::spawn(async move {
            let mut wait = RETRY;
            loop {
                let mut c = this.conn.clone();
                match bounded(this.timeout, c.ssubscribe(&ch)).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, slot, "resubscribe failed; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(MAX_RETRY);
                    }
                }
            }
            this.notifier
                .reread_matching(|id| route::login_slot(id) == slot);
            this.end();
        });
    }

    /// Makes sure every slot channel has its subscription again, then asks
    /// every watcher to re-read. One restore runs at a time; a request that
    /// arrives meanwhile makes it go round once more.
    fn restore(&self) {
        self.notifier.mark_lost();
        self.again.store(true, Ordering::SeqCst);
        if self.restoring.swap(true, Ordering::SeqCst) {
            return;
        }
        self.begin();
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                while this.again.swap(false, Ordering::SeqCst) {
                    this.resubscribe_missing().await;
                }
                this.restoring.store(false, Ordering::SeqCst);
                // A request between the last round and the line above
                // found `restoring` set and left it to this task.
                if !this.again.load(Ordering::SeqCst) || this.restoring.swap(true, Ordering::SeqCst)
                {
                    break;
                }
            }
            tracing::info!("hint subscriptions restored; asking watchers to re-read");
            this.notifier.reread_all();
            this.end();
        });
    }

    /// Until the masters list every channel of this instance: asks them
    /// which they carry, subscribes the rest. Only the lost channels are
    /// sent (redis-rs itself resubscribes what it tracks on a reconnect,
    /// and starting over with all 16,384 under load did not finish in a
    /// loaded CI run), and a channel counts only once its owner lists it.
    async fn resubscribe_missing(&self) {
        let mut wait = RETRY;
        loop {
            match missing(&self.conn, &self.route, self.timeout).await {
                Ok(m) if m.is_empty() => return,
                Ok(m) => {
                    tracing::debug!(missing = m.len(), "resubscribing lost hint channels");
                    let failed = subscribe(&self.conn, m, self.timeout).await;
                    if failed.is_empty() {
                        wait = RETRY;
                        continue;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot list the hint channels yet"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_RETRY);
        }
    }
}

/// This instance's slot channels that no master lists (`PUBSUB
/// SHARDCHANNELS` is per node; the answers of all masters are combined).
async fn missing(
    conn: &ClusterConnection,
    route: &HintRoute,
    timeout: Duration,
) -> Result<Vec<String>, StoreError> {
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("SHARDCHANNELS").arg(route.slot_pattern());
    let mut c = conn.clone();
    let listed = c.route_command(
        cmd,
        RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::CombineArrays),
        )),
    );
    let listed: Vec<String> = redis::from_redis_value(bounded(timeout, listed).await?)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let listed: HashSet<String> = listed.into_iter().collect();
    Ok(route
        .channels()
        .into_iter()
        .filter(|ch| !listed.contains(ch))
        .collect())
}

/// Whether the owner of one of [`SAMPLES`] random slots reports no
/// subscriber on this instance's channel there. A node that cannot be
/// asked counts as not lost (the PING reports it; the disconnection push
/// restores it).
async fn lost_somewhere(conn: &ClusterConnection, route: &HintRoute, timeout: Duration) -> bool {
    let seed = qrlogin_core::LoginId::random();
    for (i, b) in seed.as_bytes().chunks(2).take(SAMPLES).enumerate() {
        let slot =
            (usize::from(b[0]) << 8 | usize::from(*b.get(1).unwrap_or(&0)) ^ i) % route::SLOTS;
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("SHARDNUMSUB").arg(route.slot_channel(slot));
        let mut c = conn.clone();
        let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            slot as u16,
            SlotAddr::Master,
        )));
        let Ok(reply) = bounded(timeout, c.route_command(cmd, at)).await else {
            continue;
        };
        // [channel, count]
        let count = match &reply {
            Value::Array(v) => v.get(1).and_then(|n| match n {
                Value::Int(n) => Some(*n),
                _ => None,
            }),
            Value::Map(m) => m.first().and_then(|(_, n)| match n {
                Value::Int(n) => Some(*n),
                _ => None,
            }),
            _ => None,
        };
        if count == Some(0) {
            return true;
        }
    }
    false
}
