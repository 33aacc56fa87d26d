//! `redis+cluster://`: the whole store contract against a private
//! three-master Redis Cluster (one per case), and what is particular to a
//! cluster: logins spread over nodes, scripts reaching nodes that never had
//! them, sharded hints routed to the waiting instances (across a slot
//! migration and a node restart), a dead node.

mod common;

use common::{no_hang, t_unavailable, unavailable};
use qrlogin_core::{Hint, LoginId, State, Store, Ttls};
use qrlogin_redis::{keys, RedisStore};
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

/// The store's own log (hint subscriptions lost and restored) in the
/// test's output, which is shown when it fails: a flaky recovery is
/// diagnosable from one CI log.
fn log_to_test_output() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("qrlogin_redis=debug,redis=info")
        .try_init();
}

async fn store(cluster: &RedisCluster, op_timeout: Duration) -> RedisStore {
    log_to_test_output();
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

/// The sharded hint channels node `i` has subscribers for, and the classic
/// channels (`PUBSUB` is per node).
async fn channels_on(cluster: &RedisCluster, i: usize) -> (Vec<String>, Vec<String>) {
    let mut c = raw(cluster, i).await;
    let sharded: Vec<String> = redis::cmd("PUBSUB")
        .arg("SHARDCHANNELS")
        .arg("qrl:h:*")
        .query_async(&mut c)
        .await
        .expect("PUBSUB SHARDCHANNELS");
    let classic: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(&mut c)
        .await
        .expect("PUBSUB CHANNELS");
    (sharded, classic)
}

/// Waits (up to 15 s) until node `i` again carries a hint channel for
/// every slot it owns, i.e. the store's subscriptions there are restored
/// after the node came back. Until then its transitions' hints are lost
/// and watchers rely on the re-read the store sends once restored.
async fn wait_resubscribed(cluster: &RedisCluster, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (sharded, _) = channels_on(cluster, i).await;
        if sharded.len() == slots_of(cluster, i) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {i} has {} channels",
            sharded.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many slots node `i` owns, by its own `CLUSTER NODES` line.
fn slots_of(cluster: &RedisCluster, i: usize) -> usize {
    let nodes = qrlogin_testkit::redis_cli(cluster.ports()[i], &["CLUSTER", "NODES"]);
    let me = nodes
        .lines()
        .find(|l| l.contains("myself"))
        .expect("a myself line");
    me.split_whitespace()
        .skip(8)
        .filter(|r| !r.starts_with('['))
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

/// Hints are sharded: each node carries this instance's channels for
/// exactly the slots it owns (so a script's SPUBLISH stays on its node) and
/// no classic subscription at all (a classic PUBLISH would cross the
/// cluster bus to every node); every node's transitions reach the creator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_are_sharded_by_slot_and_reach_the_creator() {
    let cluster = RedisCluster::start();
    let s = store(&cluster, OP_TIMEOUT).await;
    let mut total = 0;
    for i in 0..cluster.len() {
        let (sharded, classic) = channels_on(&cluster, i).await;
        assert_eq!(sharded.len(), slots_of(&cluster, i), "node {i}");
        assert!(classic.is_empty(), "node {i}: classic channels {classic:?}");
        total += sharded.len();
    }
    assert_eq!(total, 16384);
    for b in 0..cluster.len() {
        let id = login_on(&s, &cluster, b).await;
        let mut reg = s.notifier().register(id);
        s.scan(&id, &alice(), T0 + 1).await.expect("scan");
        expect_hint(&mut reg, scanned_by(alice())).await;
    }
}

/// A second instance that waits on a login it did not create hears its
/// hints once it has opened the wait (get_watched); the creator and a third
/// instance hear nothing of it any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_reach_the_instances_that_wait_and_no_other() {
    let cluster = RedisCluster::start();
    let (a, b, c) = (
        store(&cluster, OP_TIMEOUT).await,
        store(&cluster, OP_TIMEOUT).await,
        store(&cluster, OP_TIMEOUT).await,
    );
    let (new, _) = new_login(None);
    let id = new.id;
    a.create(new, T0).await.expect("create on A");
    let mut on_b = b.notifier().register(id);
    b.get_watched(&id, T0).await.expect("watch").expect("login");
    let mut on_a = a.notifier().register(id);
    let mut on_c = c.notifier().register(id);
    c.scan(&id, &alice(), T0 + 1).await.expect("scan on C");
    expect_hint(&mut on_b, scanned_by(alice())).await;
    for (name, reg) in [("A", &mut on_a), ("C", &mut on_c)] {
        let heard = tokio::time::timeout(Duration::from_millis(300), reg.next()).await;
        assert!(heard.is_err(), "{name} does not wait, yet got {heard:?}");
    }
}

/// Moves `slot` from node `from` to node `to` the way `redis-cli --cluster
/// reshard` does: importing/migrating, MIGRATE every key, then the new
/// owner announced to every node.
fn migrate_slot(cluster: &RedisCluster, slot: u16, from: usize, to: usize) {
    let ports = cluster.ports();
    let id_of = |i: usize| {
        qrlogin_testkit::redis_cli(ports[i], &["CLUSTER", "MYID"])
            .trim()
            .to_string()
    };
    let (src, dst) = (id_of(from), id_of(to));
    let slot_s = slot.to_string();
    let ok = |out: String| assert!(out.trim() == "OK", "{out}");
    ok(qrlogin_testkit::redis_cli(
        ports[to],
        &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src],
    ));
    ok(qrlogin_testkit::redis_cli(
        ports[from],
        &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst],
    ));
    loop {
        let keys =
            qrlogin_testkit::redis_cli(ports[from], &["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"]);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        if keys.is_empty() {
            break;
        }
        let port_s = ports[to].to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port_s, "", "0", "5000", "KEYS"];
        args.extend(keys);
        ok(qrlogin_testkit::redis_cli(ports[from], &args));
    }
    for &p in &ports {
        ok(qrlogin_testkit::redis_cli(
            p,
            &["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst],
        ));
    }
}

/// After the login's slot migrates to another node, its hints still reach
/// the instance that waits on it (B, which opened its wait after A created
/// the login, so A hears no more of it): the old node dropped the
/// slot's channels (an unrequested sunsubscribe), each instance subscribed
/// them again on the new owner and had the slot's watchers re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_follow_a_slot_migration() {
    let cluster = RedisCluster::start();
    let (a, b) = (
        store(&cluster, OP_TIMEOUT).await,
        store(&cluster, OP_TIMEOUT).await,
    );
    let from = 0;
    let id = login_on(&a, &cluster, from).await;
    let mut on_a = a.notifier().register(id);
    let mut on_b = b.notifier().register(id);
    b.get_watched(&id, T0).await.expect("watch").expect("login");
    let slot: u16 = qrlogin_testkit::redis_cli(
        cluster.ports()[0],
        &["CLUSTER", "KEYSLOT", &keys::login_key(&id)],
    )
    .trim()
    .parse()
    .expect("a slot");
    let to = 1;
    migrate_slot(&cluster, slot, from, to);
    assert_eq!(cluster.node_of_slot(slot), to);
    // Each instance re-subscribed the slot's channel on the new owner and
    // told the slot's watchers to re-read.
    assert_eq!(next_hint(&mut on_a).await, Hint::Reread);
    assert_eq!(next_hint(&mut on_b).await, Hint::Reread);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (sharded, _) = channels_on(&cluster, to).await;
        let here = [a.hint_channel_for(&id), b.hint_channel_for(&id)]
            .iter()
            .all(|ch| sharded.contains(ch));
        if here {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot's channels did not move to node {to}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (left, _) = channels_on(&cluster, from).await;
    assert!(
        !left.contains(&a.hint_channel_for(&id)),
        "still on the old owner"
    );
    // The transition now runs on the new owner and reaches B only.
    a.scan(&id, &alice(), T0 + 1)
        .await
        .expect("scan after the move");
    expect_hint(&mut on_b, scanned_by(alice())).await;
    let heard = tokio::time::timeout(Duration::from_millis(300), on_a.next()).await;
    assert!(heard.is_err(), "the hints moved to B, yet A got {heard:?}");
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
    // Hints from that node flow once the store has subscribed there again
    // (hints_resume_after_a_node_restart checks the re-read meanwhile).
    wait_resubscribed(&cluster, victim).await;
    let mut reg = s.notifier().register(id);
    s.scan(&id, &alice(), T0 + 1)
        .await
        .expect("scan after the restart");
    expect_hint(&mut reg, scanned_by(alice())).await;
}

/// While a node is down its subscriptions are repaired beside the feed,
/// not in its way: hints from the other nodes still arrive at once, the
/// feed is not counted reliable meanwhile (so watchers' backstops re-read),
/// and it is again once the node is back and resubscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_from_live_nodes_flow_while_a_node_is_down() {
    let mut cluster = RedisCluster::start();
    let s = store(&cluster, Duration::from_millis(500)).await;
    let (live, dead) = (0, 2);
    let id = login_on(&s, &cluster, live).await;
    let mut reg = s.notifier().register(id);
    cluster.node(dead).kill();
    let window = Duration::from_secs(60);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.notifier().reliable_within(window) {
        assert!(
            Instant::now() < deadline,
            "the dead node's lost subscriptions were never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.scan(&id, &alice(), T0 + 1)
        .await
        .expect("scan on a live node");
    expect_hint(&mut reg, scanned_by(alice())).await;
    assert!(
        !s.notifier().reliable_within(window),
        "a hint from a live node must not count the feed whole while a node is down"
    );
    cluster.restart_node(dead);
    wait_resubscribed(&cluster, dead).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !s.notifier().reliable_within(window) {
        assert!(
            Instant::now() < deadline,
            "the feed never became reliable again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The index is written by its own pipeline on a cluster (another slot
/// than the login's): pruned there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_index_keeps_only_sessions_that_can_be_live() {
    let cluster = RedisCluster::start();
    let s = store(&cluster, OP_TIMEOUT).await;
    let key = keys::user_sessions_key("alice");
    common::index_keeps_only_live_sessions(&s, raw(&cluster, cluster.node_of(&key)).await).await;
}

/// When a node dies and comes back (empty, same slots), the instance
/// subscribes its channels there again and tells every watcher to re-read
/// (hints sent meanwhile are lost); then hints from that node flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_resume_after_a_node_restart() {
    let mut cluster = RedisCluster::start();
    let s = store(&cluster, Duration::from_millis(500)).await;
    let a = 1;
    let mut watcher = s.notifier().register(LoginId::random());
    cluster.node(a).kill();
    cluster.restart_node(a);
    assert_eq!(next_hint(&mut watcher).await, Hint::Reread);
    wait_resubscribed(&cluster, a).await;
    let id = login_on(&s, &cluster, a).await;
    let mut reg = s.notifier().register(id);
    s.scan(&id, &alice(), T0 + 1).await.expect("scan");
    expect_hint(&mut reg, scanned_by(alice())).await;
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
