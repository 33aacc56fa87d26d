//! `redis+cluster://`: the whole store contract against a private
//! three-master Redis Cluster (one per case), and what is particular to a
//! cluster: logins spread over nodes, scripts reaching nodes that never had
//! them, hints crossing nodes, a dead node.

mod common;

use common::{no_hang, t_unavailable, unavailable};
use qrlogin_core::{Hint, LoginId, State, Store, Ttls};
use qrlogin_redis::{keys, RedisStore, HINT_CHANNEL};
use qrlogin_testkit::contract::{alice, expect_hint, new_login, next_hint, scanned_by, T0, TTLS};
use qrlogin_testkit::{RedisCluster, StoreUnderTest};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OP_TIMEOUT: Duration = Duration::from_secs(2);

async fn make(ttls: Ttls) -> StoreUnderTest {
    let cluster = RedisCluster::start();
    let store = RedisStore::connect(&cluster.url(), ttls, OP_TIMEOUT)
        .await
        .expect("connect to the private cluster");
    StoreUnderTest::new(Arc::new(store)).keep(cluster)
}

qrlogin_testkit::store_contract!(make);

async fn store(cluster: &RedisCluster, op_timeout: Duration) -> RedisStore {
    RedisStore::connect(&cluster.url(), TTLS, op_timeout)
        .await
        .expect("connect to the cluster")
}

/// A plain (non-cluster) connection to node `i`.
async fn raw(cluster: &RedisCluster, i: usize) -> redis::aio::MultiplexedConnection {
    common::raw(&cluster.node_url(i)).await
}

/// Creates pending logins until one lives on node `i` (its slot's master).
async fn login_on(s: &RedisStore, cluster: &RedisCluster, i: usize) -> LoginId {
    for _ in 0..200 {
        let (new, _) = new_login(None);
        let id = new.id;
        if cluster.node_of(&keys::login_key(&id)) == i {
            s.create(new, T0).await.expect("create");
            return id;
        }
    }
    panic!("no login id hashed to node {i} in 200 tries")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_spread_over_several_masters() {
    let cluster = RedisCluster::start();
    let s = store(&cluster, OP_TIMEOUT).await;
    for _ in 0..50 {
        let (new, _) = new_login(None);
        s.create(new, T0).await.expect("create");
    }
    let mut per_node = Vec::new();
    for i in 0..cluster.len() {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("qrl:*")
            .query_async(&mut raw(&cluster, i).await)
            .await
            .expect("KEYS");
        per_node.push(keys.len());
    }
    assert_eq!(per_node.iter().sum::<usize>(), 50, "{per_node:?}");
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() > 1,
        "all 50 logins landed on one master: {per_node:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_run_on_nodes_that_never_had_them() {
    let cluster = RedisCluster::start();
    let s = store(&cluster, OP_TIMEOUT).await;
    // Warm the caches, then empty them everywhere: every node now lacks
    // every script, as a node does after a restart or when it is new.
    let warm = login_on(&s, &cluster, 0).await;
    s.scan(&warm, &alice(), T0 + 1).await.expect("scan");
    for i in 0..cluster.len() {
        let mut c = raw(&cluster, i).await;
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut c)
            .await
            .expect("SCRIPT FLUSH");
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut c)
            .await
            .expect("CONFIG RESETSTAT");
    }
    for i in 0..cluster.len() {
        let id = login_on(&s, &cluster, i).await;
        let rec = s.scan(&id, &alice(), T0 + 1).await.expect("scan");
        assert_eq!(rec.state, State::Scanned);
        // The same user again: idempotent, and the script is cached now.
        let rec = s.scan(&id, &alice(), T0 + 2).await.expect("rescan");
        assert_eq!(rec.state, State::Scanned);
        let rec = s.approve(&id, &alice().id, T0 + 3).await.expect("approve");
        assert_eq!(rec.state, State::Approved);
        // The first scan and the approve found no script on node i
        // (EVALSHA answered NOSCRIPT) and were sent again as EVAL, which
        // cached them there; the rescan's EVALSHA found it.
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut raw(&cluster, i).await)
            .await
            .expect("INFO");
        let calls = |cmd: &str| -> u64 {
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let failed = |cmd: &str| -> u64 {
            stats
                .lines()
                .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
                .and_then(|l| l.split("failed_calls=").nth(1))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        assert_eq!(calls("eval"), 2, "node {i}: {stats}");
        assert_eq!(failed("eval"), 0, "node {i}: {stats}");
        assert_eq!(calls("evalsha"), 3, "node {i}: {stats}");
        assert_eq!(failed("evalsha"), 2, "node {i}: {stats}");
    }
}

/// The running nodes that hold a subscription to the hint channel
/// (`PUBSUB NUMSUB` is per node).
async fn subscribed_nodes(cluster: &RedisCluster, skip: Option<usize>) -> Vec<usize> {
    let mut subscribed = Vec::new();
    for i in (0..cluster.len()).filter(|i| Some(*i) != skip) {
        let numsub: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(HINT_CHANNEL)
            .query_async(&mut raw(cluster, i).await)
            .await
            .expect("PUBSUB NUMSUB");
        if numsub.1 > 0 {
            subscribed.push(i);
        }
    }
    subscribed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_cross_nodes() {
    let cluster = RedisCluster::start();
    let s = store(&cluster, OP_TIMEOUT).await;
    let subscribed = subscribed_nodes(&cluster, None).await;
    assert_eq!(subscribed.len(), 1, "one subscription: {subscribed:?}");
    let a = subscribed[0];
    // Every other node's transitions publish there.
    for b in (0..cluster.len()).filter(|&b| b != a) {
        let id = login_on(&s, &cluster, b).await;
        let mut reg = s.notifier().register(id);
        s.scan(&id, &alice(), T0 + 1).await.expect("scan");
        expect_hint(&mut reg, scanned_by(alice())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_gives_fast_errors_and_the_store_recovers() {
    let mut cluster = RedisCluster::start();
    let s = store(&cluster, Duration::from_millis(500)).await;
    let victim = 1;
    let id = login_on(&s, &cluster, victim).await;
    cluster.node(victim).kill();

    // Calls on the dead node's slots fail (fast: bounded by the op
    // timeout), and nothing panics.
    unavailable(
        "get on a dead node",
        no_hang("get on a dead node", s.get(&id, T0 + 1)).await,
    );
    t_unavailable(
        "scan on a dead node",
        no_hang("scan on a dead node", s.scan(&id, &alice(), T0 + 1)).await,
    );

    // Back (empty, same identity): the same store works again by itself,
    // hints included.
    cluster.restart_node(victim);
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        let (new, _) = new_login(None);
        let id = new.id;
        match no_hang("create after the restart", s.create(new, T0)).await {
            Ok(_) if cluster.node_of(&keys::login_key(&id)) == victim => break id,
            Ok(_) => continue,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not recover within 15 s: {e:?}"),
        }
    };
    let mut reg = s.notifier().register(id);
    s.scan(&id, &alice(), T0 + 1)
        .await
        .expect("scan after the restart");
    expect_hint(&mut reg, scanned_by(alice())).await;
}

/// When the node holding the hint subscription dies, the subscription moves
/// to another seed node (and tells watchers to re-read, since hints sent
/// meanwhile are lost); with the cluster whole again, hints flow through the
/// new node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hint_subscription_moves_off_a_dead_node() {
    let mut cluster = RedisCluster::start();
    let s = store(&cluster, Duration::from_millis(500)).await;
    let subscribed = subscribed_nodes(&cluster, None).await;
    assert_eq!(subscribed.len(), 1, "one subscription: {subscribed:?}");
    let a = subscribed[0];
    let mut watcher = s.notifier().register(LoginId::random());

    cluster.node(a).kill();
    assert_eq!(next_hint(&mut watcher).await, Hint::Reread);
    let deadline = Instant::now() + Duration::from_secs(10);
    let moved_to = loop {
        let now_on = subscribed_nodes(&cluster, Some(a)).await;
        if now_on.len() == 1 {
            break now_on[0];
        }
        assert!(
            Instant::now() < deadline,
            "the subscription did not move off node {a}: {now_on:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    cluster.restart_node(a);
    // A transition on the restarted node (its slots are empty now) reaches
    // the watcher through the subscription's new node.
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        match no_hang("create after the restart", async {
            let (new, _) = new_login(None);
            let id = new.id;
            if cluster.node_of(&keys::login_key(&id)) != a {
                return Ok(None);
            }
            s.create(new, T0).await.map(|_| Some(id))
        })
        .await
        {
            Ok(Some(id)) => break id,
            Ok(None) => continue,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not recover within 15 s: {e:?}"),
        }
    };
    let mut reg = s.notifier().register(id);
    s.scan(&id, &alice(), T0 + 1).await.expect("scan");
    expect_hint(&mut reg, scanned_by(alice())).await;
    assert_eq!(
        subscribed_nodes(&cluster, None).await,
        vec![moved_to],
        "the hint came through the node the subscription moved to"
    );
}

/// `--redis-min-replicas 1` on this cluster, which has no replicas: the
/// `WAIT` pipelined behind redeem goes to the node owning the login's slot
/// and answers 0, so redeem is Unavailable quickly (about a third of the op
/// timeout), the login stays consumed and no session is left; without the
/// option the same cluster redeems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_replicas_without_replicas_is_unavailable_quickly() {
    let cluster = RedisCluster::start();
    let s = store(&cluster, OP_TIMEOUT).await.with_min_replicas(1);
    for _ in 0..3 {
        // Several logins: several slots, likely on several nodes.
        let (new, secret) = new_login(None);
        let id = new.id;
        s.create(new, T0).await.expect("create");
        s.scan(&id, &alice(), T0 + 1).await.expect("scan");
        s.approve(&id, &alice().id, T0 + 2).await.expect("approve");
        let token = qrlogin_core::SessionToken::new_for(id);
        let started = Instant::now();
        let r = no_hang("redeem", s.redeem(&id, &secret.hash(), &token, T0 + 3)).await;
        t_unavailable("redeem with no replica", r);
        assert!(
            started.elapsed() < OP_TIMEOUT,
            "not quick: {:?}",
            started.elapsed()
        );
        assert_eq!(
            s.get(&id, T0 + 4).await.expect("get").map(|r| r.state),
            Some(State::Consumed)
        );
        assert_eq!(s.session(&token.session_ref(), T0 + 4).await, Ok(None));
    }
    unavailable(
        "revoke-all with no replica",
        s.revoke_user_sessions(&alice().id, T0 + 5).await,
    );
    let plain = store(&cluster, OP_TIMEOUT).await;
    let (new, secret) = new_login(None);
    let id = new.id;
    plain.create(new, T0).await.expect("create");
    plain.scan(&id, &alice(), T0 + 1).await.expect("scan");
    plain
        .approve(&id, &alice().id, T0 + 2)
        .await
        .expect("approve");
    let token = qrlogin_core::SessionToken::new_for(id);
    assert_eq!(
        plain.redeem(&id, &secret.hash(), &token, T0 + 3).await,
        Ok(alice())
    );
}
