//! RedisStore behaviour beyond the shared contract: hints across instances,
//! failure and recovery, what is (and is not) stored, round trips.

mod common;

use common::{t_unavailable, unavailable};
use qrlogin_core::{
    Hint, LoginId, MobileToken, SessionToken, State, Store, StoreError, TransitionError, Ttls, User,
};
use qrlogin_redis::{keys, RedisStore, HINT_CHANNEL};
use qrlogin_testkit::contract::{alice, expect_hint, new_login, next_hint, scanned_by, T0, TTLS};
use qrlogin_testkit::RedisServer;
use std::future::Future;
use std::time::{Duration, Instant};

const OP_TIMEOUT: Duration = Duration::from_millis(500);

async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url(), TTLS, OP_TIMEOUT)
        .await
        .expect("connect")
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    common::raw(&server.url()).await
}

/// Awaits `fut`, failing if it takes longer than 3 s: the point is "a dead
/// Redis gives an error, not a hang", not a timing benchmark.
async fn within_3s<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(3), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} hung for more than 3 s"),
    }
}

/// Retries `op` until it succeeds or 10 s pass.
async fn eventually<T, E: std::fmt::Debug, Fut: Future<Output = Result<T, E>>>(
    what: &str,
    mut op: impl FnMut() -> Fut,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what} still failing: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_instance_is_woken_by_another() {
    let server = RedisServer::start();
    let a = store(&server).await;
    let b = store(&server).await;
    let (new, secret) = new_login(None);
    let id = new.id;
    a.create(new, T0).await.expect("create on A");
    let mut watcher = a.notifier().register(id);
    b.scan(&id, &alice(), T0 + 1000).await.expect("scan on B");
    assert_eq!(next_hint(&mut watcher).await, scanned_by(alice()));
    b.approve(&id, "alice", T0 + 2000)
        .await
        .expect("approve on B");
    assert_eq!(
        next_hint(&mut watcher).await,
        Hint::Changed {
            version: 3,
            state: State::Approved,
            user: Some(alice()),
            match_required: false,
        }
    );
    // And the other way round: a watcher on B (not the creator) registers
    // and then reads, as the server's watcher does, which routes the
    // login's hints to B too.
    let mut on_b = b.notifier().register(id);
    b.get_watched(&id, T0 + 2500)
        .await
        .expect("watch on B")
        .expect("the login");
    // A third instance that never opened a wait hears nothing of it.
    let c = store(&server).await;
    let mut on_c = c.notifier().register(id);
    a.redeem(&id, &secret.hash(), &SessionToken::new_for(id), T0 + 3000)
        .await
        .expect("redeem on A");
    // (B's watcher registered after B's approve, whose hint may still be
    // in flight: expect_hint skips it.)
    expect_hint(
        &mut on_b,
        Hint::Changed {
            version: 4,
            state: State::Consumed,
            user: Some(alice()),
            match_required: false,
        },
    )
    .await;
    // B has heard the redeem, so C would have by now if it were sent there.
    let heard = tokio::time::timeout(Duration::from_millis(300), on_c.next()).await;
    assert!(
        heard.is_err(),
        "an instance that does not wait got {heard:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_gives_fast_errors_and_the_store_recovers() {
    let mut server = RedisServer::start();
    let s = store(&server).await;
    let (new, secret) = new_login(None);
    let id = new.id;
    s.create(new, T0).await.expect("create");
    let mut watcher = s.notifier().register(LoginId::random());

    server.kill();
    let started = Instant::now();
    unavailable("ping", within_3s("ping", s.ping()).await);
    unavailable("get", within_3s("get", s.get(&id, T0)).await);
    let (new2, _) = new_login(None);
    unavailable("create", within_3s("create", s.create(new2, T0)).await);
    t_unavailable(
        "scan",
        within_3s("scan", s.scan(&id, &alice(), T0 + 1)).await,
    );
    t_unavailable(
        "approve",
        within_3s("approve", s.approve(&id, "alice", T0 + 1)).await,
    );
    t_unavailable(
        "deny",
        within_3s("deny", s.deny(&id, "alice", T0 + 1)).await,
    );
    t_unavailable(
        "cancel",
        within_3s("cancel", s.cancel(&id, &secret.hash(), T0 + 1)).await,
    );
    let token = SessionToken::new_for(id);
    t_unavailable(
        "redeem",
        within_3s("redeem", s.redeem(&id, &secret.hash(), &token, T0 + 1)).await,
    );
    unavailable(
        "session",
        within_3s("session", s.session(&token.session_ref(), T0)).await,
    );
    unavailable(
        "revoke",
        within_3s("revoke", s.revoke_session(&token.session_ref())).await,
    );
    let mh = MobileToken::random().hash();
    unavailable(
        "put_mobile_token",
        within_3s(
            "put_mobile_token",
            s.put_mobile_token(&mh, &alice(), 1000, T0),
        )
        .await,
    );
    unavailable(
        "mobile_token_user",
        within_3s("mobile_token_user", s.mobile_token_user(&mh, T0)).await,
    );
    eprintln!(
        "12 calls against a dead redis took {:?} in all",
        started.elapsed()
    );
    // (No bound on the total here: each call is already under within_3s,
    // so twelve of them cannot exceed 36 s; an assertion saying so could
    // never fail.)

    server.restart();
    eventually("ping after restart", || s.ping()).await;
    // The hint subscription came back and told watchers to re-read.
    assert_eq!(next_hint(&mut watcher).await, Hint::Reread);
    // The restarted Redis is empty (no persistence), the store works again
    // without being recreated (scripts are reloaded on NOSCRIPT), and hints
    // flow again.
    assert_eq!(s.get(&id, T0).await.expect("get"), None);
    let (new3, _) = new_login(None);
    let id3 = new3.id;
    s.create(new3, T0).await.expect("create after restart");
    let mut w3 = s.notifier().register(id3);
    s.scan(&id3, &alice(), T0 + 1000)
        .await
        .expect("scan after restart");
    // expect_hint, not next_hint: should the subscriber have resubscribed
    // once more meanwhile, an extra re-read request may come first (harmless
    // by design); the change itself must still arrive.
    expect_hint(&mut w3, scanned_by(alice())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_wakes_watchers_after_a_restart() {
    let mut server = RedisServer::start();
    let a = store(&server).await;
    let b = store(&server).await;
    server.restart();
    eventually("A answers", || a.ping()).await;
    eventually("B answers", || b.ping()).await;
    let (new, _) = new_login(None);
    let id = new.id;
    a.create(new, T0).await.expect("create");
    let mut w = a.notifier().register(id);
    // A's subscription may still be coming back; its Reread (if still
    // pending) is fine, the Changed must follow.
    b.scan(&id, &alice(), T0 + 1000).await.expect("scan on B");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match next_hint(&mut w).await {
            Hint::Changed { version: 2, .. } => break,
            Hint::Reread | Hint::None if Instant::now() < deadline => continue,
            other => panic!("unexpected hint {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_fails_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("redis+unix://{}/missing.sock", dir.path().display());
    let r = within_3s("connect", RedisStore::connect(&url, TTLS, OP_TIMEOUT)).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");

    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let r = within_3s("connect", RedisStore::connect(&url, TTLS, OP_TIMEOUT)).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");

    let r = RedisStore::connect("redis+cluster://a,b", TTLS, OP_TIMEOUT).await;
    assert!(r.is_err());
}

/// Every key and value in the private Redis, as text.
async fn dump(server: &RedisServer) -> Vec<(String, String, i64)> {
    let mut c = raw(server).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .expect("KEYS");
    let mut out = Vec::new();
    for k in keys {
        let ty: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .expect("TYPE");
        let value = match ty.as_str() {
            "hash" => {
                let v: Vec<String> = redis::cmd("HGETALL")
                    .arg(&k)
                    .query_async(&mut c)
                    .await
                    .expect("HGETALL");
                v.join("\u{1}")
            }
            // The per-user session index (login ids, scores).
            "zset" => {
                let v: Vec<String> = redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut c)
                    .await
                    .expect("ZRANGE");
                v.join("\u{1}")
            }
            "string" => redis::cmd("GET")
                .arg(&k)
                .query_async(&mut c)
                .await
                .expect("GET"),
            other => panic!("unexpected key type {other} for {k}"),
        };
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&k)
            .query_async(&mut c)
            .await
            .expect("PTTL");
        out.push((k, value, pttl));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_no_plaintext_secrets() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let (new, secret) = new_login(Some(7));
    let id = new.id;
    s.create(new, T0).await.expect("create");
    s.scan(&id, &alice(), T0 + 1000).await.expect("scan");
    s.approve(&id, "alice", T0 + 2000).await.expect("approve");
    let token = SessionToken::new_for(id);
    s.redeem(&id, &secret.hash(), &token, T0 + 3000)
        .await
        .expect("redeem");
    let mobile = MobileToken::random();
    s.put_mobile_token(&mobile.hash(), &alice(), 60_000, T0)
        .await
        .expect("put mobile");
    // A second, unfinished login too.
    let (new2, secret2) = new_login(None);
    s.create(new2, T0).await.expect("create 2");

    let entries = dump(&server).await;
    let all: String = entries
        .iter()
        .map(|(k, v, _)| format!("{k}\n{v}\n"))
        .collect();
    let token_text = token.expose();
    let token_secret = token_text.split_once('.').expect("token text").1.to_owned();
    for (what, plain) in [
        ("browser secret", secret.expose()),
        ("second browser secret", secret2.expose()),
        ("session token", token_text.clone()),
        ("session token secret", token_secret),
        ("mobile token", mobile.expose()),
    ] {
        assert!(
            !all.contains(&plain),
            "Redis holds the {what} in plain text"
        );
    }
    // It holds the hashes instead (so the check above looked at real data).
    assert!(all.contains(&secret.hash().to_hex()));
    assert!(all.contains(&token.hash().to_hex()));
    assert!(all.contains(&mobile.hash().to_hex()));

    // The key layout, and every key has a TTL (nothing lives forever).
    let mut names: Vec<&str> = entries.iter().map(|(k, _, _)| k.as_str()).collect();
    names.sort();
    let mut want = [
        keys::login_key(&id),
        keys::login_key(&new2_id(&entries, &id)),
        keys::session_key(&token.session_ref()),
        keys::sid_key(&id),
        keys::user_sessions_key("alice"),
        keys::mobile_token_key(&mobile.hash()),
    ];
    want.sort();
    assert_eq!(names, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(keys::session_key(&token.session_ref()).starts_with(&format!("qrl:{{{id}}}:")));
    // The user's index names the user by a SHA-256 only.
    assert!(!keys::user_sessions_key("alice").contains("alice"));
    for (k, _, pttl) in &entries {
        assert!(*pttl > 0, "{k} has no TTL ({pttl})");
    }
}

#[tokio::test]
async fn the_session_index_keeps_only_sessions_that_can_be_live() {
    let server = RedisServer::start();
    let s = store(&server).await;
    common::index_keeps_only_live_sessions(&s, raw(&server).await).await;
}

/// The id of the other login in a dump (the one that is not `id`).
fn new2_id(entries: &[(String, String, i64)], id: &LoginId) -> LoginId {
    entries
        .iter()
        .filter_map(|(k, _, _)| {
            let inner = k.strip_prefix("qrl:{")?.strip_suffix("}:rec")?;
            inner.parse::<LoginId>().ok()
        })
        .find(|other| other != id)
        .expect("second login key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ttls_follow_the_callers_clock_and_only_collect_garbage() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let (new, secret) = new_login(None);
    let id = new.id;
    // T0 is in 2023: a PEXPIREAT on it would delete the key at once.
    s.create(new, T0).await.expect("create");
    let mut c = raw(&server).await;
    let pttl = |k: String| {
        let mut c = c.clone();
        async move {
            redis::cmd("PTTL")
                .arg(k)
                .query_async::<i64>(&mut c)
                .await
                .expect("PTTL")
        }
    };
    let keep = TTLS.pending_ms + TTLS.final_keep_ms;
    let t = pttl(keys::login_key(&id)).await;
    assert!(
        t > 0 && t as u64 <= keep && t as u64 > keep - 5_000,
        "pending pttl {t}"
    );
    s.scan(&id, &alice(), T0 + 1000).await.expect("scan");
    let keep = TTLS.pending_ms + TTLS.scan_extension_ms + TTLS.final_keep_ms - 1000;
    let t = pttl(keys::login_key(&id)).await;
    assert!(
        t > 0 && t as u64 <= keep && t as u64 > keep - 5_000,
        "scanned pttl {t}"
    );
    s.approve(&id, "alice", T0 + 2000).await.expect("approve");
    let token = SessionToken::new_for(id);
    s.redeem(&id, &secret.hash(), &token, T0 + 3000)
        .await
        .expect("redeem");
    let t = pttl(keys::login_key(&id)).await;
    assert!(
        t > 0 && t as u64 <= TTLS.final_keep_ms && t as u64 > TTLS.final_keep_ms - 5_000,
        "final pttl {t}"
    );
    let t = pttl(keys::session_key(&token.session_ref())).await;
    assert!(
        t > 0 && t as u64 <= TTLS.session_ms && t as u64 > TTLS.session_ms - 5_000,
        "session pttl {t}"
    );
    // Real garbage collection, with short TTLs.
    let short = Ttls {
        pending_ms: 100,
        scan_extension_ms: 100,
        final_keep_ms: 100,
        session_ms: 100,
    };
    let s2 = RedisStore::connect(&server.url(), short, OP_TIMEOUT)
        .await
        .expect("connect");
    let (new, _) = new_login(None);
    let id2 = new.id;
    s2.create(new, T0).await.expect("create");
    assert!(s2.get(&id2, T0).await.expect("get").is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        s2.get(&id2, T0).await.expect("get"),
        None,
        "collected by Redis"
    );
    let _: () = redis::cmd("PING").query_async(&mut c).await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_are_compact_json_on_the_instance_channel() {
    use futures_util::StreamExt;
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut pubsub = redis::Client::open(server.url())
        .expect("client")
        .get_async_pubsub()
        .await
        .expect("pubsub");
    let (new, _) = new_login(None);
    let id = new.id;
    let channel = s.hint_channel_for(&id);
    pubsub.subscribe(&channel).await.expect("subscribe");
    s.create(new, T0).await.expect("create");
    let user = User {
        id: "u\"1".into(),
        name: "Ålice / \"A\"".into(),
    };
    s.scan(&id, &user, T0 + 1000).await.expect("scan");
    let mut stream = pubsub.on_message();
    let msg = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a hint within 5 s")
        .expect("stream open");
    assert_eq!(msg.get_channel_name(), channel);
    let payload = msg.get_payload_bytes();
    assert!(payload.len() < 200, "compact: {} bytes", payload.len());
    let v: serde_json::Value = serde_json::from_slice(payload).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"id": id.to_string(), "v": 2, "s": "scanned", "uid": "u\"1", "un": "Ålice / \"A\""})
    );
}

/// Counts of each command Redis has executed since the last reset.
async fn commandstats(c: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(c)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transition_is_one_script_call() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut c = raw(&server).await;
    // Warm the script cache, so NOSCRIPT fallbacks are not counted.
    let (new, secret) = new_login(None);
    let id = new.id;
    s.create(new, T0).await.expect("create");
    s.scan(&id, &alice(), T0 + 1).await.expect("scan");
    s.approve(&id, "alice", T0 + 2).await.expect("approve");
    s.redeem(&id, &secret.hash(), &SessionToken::new_for(id), T0 + 3)
        .await
        .expect("redeem");
    let (new, secret) = new_login(None);
    s.create(new.clone(), T0).await.expect("create");
    s.cancel(&new.id, &secret.hash(), T0 + 1)
        .await
        .expect("cancel");
    let (new, _) = new_login(None);
    s.create(new.clone(), T0).await.expect("create");
    s.scan(&new.id, &alice(), T0 + 1).await.expect("scan");
    s.deny(&new.id, "alice", T0 + 2).await.expect("deny");

    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut c)
        .await
        .expect("RESETSTAT");
    let (new, secret) = new_login(None);
    let id = new.id;
    s.create(new, T0).await.expect("create");
    s.scan(&id, &alice(), T0 + 1).await.expect("scan");
    s.approve(&id, "alice", T0 + 2).await.expect("approve");
    s.redeem(&id, &secret.hash(), &SessionToken::new_for(id), T0 + 3)
        .await
        .expect("redeem");
    let stats = commandstats(&mut c).await;
    let calls = |name: &str| {
        stats
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| *c)
            .unwrap_or(0)
    };
    // create is one plain SET; scan, approve and redeem one EVALSHA each.
    assert_eq!(calls("evalsha"), 3, "one EVALSHA per transition: {stats:?}");
    // Inside the scripts (commandstats counts those too): one GET per
    // script, one SET per commit plus the session and its index entry
    // (`:sid`); approve adds the login to the user's session index (ZADD,
    // PEXPIRE) and redeem checks for a revoke-all tombstone (EXISTS).
    assert_eq!(calls("get"), 3, "{stats:?}");
    assert_eq!(calls("set"), 1 + 3 + 1 + 1, "{stats:?}");
    assert_eq!(calls("zadd"), 1, "{stats:?}");
    assert_eq!(calls("pexpire"), 1, "{stats:?}");
    assert_eq!(calls("exists"), 1, "{stats:?}");
    assert_eq!(
        calls("hgetall") + calls("hset") + calls("del"),
        0,
        "{stats:?}"
    );
    assert_eq!(calls("eval"), 0, "{stats:?}");
    assert_eq!(calls("script|load"), 0, "{stats:?}");
    assert_eq!(
        calls("publish"),
        3,
        "a hint per transition, from the scripts: {stats:?}"
    );
    // A read is one GET.
    let before = calls("get");
    s.get(&id, T0).await.expect("get");
    let after = commandstats(&mut c).await;
    let gets = after
        .iter()
        .find(|(n, _)| n == "get")
        .map(|(_, c)| *c)
        .unwrap_or(0);
    assert_eq!(gets, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_ends_its_subscription() {
    let server = RedisServer::start();
    let mut c = raw(&server).await;
    let subscribers = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        async move {
            let v: (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(HINT_CHANNEL)
                .query_async(&mut c)
                .await
                .expect("NUMSUB");
            v.1
        }
    };
    assert_eq!(subscribers(&mut c).await, 0);
    let s = store(&server).await;
    let s2 = store(&server).await;
    assert_eq!(subscribers(&mut c).await, 2, "one subscription per store");
    drop(s);
    drop(s2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while subscribers(&mut c).await != 0 {
        assert!(Instant::now() < deadline, "subscription outlived its store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A login key that does not hold a valid record (hand-edited, another
/// program, a half-migrated layout) is reported as corrupt by reads and by
/// every script, never treated as absent or as some state, and never panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_records_are_reported_not_misread() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut c = raw(&server).await;
    for bad in [
        "not json",
        "{}",
        r#"{"state":"approved"}"#,
        r#"{"state":"pending","version":"x","expires":"1"}"#,
    ] {
        let (new, secret) = new_login(None);
        let id = new.id;
        s.create(new, T0).await.expect("create");
        let _: () = redis::cmd("SET")
            .arg(keys::login_key(&id))
            .arg(bad)
            .query_async(&mut c)
            .await
            .expect("SET");
        assert!(
            matches!(s.get(&id, T0).await, Err(StoreError::Corrupt(_))),
            "get of {bad}"
        );
        for (what, r) in [
            ("scan", s.scan(&id, &alice(), T0).await.map(|_| ())),
            ("approve", s.approve(&id, "alice", T0).await.map(|_| ())),
            ("deny", s.deny(&id, "alice", T0).await.map(|_| ())),
            (
                "cancel",
                s.cancel(&id, &secret.hash(), T0).await.map(|_| ()),
            ),
            (
                "redeem",
                s.redeem(&id, &secret.hash(), &SessionToken::new_for(id), T0)
                    .await
                    .map(|_| ()),
            ),
        ] {
            assert!(
                matches!(r, Err(TransitionError::Store(StoreError::Corrupt(_)))),
                "{what} of {bad}: {r:?}"
            );
        }
    }
}

/// Events off (no webhooks): a whole login and a revoke write nothing
/// event-related to Redis, not even the stream key. On: the stream holds
/// the events, with no secret or hash of one in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_off_write_nothing_and_events_on_hold_no_secret() {
    use redis::AsyncCommands as _;
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut conn = raw(&server).await;
    let login = |on: bool| {
        let s = &s;
        async move {
            s.set_events(on);
            let (new, secret) = new_login(None);
            let id = new.id;
            s.create(new, T0).await.expect("create");
            s.scan(&id, &alice(), T0 + 1).await.expect("scan");
            s.approve(&id, "alice", T0 + 2).await.expect("approve");
            let token = SessionToken::new_for(id);
            s.redeem(&id, &secret.hash(), &token, T0 + 3)
                .await
                .expect("redeem");
            s.revoke_session(&token.session_ref())
                .await
                .expect("revoke");
            (secret, token)
        }
    };
    login(false).await;
    let exists: bool = conn
        .exists(qrlogin_redis::EVENTS_KEY)
        .await
        .expect("EXISTS");
    assert!(
        !exists,
        "events off must not create {}",
        qrlogin_redis::EVENTS_KEY
    );

    let (secret, token) = login(true).await;
    let len: u64 = conn.xlen(qrlogin_redis::EVENTS_KEY).await.expect("XLEN");
    assert_eq!(len, 4, "scanned, approved, consumed, revoked");
    let dump: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(qrlogin_redis::EVENTS_KEY)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let text: String = dump.iter().flat_map(|(_, f)| f.iter().cloned()).collect();
    assert!(
        text.contains("login.consumed") && text.contains("session.revoked"),
        "{text}"
    );
    for secret in [
        secret.expose().to_string(),
        secret.hash().to_hex(),
        token.expose().to_string(),
        token.hash().to_hex(),
    ] {
        assert!(
            !text.contains(&secret),
            "a secret or its hash is in the stream"
        );
    }
}
