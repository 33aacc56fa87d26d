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
//!   subscribes everything again all the same (subscribing twice is a
//!   no-op), and only then asks every watcher to re-read.
//!
//! Until it has, the feed is not counted alive, so watchers' backstop
//! timers re-read on their own: a lost hint delays a wake-up, never loses
//! a login. A health check every few seconds PINGs every master (keeping
//! the feed alive while nothing happens) and asks the owners of a few
//! random slots whether this instance's channel there still has its
//! subscriber (`PUBSUB SHARDNUMSUB`): a node restart whose disconnection
//! was never reported (seen in repeated runs of the node-restart test) is
//! repaired the same way, within a few checks.

use crate::hints::{parse, HintTask, HINT_MESSAGES, HINT_MESSAGES_UNWATCHED};
use crate::route::{self, HintRoute};
use crate::{bounded, store_error};
use futures_util::{stream, StreamExt, TryStreamExt};
use qrlogin_core::{Notifier, StoreError};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{PushInfo, PushKind, Value};
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
    subscribe_all(&conn, &route, timeout).await?;
    notifier.mark_alive();
    Ok(HintTask(tokio::spawn(run(
        conn, route, notifier, rx, timeout,
    ))))
}

/// Subscribes every slot channel of `route` (each bounded by `timeout`).
async fn subscribe_all(
    conn: &ClusterConnection,
    route: &HintRoute,
    timeout: Duration,
) -> Result<(), StoreError> {
    stream::iter(route.channels())
        .map(|ch| {
            let mut c = conn.clone();
            async move { bounded(timeout, c.ssubscribe(ch)).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
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
    let mut health =
        tokio::time::interval_at(tokio::time::Instant::now() + HEALTH_EVERY, HEALTH_EVERY);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = rx.recv() => {
                let Some(push) = push else { return };
                match push.kind {
                    PushKind::SMessage => {
                        notifier.mark_alive();
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
                        let Some(ch) = channel_of(&push.data).filter(|c| route.owns(c)) else {
                            continue;
                        };
                        let slot = route::slot(ch.as_bytes());
                        tracing::info!(slot, "a hint slot moved; subscribing on its new owner");
                        notifier.mark_lost();
                        loop {
                            let mut c = conn.clone();
                            match bounded(timeout, c.ssubscribe(&ch)).await {
                                Ok(()) => break,
                                Err(e) => {
                                    tracing::debug!(error = %e, slot, "resubscribe failed; retrying");
                                    tokio::time::sleep(RETRY).await;
                                }
                            }
                        }
                        notifier.reread_matching(|id| route::login_slot(id) == slot);
                        notifier.mark_alive();
                    }
                    PushKind::Disconnection => {
                        tracing::warn!("a cluster node's hint connection dropped; resubscribing");
                        restore(&conn, &route, &notifier, timeout).await;
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
                    Ok(_) => notifier.mark_alive(),
                    Err(e) => tracing::warn!(error = %e, "a cluster master does not answer the hint health PING"),
                }
                if lost_somewhere(&conn, &route, timeout).await {
                    tracing::warn!("a hint slot has lost its subscription; resubscribing");
                    restore(&conn, &route, &notifier, timeout).await;
                }
            }
        }
    }
}

/// Subscribes everything again (retrying until it works), then asks every
/// watcher to re-read, since hints may have been lost meanwhile.
async fn restore(
    conn: &ClusterConnection,
    route: &HintRoute,
    notifier: &Notifier,
    timeout: Duration,
) {
    notifier.mark_lost();
    while let Err(e) = subscribe_all(conn, route, timeout).await {
        tracing::debug!(error = %e, "resubscribe failed; retrying");
        tokio::time::sleep(RETRY).await;
    }
    tracing::info!("hint subscriptions restored; asking watchers to re-read");
    notifier.reread_all();
    notifier.mark_alive();
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
        let Ok(Ok(reply)) = tokio::time::timeout(timeout, c.route_command(cmd, at)).await else {
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
