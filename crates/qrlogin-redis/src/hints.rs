//! The process's one subscription to its hint channel, on one Redis or
//! Sentinel (Redis Cluster: [`shard_hints`](crate::shard_hints)).
//!
//! Every transition script publishes a compact JSON hint
//! `{"id":"<login id>","v":<version>,"s":"<state>","uid":"..","un":"..","mr":1}`
//! (`uid`/`un` absent before a scan, `mr` unless the scan asked the phone
//! for the match code) to the channels of the instances that wait on the
//! login ([`route`](crate::route)). One background task per store holds
//! one pub/sub connection, subscribed to this instance's channel (and the
//! pre-routing [`HINT_CHANNEL`](crate::HINT_CHANNEL), for rolling
//! upgrades), and feeds each hint into the store's [`Notifier`], which wakes
//! only the watchers of that login.
//!
//! Pub/sub is a hint, not a log: messages published while the subscription
//! is down are lost. So after every resubscribe the task tells all watchers
//! to re-read ([`Notifier::reread_all`]); watchers also have a backstop
//! timer. A lost message can delay a wake-up, never lose a login.
//!
//! Where the subscription lives ([`Source`]):
//! * one Redis: that server;
//! * Sentinel: the master the command connection uses (looked up first if
//!   there is none), on every (re)subscribe.
//!   A failover ends the subscription as soon as the Sentinels announce the
//!   new master (`+switch-master`, see [`SentinelConn`]); the demoted
//!   master's pub/sub clients are also killed by the Sentinels, and the
//!   health PING notices a dead one. The next subscribe follows the new
//!   master. (A subscriber left on a replica would still hear hints, since
//!   `PUBLISH` is replicated; test `publish_on_the_master_reaches_replica_
//!   subscribers` checks that, but the store does not rely on it.)

use crate::conn::SentinelConn;
use crate::route::HintRoute;
use crate::{bounded, HINT_CHANNEL};
use futures_util::StreamExt;
use qrlogin_core::{Hint, LoginId, Notifier, State, StoreError, User};
use redis::aio::PubSub;
use redis::Client;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// First delay before resubscribing after a failure; doubled up to
/// [`MAX_BACKOFF`], reset after a successful subscribe.
const MIN_BACKOFF: Duration = Duration::from_millis(25);
/// Cap on the resubscribe delay, so recovery after an outage is quick.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often an idle subscription is PINGed, so a silently dead connection
/// (a half-open TCP connection, a failed-over proxy) is noticed.
const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// Prometheus counter: hint messages this instance's subscriber received.
/// Divided by the logins served, it is the wake-up fan-out per login
/// (issue 13: with one global channel it grows with the number of instances).
pub(crate) const HINT_MESSAGES: &str = "qrlogin_hint_messages_total";
/// Prometheus counter: of those, the hints for a login nobody waits on
/// here, i.e. work for logins this instance does not serve.
pub(crate) const HINT_MESSAGES_UNWATCHED: &str = "qrlogin_hint_messages_unwatched_total";

/// One hint message as published by the scripts.
#[derive(Debug, Deserialize)]
struct Message {
    id: String,
    v: u64,
    s: String,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    un: Option<String>,
    /// `1` when the scan asked the phone for the match code.
    #[serde(default)]
    mr: Option<u8>,
}

/// Parses a hint message; `None` for anything malformed (logged, ignored:
/// a bad hint must not stop the task).
pub(crate) fn parse(payload: &[u8]) -> Option<(LoginId, Hint)> {
    let msg: Message = serde_json::from_slice(payload).ok()?;
    let id: LoginId = msg.id.parse().ok()?;
    let state: State = msg.s.parse().ok()?;
    let user = msg.uid.map(|id| User {
        id,
        name: msg.un.unwrap_or_default(),
    });
    Some((
        id,
        Hint::Changed {
            version: msg.v,
            state,
            user,
            match_required: msg.mr == Some(1),
        },
    ))
}

/// Where to subscribe.
pub(crate) enum Source {
    /// One Redis.
    Single(Box<Client>),
    /// The master named by the Sentinels.
    Sentinel(SentinelConn),
}

impl Source {
    /// A pub/sub connection subscribed to this instance's hint channels.
    async fn subscribe(
        &mut self,
        route: &HintRoute,
        timeout: Duration,
    ) -> Result<PubSub, StoreError> {
        let client = match self {
            Source::Single(c) => (**c).clone(),
            Source::Sentinel(s) => bounded(timeout, s.master_client()).await?,
        };
        subscribe_on(&client, route, timeout).await
    }

    /// How many `timeout`s one [`Source::subscribe`] may take: two (ask
    /// the Sentinels, subscribe) with Sentinel.
    fn steps(&self) -> u32 {
        match self {
            Source::Single(_) => 1,
            Source::Sentinel(_) => 2,
        }
    }

    /// Changes when the subscription should move (Sentinel: a new master
    /// was announced); `None` for sources that never move by themselves.
    fn moves(&self) -> Option<watch::Receiver<u64>> {
        match self {
            Source::Sentinel(s) => Some(s.moves()),
            _ => None,
        }
    }
}

/// The subscriber task; aborted when dropped, i.e. when its store is.
pub(crate) struct HintTask(pub(crate) JoinHandle<()>);

impl Drop for HintTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the subscriber and returns once it is subscribed, so a watcher
/// that registers after `connect` cannot miss a hint. Bounded by `timeout`
/// per connect step (two with Sentinel, see [`Source::steps`]).
pub(crate) async fn start(
    source: Source,
    route: HintRoute,
    notifier: Notifier,
    timeout: Duration,
) -> Result<HintTask, StoreError> {
    start_with(source, route, notifier, timeout, HEALTH_EVERY).await
}

/// [`start`] with a chosen health-check interval (tests use a short one).
async fn start_with(
    source: Source,
    route: HintRoute,
    notifier: Notifier,
    timeout: Duration,
    health_every: Duration,
) -> Result<HintTask, StoreError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let start_timeout = timeout.saturating_mul(source.steps());
    let task = HintTask(tokio::spawn(run(
        source,
        route,
        notifier,
        timeout,
        health_every,
        ready_tx,
    )));
    match tokio::time::timeout(start_timeout, ready_rx).await {
        Ok(Ok(Ok(()))) => Ok(task),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err(StoreError::Unavailable(
            "hint subscriber stopped during start-up".into(),
        )),
        Err(_) => Err(StoreError::Unavailable(
            "timed out subscribing to hints".into(),
        )),
    }
}

async fn subscribe_on(
    client: &Client,
    route: &HintRoute,
    timeout: Duration,
) -> Result<PubSub, StoreError> {
    let mut channels = route.channels();
    channels.push(HINT_CHANNEL.to_string());
    bounded(timeout, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channels).await?;
        Ok(pubsub)
    })
    .await
}

async fn run(
    mut source: Source,
    route: HintRoute,
    notifier: Notifier,
    timeout: Duration,
    health_every: Duration,
    ready: oneshot::Sender<Result<(), StoreError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = MIN_BACKOFF;
    loop {
        // Taken before subscribing, so a move announced meanwhile is seen.
        let mut moves = source.moves();
        if let Some(m) = moves.as_mut() {
            m.mark_unchanged();
        }
        match source.subscribe(&route, timeout).await {
            Ok(pubsub) => {
                backoff = MIN_BACKOFF;
                match ready.take() {
                    Some(tx) => {
                        let _ = tx.send(Ok(()));
                    }
                    None => {
                        tracing::info!("hint subscription restored; asking watchers to re-read");
                        notifier.reread_all();
                    }
                }
                listen(pubsub, &notifier, timeout, health_every, moves).await;
                tracing::warn!("hint subscription lost; resubscribing");
                tokio::time::sleep(MIN_BACKOFF).await;
            }
            Err(e) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(e));
                    return;
                }
                tracing::debug!(error = %e, ?backoff, "hint subscription failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Completes when `moves` changes; never for `None` (or a closed channel).
async fn moved(moves: &mut Option<watch::Receiver<u64>>) {
    if let Some(m) = moves {
        if m.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// Delivers messages until the connection ends, stops answering PING, or
/// the source moves (a new Sentinel master).
async fn listen(
    pubsub: PubSub,
    notifier: &Notifier,
    timeout: Duration,
    health_every: Duration,
    mut moves: Option<watch::Receiver<u64>>,
) {
    let (mut sink, mut stream) = pubsub.split();
    notifier.mark_alive();
    let mut health =
        tokio::time::interval_at(tokio::time::Instant::now() + health_every, health_every);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => {
                    notifier.mark_alive();
                    metrics::counter!(HINT_MESSAGES).increment(1);
                    match parse(msg.get_payload_bytes()) {
                        Some((id, hint)) => {
                            if !notifier.notify(&id, hint) {
                                metrics::counter!(HINT_MESSAGES_UNWATCHED).increment(1);
                            }
                        }
                        None => tracing::warn!(channel = msg.get_channel_name(), "ignoring a malformed hint"),
                    }
                }
                None => return,
            },
            _ = moved(&mut moves) => {
                tracing::info!("the master moved; moving the hint subscription");
                return;
            }
            _ = health.tick() => {
                let pong = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    tracing::warn!("hint subscription does not answer PING");
                    return;
                }
                notifier.mark_alive();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qrlogin_testkit::RedisServer;

    async fn publish(server: &RedisServer, payload: &str) {
        publish_on(server, HINT_CHANNEL, payload).await
    }

    async fn publish_on(server: &RedisServer, channel: &str, payload: &str) {
        let mut c = Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut c)
            .await
            .unwrap();
    }

    fn hint(id: LoginId, v: u64) -> String {
        format!(r#"{{"id":"{id}","v":{v},"s":"scanned","uid":"a","un":"A"}}"#)
    }

    /// A subscriber on `server` (health checks every `health_every`) and a
    /// watcher registered for a fresh login id.
    async fn watching(
        server: &RedisServer,
        health_every: Duration,
    ) -> (HintTask, qrlogin_core::Registration, LoginId) {
        let (task, reg, id, _) = watching_on(server, health_every, HintRoute::new(false)).await;
        (task, reg, id)
    }

    /// [`watching`] with a chosen route, which it hands back.
    async fn watching_on(
        server: &RedisServer,
        health_every: Duration,
        route: HintRoute,
    ) -> (HintTask, qrlogin_core::Registration, LoginId, HintRoute) {
        let notifier = Notifier::remote();
        let client = Client::open(server.url()).unwrap();
        let task = start_with(
            Source::Single(Box::new(client)),
            route.clone(),
            notifier.clone(),
            Duration::from_millis(500),
            health_every,
        )
        .await
        .unwrap();
        let id = LoginId::random();
        (task, notifier.register(id), id, route)
    }

    #[tokio::test]
    async fn hears_its_own_channel_and_not_another_instances() {
        let server = RedisServer::start();
        let (_task, mut reg, id, route) =
            watching_on(&server, HEALTH_EVERY, HintRoute::new(false)).await;
        let other = HintRoute::new(false);
        publish_on(&server, &other.channel_for(&id), &hint(id, 2)).await;
        publish_on(&server, &route.channel_for(&id), &hint(id, 3)).await;
        // Only the second reached this instance: the first hint it sees is
        // version 3.
        assert!(matches!(
            next(&mut reg).await,
            Hint::Changed { version: 3, .. }
        ));
    }

    async fn next(reg: &mut qrlogin_core::Registration) -> Hint {
        tokio::time::timeout(Duration::from_secs(5), reg.next())
            .await
            .expect("a hint within 5 s")
    }

    #[tokio::test]
    async fn health_pings_keep_a_live_subscription() {
        let server = RedisServer::start();
        let (_task, mut reg, id) = watching(&server, Duration::from_millis(50)).await;
        // Twenty health checks: a PING that failed would resubscribe and
        // send a Reread.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let pending = tokio::time::timeout(Duration::from_millis(20), reg.next()).await;
        assert!(pending.is_err(), "subscription was re-made: {pending:?}");
        publish(&server, &hint(id, 2)).await;
        assert!(matches!(
            next(&mut reg).await,
            Hint::Changed { version: 2, .. }
        ));
    }

    #[tokio::test]
    async fn a_killed_subscription_is_restored_and_watchers_reread() {
        let server = RedisServer::start();
        let (_task, mut reg, id) = watching(&server, HEALTH_EVERY).await;
        let mut c = Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(killed, 1);
        assert_eq!(next(&mut reg).await, Hint::Reread);
        publish(&server, &hint(id, 3)).await;
        assert!(matches!(
            next(&mut reg).await,
            Hint::Changed { version: 3, .. }
        ));
    }

    #[tokio::test]
    async fn malformed_messages_do_not_stop_the_subscriber() {
        let server = RedisServer::start();
        let (_task, mut reg, id) = watching(&server, HEALTH_EVERY).await;
        publish(&server, "garbage").await;
        publish(&server, &hint(id, 5)).await;
        assert!(matches!(
            next(&mut reg).await,
            Hint::Changed { version: 5, .. }
        ));
    }

    #[test]
    fn parses_the_scripts_message_format() {
        let id = LoginId::random();
        let msg =
            format!(r#"{{"id":"{id}","v":3,"s":"approved","uid":"a\/b","un":"\u00c5lice \"x\""}}"#);
        assert_eq!(
            parse(msg.as_bytes()),
            Some((
                id,
                Hint::Changed {
                    version: 3,
                    state: State::Approved,
                    user: Some(User {
                        id: "a/b".into(),
                        name: "Ålice \"x\"".into()
                    }),
                    match_required: false,
                }
            ))
        );
        let msg = format!(r#"{{"s":"cancelled","v":2,"id":"{id}"}}"#);
        assert_eq!(
            parse(msg.as_bytes()),
            Some((
                id,
                Hint::Changed {
                    version: 2,
                    state: State::Cancelled,
                    user: None,
                    match_required: false,
                }
            ))
        );
    }

    #[test]
    fn ignores_malformed_messages() {
        for bad in [
            &b""[..],
            b"not json",
            b"{}",
            br#"{"id":"short","v":1,"s":"pending"}"#,
            br#"{"id":"AAAAAAAAAAAAAAAAAAAAAA","v":1,"s":"bogus"}"#,
            br#"{"id":"AAAAAAAAAAAAAAAAAAAAAA","v":-1,"s":"pending"}"#,
        ] {
            assert_eq!(parse(bad), None);
        }
    }
}
