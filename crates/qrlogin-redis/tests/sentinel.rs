//! `redis+sentinel://`: the whole store contract against a private master +
//! replica + Sentinel (one per case), and what is particular to Sentinel:
//! a login finished across a failover by the same store object, writes
//! that stay on the new master, a hung Sentinel, a dead master, the `db`
//! option.

mod common;

use common::{no_hang, t_unavailable, unavailable};
use futures_util::StreamExt;
use qrlogin_core::{Hint, LoginId, State, Store, StoreError, TransitionError, Ttls};
use qrlogin_redis::{keys, RedisStore, HINT_CHANNEL};
use qrlogin_testkit::contract::{alice, new_login, next_hint, T0, TTLS};
use qrlogin_testkit::{RedisSentinel, StoreUnderTest};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

const OP_TIMEOUT: Duration = Duration::from_secs(2);

async fn make(ttls: Ttls) -> StoreUnderTest {
    let setup = RedisSentinel::start();
    let store = RedisStore::connect(&setup.url(), ttls, OP_TIMEOUT)
        .await
        .expect("connect through the private sentinel");
    StoreUnderTest::new(Arc::new(store)).keep(setup)
}

qrlogin_testkit::store_contract!(make);

async fn raw(port: u16) -> redis::aio::MultiplexedConnection {
    common::raw(&format!("redis://127.0.0.1:{port}")).await
}

/// Retries `op` while it fails with `Unavailable` (the store is finding
/// the new master), up to 15 s; any other outcome is returned.
async fn through_failover<T, Fut>(what: &str, mut op: impl FnMut() -> Fut) -> T
where
    T: std::fmt::Debug,
    Fut: Future<Output = Result<T, TransitionError>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match no_hang(what, op()).await {
            Ok(v) => return v,
            Err(TransitionError::Store(StoreError::Unavailable(_)))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

/// The store through `setup`'s Sentinels, with the service's default 500 ms
/// operation timeout.
async fn store(setup: &RedisSentinel) -> RedisStore {
    RedisStore::connect(&setup.url(), TTLS, Duration::from_millis(500))
        .await
        .expect("connect")
}

/// Whether login `id` is on the server behind `c`.
async fn on_new_master(c: &mut redis::aio::MultiplexedConnection, id: &LoginId) -> bool {
    let got: Option<String> = redis::cmd("GET")
        .arg(keys::login_key(id))
        .query_async(c)
        .await
        .expect("GET on the new master");
    got.is_some()
}

/// Creates logins through `s` until one lands on the server behind `c` (the
/// new master), failing after 15 s.
async fn until_a_create_lands_on(s: &RedisStore, c: &mut redis::aio::MultiplexedConnection) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (new, _) = new_login(None);
        let id = new.id;
        if no_hang("create after the failover", s.create(new, T0))
            .await
            .is_ok()
            && on_new_master(c, &id).await
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "15 s after the failover the store still writes to the old master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_finishes_across_a_failover() {
    let setup = RedisSentinel::start();
    let old_master = setup.master_port();
    let s = store(&setup).await;
    let (new, secret) = new_login(None);
    let id = new.id;
    s.create(new, T0).await.expect("create");
    s.scan(&id, &alice(), T0 + 1).await.expect("scan");
    // The replica has the scan before it is promoted (replication is
    // asynchronous; a failover may lose the last writes, which is Redis's
    // trade-off, not the store's).
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut raw(old_master).await)
        .await
        .expect("WAIT");
    assert_eq!(acked, 1, "the replica did not acknowledge the scan");
    let mut reg = s.notifier().register(id);

    let new_master = setup.failover();
    assert_ne!(new_master, old_master);
    // The failover is complete when the old master is a replica (writes
    // sent to it in between would be lost; closing that window is
    // `writes_follow_the_switch_not_just_errors`' subject).
    setup.wait_demoted(old_master);

    // The same store object finishes the login on the new master.
    let alice_id = alice().id;
    let rec = through_failover("approve", || s.approve(&id, &alice_id, T0 + 2)).await;
    assert_eq!(rec.state, State::Approved);
    let token = qrlogin_core::SessionToken::new_for(id);
    let hash = secret.hash();
    let user = through_failover("redeem", || s.redeem(&id, &hash, &token, T0 + 3)).await;
    assert_eq!(user, alice());
    let session = s
        .session(&token.session_ref(), T0 + 4)
        .await
        .expect("session");
    assert!(session.is_some());
    // The login lives on the new master now.
    let on_new: Option<String> = redis::cmd("GET")
        .arg(keys::login_key(&id))
        .query_async(&mut raw(new_master).await)
        .await
        .expect("GET on the new master");
    assert!(on_new.is_some_and(|j| j.contains("consumed")));

    // The hint subscription followed the master: the watcher registered
    // before the failover hears of the redeem (after a re-read request for
    // the time its subscription was down).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match next_hint(&mut reg).await {
            Hint::Changed {
                state: State::Consumed,
                ..
            } => break,
            other => assert!(
                Instant::now() < deadline,
                "no consumed hint; last {other:?}"
            ),
        }
    }
}

/// After a failover, the old master accepts writes until the Sentinels
/// demote it (here: never, see `start_with_stuck_master`), and such writes
/// are lost. The store follows the Sentinels' `+switch-master`
/// announcement, so its writes go to the new master although the old
/// connection never fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_the_switch_not_just_errors() {
    let setup = RedisSentinel::start_with_stuck_master();
    let old_master = setup.master_port();
    let s = store(&setup).await;
    let (new, _) = new_login(None);
    s.create(new, T0).await.expect("create before the failover");
    let new_master = setup.failover();
    assert!(
        redis_cli_role(old_master).starts_with("master"),
        "the old master was demoted after all"
    );
    let mut c = raw(new_master).await;
    until_a_create_lands_on(&s, &mut c).await;
}

/// A stuck old master, two Sentinels: once a create has landed on the new
/// master, every following one does too. The store neither flips back to
/// the old master (which still says it is master) when a lookup races the
/// switch, nor when a Sentinel that has not heard of the switch yet names
/// the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_every_create_lands_on_the_new_master() {
    let setup = RedisSentinel::start_with_stuck_master_and_sentinels(2);
    let old_master = setup.master_port();
    let s = store(&setup).await;
    let (new, _) = new_login(None);
    s.create(new, T0).await.expect("create before the failover");
    let new_master = setup.failover();
    assert_ne!(new_master, old_master);
    let mut c = raw(new_master).await;
    until_a_create_lands_on(&s, &mut c).await;
    for i in 0..10 {
        let (new, _) = new_login(None);
        let id = new.id;
        no_hang("create", s.create(new, T0))
            .await
            .unwrap_or_else(|e| panic!("create #{i} after the switch: {e:?}"));
        assert!(
            on_new_master(&mut c, &id).await,
            "create #{i} after the switch did not land on the new master"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first-listed Sentinel is hung (SIGSTOP: it accepts connections but
/// never answers). With the default 500 ms op timeout the store still
/// connects and serves a whole login, and after its master connection is
/// killed it finds the master again (each lookup asks all Sentinels at
/// once, so the hung one costs nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_first_sentinel_does_not_keep_the_store_down() {
    let mut setup = RedisSentinel::start_with_sentinels(2);
    setup.freeze_sentinel(0);
    let s = no_hang(
        "connect with the first sentinel hung",
        RedisStore::connect(&setup.url(), TTLS, Duration::from_millis(500)),
    )
    .await
    .expect("connect with the first sentinel hung");
    let (new, secret) = new_login(None);
    let id = new.id;
    s.create(new, T0).await.expect("create");
    s.scan(&id, &alice(), T0 + 1).await.expect("scan");
    let rec = s.approve(&id, &alice().id, T0 + 2).await.expect("approve");
    assert_eq!(rec.state, State::Approved);
    let token = qrlogin_core::SessionToken::new_for(id);
    let user = s
        .redeem(&id, &secret.hash(), &token, T0 + 3)
        .await
        .expect("redeem");
    assert_eq!(user, alice());
    assert!(s
        .session(&token.session_ref(), T0 + 4)
        .await
        .expect("session")
        .is_some());

    // Cut the store's master connections: the next operations must look
    // the master up again, each within the op timeout.
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut raw(setup.master_port()).await)
        .await
        .expect("CLIENT KILL");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match no_hang("get after the kill", s.get(&id, T0 + 5)).await {
            Ok(got) => {
                assert!(got.is_some_and(|r| r.state == State::Consumed));
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "no lookup succeeded within 15 s with the first sentinel hung: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn redis_cli_role(port: u16) -> String {
    qrlogin_testkit::redis_cli(port, &["ROLE"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_master_gives_fast_errors_and_the_store_recovers() {
    let mut setup = RedisSentinel::start();
    let master = setup.master_port();
    let s = store(&setup).await;
    let (new, _) = new_login(None);
    let id = new.id;
    s.create(new, T0).await.expect("create");

    // The Sentinel does not fail over by itself in these tests, so the
    // master stays dead: every call fails, bounded by the op timeout.
    setup.server(master).kill();
    for _ in 0..3 {
        unavailable(
            "get with a dead master",
            no_hang("get with a dead master", s.get(&id, T0 + 1)).await,
        );
        t_unavailable(
            "scan with a dead master",
            no_hang("scan with a dead master", s.scan(&id, &alice(), T0 + 1)).await,
        );
        let ping = no_hang("ping with a dead master", s.ping()).await;
        assert!(matches!(ping, Err(StoreError::Unavailable(_))), "{ping:?}");
    }

    // The master comes back (empty): the same store recovers by itself.
    setup.server(master).restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (new, _) = new_login(None);
        match no_hang("create after the restart", s.create(new, T0)).await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the store did not recover within 15 s: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_db_option_selects_the_masters_database() {
    let setup = RedisSentinel::start();
    let url = format!("{}?db=3", setup.url());
    let s = RedisStore::connect(&url, TTLS, OP_TIMEOUT)
        .await
        .expect("connect");
    let (new, _) = new_login(None);
    let id = new.id;
    s.create(new, T0).await.expect("create");
    let mut c = raw(setup.master_port()).await;
    let in_db0: bool = redis::cmd("EXISTS")
        .arg(keys::login_key(&id))
        .query_async(&mut c)
        .await
        .expect("EXISTS");
    let _: () = redis::cmd("SELECT")
        .arg(3)
        .query_async(&mut c)
        .await
        .expect("SELECT");
    let in_db3: bool = redis::cmd("EXISTS")
        .arg(keys::login_key(&id))
        .query_async(&mut c)
        .await
        .expect("EXISTS");
    assert!(!in_db0 && in_db3, "db0: {in_db0}, db3: {in_db3}");
    assert!(s.get(&id, T0 + 1).await.expect("get").is_some());
}

/// Not the store's path (its subscription follows the master), but what
/// its design leans on, checked rather than assumed: a hint published on
/// the master also reaches a subscriber on the replica (PUBLISH is
/// replicated), so a subscription left on a demoted master that was not
/// disconnected still hears hints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_on_the_master_reaches_replica_subscribers() {
    let setup = RedisSentinel::start();
    let master = setup.master_port();
    let replica = setup
        .ports()
        .into_iter()
        .find(|&p| p != master)
        .expect("a replica");
    let mut sub = redis::Client::open(format!("redis://127.0.0.1:{replica}"))
        .expect("client")
        .get_async_pubsub()
        .await
        .expect("pubsub on the replica");
    sub.subscribe(HINT_CHANNEL).await.expect("subscribe");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(HINT_CHANNEL)
        .arg("hello")
        .query_async(&mut raw(master).await)
        .await
        .expect("PUBLISH");
    let msg = no_hang("a message on the replica", sub.on_message().next())
        .await
        .expect("a message");
    assert_eq!(msg.get_payload_bytes(), b"hello");
}

// ---------------------------------------------------------------------------
// --redis-min-replicas: redeem, logout and revoke-all wait for replicas

/// The store through `setup` with `--redis-min-replicas 1`.
async fn durable_store(setup: &RedisSentinel) -> RedisStore {
    RedisStore::connect(&setup.url(), TTLS, OP_TIMEOUT)
        .await
        .expect("connect")
        .with_min_replicas(1)
}

/// The replica's port (the data server that is not the master).
fn replica_port(setup: &RedisSentinel) -> u16 {
    let master = setup.master_port();
    setup
        .ports()
        .into_iter()
        .find(|p| *p != master)
        .expect("a replica")
}

/// An approved login of alice made through `s`; its id and secret.
async fn approved(s: &RedisStore) -> (LoginId, qrlogin_core::BrowserSecret) {
    let (new, secret) = new_login(None);
    let id = new.id;
    s.create(new, T0).await.expect("create");
    s.scan(&id, &alice(), T0 + 1).await.expect("scan");
    s.approve(&id, &alice().id, T0 + 2).await.expect("approve");
    (id, secret)
}

/// A frozen replica acknowledges nothing: redeem answers Unavailable in
/// bounded time, no session is left for the token (it is never released),
/// and the login stays consumed (fail closed); logout and revoke-all are
/// Unavailable too. Thawed, the next login redeems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_replicas_withholds_redeem_while_the_replica_is_frozen() {
    let mut setup = RedisSentinel::start();
    let s = durable_store(&setup).await;
    let (done_id, done_secret) = approved(&s).await;
    let done = qrlogin_core::SessionToken::new_for(done_id);
    s.redeem(&done_id, &done_secret.hash(), &done, T0 + 3)
        .await
        .expect("redeem with the replica up");
    let (id, secret) = approved(&s).await;
    let replica = replica_port(&setup);
    setup.server(replica).freeze();

    let token = qrlogin_core::SessionToken::new_for(id);
    let started = Instant::now();
    let r = no_hang("redeem", s.redeem(&id, &secret.hash(), &token, T0 + 3)).await;
    t_unavailable("redeem with a frozen replica", r);
    assert!(
        started.elapsed() < OP_TIMEOUT + Duration::from_secs(1),
        "not bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(
        s.get(&id, T0 + 4).await.expect("get").map(|r| r.state),
        Some(State::Consumed),
        "the login stays consumed"
    );
    assert_eq!(s.session(&token.session_ref(), T0 + 4).await, Ok(None));
    // A retry of the same redeem does not release it either.
    let again = s.redeem(&id, &secret.hash(), &token, T0 + 5).await;
    assert!(again.is_err(), "{again:?}");
    unavailable(
        "logout with a frozen replica",
        s.revoke_session(&done.session_ref()).await,
    );
    unavailable(
        "revoke-all with a frozen replica",
        s.revoke_user_sessions(&alice().id, T0 + 6).await,
    );

    setup.server(replica).thaw();
    let (id2, secret2) = approved(&s).await;
    let t2 = qrlogin_core::SessionToken::new_for(id2);
    let h2 = secret2.hash();
    let user = through_failover("redeem after thaw", || s.redeem(&id2, &h2, &t2, T0 + 7)).await;
    assert_eq!(user, alice());
    assert_eq!(
        s.get(&id, T0 + 8).await.expect("get").map(|r| r.state),
        Some(State::Consumed),
        "the withheld login is still not redeemable"
    );
}

/// With N=1, what redeem and logout acknowledged is on the replica before
/// the answer: kill the master, fail over, and the new master has the
/// login consumed (a second redeem fails), the redeemed session alive and
/// the logged-out session gone, and revoke-all's work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_replicas_writes_survive_a_failover() {
    let mut setup = RedisSentinel::start();
    let s = durable_store(&setup).await;
    let (id, secret) = approved(&s).await;
    let token = qrlogin_core::SessionToken::new_for(id);
    s.redeem(&id, &secret.hash(), &token, T0 + 3)
        .await
        .expect("redeem");
    let (out_id, out_secret) = approved(&s).await;
    let out = qrlogin_core::SessionToken::new_for(out_id);
    s.redeem(&out_id, &out_secret.hash(), &out, T0 + 3)
        .await
        .expect("redeem");
    s.revoke_session(&out.session_ref()).await.expect("logout");
    assert_eq!(
        s.user_sessions(&alice().id, T0 + 4)
            .await
            .expect("list")
            .len(),
        1
    );

    let old_master = setup.master_port();
    setup.server(old_master).kill();
    let new_master = setup.failover();
    assert_ne!(new_master, old_master);

    let other = qrlogin_core::SessionToken::new_for(id);
    let hash = secret.hash();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match no_hang("second redeem", s.redeem(&id, &hash, &other, T0 + 5)).await {
            Err(TransitionError::WrongState(State::Consumed)) => break,
            Err(TransitionError::Store(StoreError::Unavailable(_)))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("second redeem after the failover: {other:?}"),
        }
    }
    assert!(s
        .session(&token.session_ref(), T0 + 6)
        .await
        .expect("session")
        .is_some());
    assert_eq!(
        s.session(&out.session_ref(), T0 + 6).await,
        Ok(None),
        "the logged-out session stays revoked"
    );
    // revoke-all on the new master: it has no replica now (the old master
    // is dead), so with N=1 it is refused…
    let r = s.revoke_user_sessions(&alice().id, T0 + 7).await;
    unavailable("revoke-all without any replica", r);
    // …whether or not its step ran on the master before the answer (not
    // acknowledged either way), a retry finishes it: the caller must retry.
    let plain = RedisStore::connect(&setup.url(), TTLS, OP_TIMEOUT)
        .await
        .expect("connect");
    let n = plain.revoke_user_sessions(&alice().id, T0 + 8).await;
    assert!(matches!(n, Ok(0 | 1)), "{n:?}");
    assert_eq!(s.session(&token.session_ref(), T0 + 9).await, Ok(None));
}
