//! Redis only: several qrlogin instances on one private redis-server, and
//! what a dead or stuck Redis does to the API (SPEC §4, §5).
//!
//! * Two instances in-process (two `spawn_with`, each with its own
//!   `RedisStore`, so wake-ups cross instances only through Redis pub/sub),
//!   and two real `qrlogin` processes started with `--store <url>`.
//! * Redis killed mid-flow: quick 503 `store_unavailable`, `/readyz` 503,
//!   `/healthz` 200; restarted: ready again and a new login works, with no
//!   restart of qrlogin.
//! * Redis paused (`CLIENT PAUSE … WRITE`): a transition script times out
//!   on the caller's side but still runs later; a retry never approves or
//!   redeems twice.

mod common;

use common::*;
use reqwest::StatusCode;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Generous bound on "quickly": the op timeout is 500 ms.
const QUICK: Duration = Duration::from_secs(3);

/// A config whose backstop re-read is longer than the hang guard: a watcher
/// that is woken at all was woken by a pub/sub hint.
fn hint_only_config() -> qrlogin_server::ServeConfig {
    let mut cfg = config();
    cfg.backstop = 120;
    cfg
}

/// Sends one inline command to the redis-server's unix socket and returns
/// the first reply line.
fn redis_cmd(server: &qrlogin_testkit::RedisServer, cmd: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(server.socket_path())
        .expect("connect to redis-server");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).expect("redis reply");
    String::from_utf8_lossy(&buf[..n]).trim().to_string()
}

async fn two_instances(
    cfg: &qrlogin_server::ServeConfig,
) -> (qrlogin_testkit::RedisServer, App, App) {
    let redis = redis_server().await;
    let mut cfg = cfg.clone();
    cfg.store = redis.url();
    let a = spawn_on(cfg.clone(), redis_store(&redis.url(), &cfg).await, None).await;
    let b = spawn_on(cfg.clone(), redis_store(&redis.url(), &cfg).await, None).await;
    assert_ne!(a.base, b.base);
    (redis, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_on_one_instance_phone_on_another() {
    let (_redis, a, b) = two_instances(&hint_only_config()).await;
    let browser_a = a.browser();
    let login = browser_a.create().await;
    let mut sse = browser_a.events(&login, None).await;
    assert_eq!(sse.expect().await.state(), "pending");

    // The phone talks only to B.
    let phone_b = b.phone(ALICE).await;
    phone_b.scan_ok(&login.id).await;
    let ev = sse.expect_named("scanned").await;
    assert_eq!(ev.json()["user"]["id"], ALICE_ID);
    phone_b.approve_ok(&login.id).await;
    sse.expect_named("approved").await;

    // The browser, woken on A, redeems on A.
    let v = browser_a.redeem(&login).await.ok_json(StatusCode::OK);
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["user"]["id"], ALICE_ID);
    sse.expect_named("consumed").await;
    sse.expect_end().await;

    // The session works on B, by bearer and by cookie.
    let browser_b = browser_a.at(&b.base);
    let who = browser_b
        .whoami_bearer(&token)
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(who["user"]["id"], ALICE_ID);
    let who = browser_b.whoami().await.ok_json(StatusCode::OK);
    assert_eq!(who["user"]["id"], ALICE_ID);
    // And it is gone from both once redeemed.
    for br in [&browser_a, &browser_b] {
        let r = br.redeem(&login).await;
        assert!(
            r.status == StatusCode::NOT_FOUND || r.status == StatusCode::CONFLICT,
            "{}",
            r.text()
        );
    }
    // Logging out on B ends it on A too.
    assert_eq!(browser_b.logout().await.status, StatusCode::NO_CONTENT);
    browser_a
        .whoami_bearer(&token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_on_one_instance_woken_by_another() {
    let (_redis, a, b) = two_instances(&hint_only_config()).await;
    let browser_a = a.browser();
    let browser_b = browser_a.at(&b.base);
    let login = browser_a.create_header().await;
    let phone_a = a.phone(BOB).await;

    // Long-poll on B; the phone scans on A.
    let poll = {
        let (br, l) = (browser_b.clone(), login.clone());
        tokio::spawn(async move { br.status(&l, "?wait=15&since=pending").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long-poll returned while pending");
    phone_a.scan_ok(&login.id).await;
    let v = within("long-poll", poll)
        .await
        .unwrap()
        .ok_json(StatusCode::OK);
    assert_eq!(v["state"], "scanned");
    assert_eq!(v["user"]["id"], BOB_ID);

    phone_a.approve_ok(&login.id).await;
    // Both instances race to redeem: exactly one wins.
    let (ra, rb) = tokio::join!(browser_a.redeem(&login), browser_b.redeem(&login));
    let wins = [&ra, &rb]
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(
        wins,
        1,
        "A: {} {}; B: {} {}",
        ra.status,
        ra.text(),
        rb.status,
        rb.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_qrlogin_processes_share_one_redis() {
    let redis = redis_server().await;
    let url = redis.url();
    let (a, b) = tokio::task::spawn_blocking(move || {
        (
            Proc::start(&["--store", &url]),
            Proc::start(&["--store", &url]),
        )
    })
    .await
    .unwrap();
    let browser_a = Browser::new(&a.base);
    let login = browser_a.create().await;
    let mut sse = browser_a.events(&login, None).await;
    assert_eq!(sse.expect().await.state(), "pending");
    let phone_b = Phone::sign_in(&b.base, ALICE).await;
    phone_b.scan_ok(&login.id).await;
    sse.expect_named("scanned").await;
    phone_b.approve_ok(&login.id).await;
    sse.expect_named("approved").await;
    let v = browser_a.redeem(&login).await.ok_json(StatusCode::OK);
    let token = v["token"].as_str().unwrap();
    let who = browser_a
        .at(&b.base)
        .whoami_bearer(token)
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(who["user"]["id"], ALICE_ID);
    let ready = send(raw_client().get(format!("{}/readyz", b.base))).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", b.log());
}

/// Asserts a quick 503 `store_unavailable` with `Retry-After`.
async fn assert_unavailable(what: &str, rb: reqwest::RequestBuilder) {
    let start = Instant::now();
    let r = send(rb).await;
    let took = start.elapsed();
    assert!(took < QUICK, "{what}: took {took:?} with Redis down");
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        r.text()
    );
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(
        r.headers.contains_key("retry-after"),
        "{what}: no Retry-After"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_flow_then_back() {
    let mut app = app_with(StoreKind::Redis, hint_only_config(), None).await;
    let http = raw_client();
    let browser = app.browser();
    let phone = app.phone(ALICE).await;

    // One finished login (its session), one approved, one pending.
    let done = browser.create_header().await;
    phone.scan_ok(&done.id).await;
    phone.approve_ok(&done.id).await;
    let session = browser.redeem(&done).await.ok_json(StatusCode::OK)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let approved = browser.create_header().await;
    phone.scan_ok(&approved.id).await;
    phone.approve_ok(&approved.id).await;
    let pending = browser.create_header().await;

    app.redis.as_mut().unwrap().kill();

    let base = app.base.clone();
    let url = |p: &str| format!("{base}{p}");
    let secret = |l: &Login| l.secret.clone().unwrap();
    assert_unavailable("create", http.post(url("/v1/logins"))).await;
    assert_unavailable(
        "status",
        http.get(url(&format!("/v1/logins/{}", pending.id)))
            .bearer_auth(secret(&pending)),
    )
    .await;
    assert_unavailable(
        "events",
        http.get(url(&format!("/v1/logins/{}/events", pending.id)))
            .bearer_auth(secret(&pending)),
    )
    .await;
    assert_unavailable(
        "redeem",
        http.post(url(&format!("/v1/logins/{}/redeem", approved.id)))
            .bearer_auth(secret(&approved)),
    )
    .await;
    assert_unavailable(
        "cancel",
        http.delete(url(&format!("/v1/logins/{}", pending.id)))
            .bearer_auth(secret(&pending)),
    )
    .await;
    assert_unavailable(
        "scan",
        http.post(url(&format!("/v1/mobile/logins/{}/scan", pending.id)))
            .bearer_auth(&phone.token),
    )
    .await;
    assert_unavailable(
        "session",
        http.get(url("/v1/session")).bearer_auth(&session),
    )
    .await;
    assert_unavailable(
        "sign-in",
        http.post(url("/v1/mobile/session"))
            .json(&serde_json::json!({"username": "bob", "password": "builder"})),
    )
    .await;
    assert_unavailable("readyz", http.get(url("/readyz"))).await;
    let r = send(http.get(url("/healthz"))).await;
    assert_eq!(r.status, StatusCode::OK, "the process is up");

    // Back (empty, like a Redis without persistence after a crash).
    let mut redis = app.redis.take().unwrap();
    let redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    app.redis = Some(redis);
    within("readyz after restart", async {
        loop {
            if send(http.get(url("/readyz"))).await.status == StatusCode::OK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // A whole new login works on the same qrlogin, woken by pub/sub (the
    // backstop is longer than the hang guard): the subscriber came back.
    let phone = app.phone(BOB).await;
    let login = browser.create().await;
    let mut sse = browser.events(&login, None).await;
    assert_eq!(sse.expect().await.state(), "pending");
    phone.scan_ok(&login.id).await;
    sse.expect_named("scanned").await;
    phone.approve_ok(&login.id).await;
    sse.expect_named("approved").await;
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], BOB_ID);

    // What was lost stays lost: nothing is redeemed from before the crash.
    let r = browser.redeem(&approved).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    browser
        .whoami_bearer(&session)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_transitions_never_happen_twice() {
    let mut cfg = config();
    cfg.store_timeout_ms = 300;
    cfg.rate_limits = false;
    let app = app_with(StoreKind::Redis, cfg, None).await;
    let redis = app.redis.as_ref().unwrap();
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create_header().await;
    phone.scan_ok(&login.id).await;

    // Scripts (writes) stall for 1.5 s; reads still answer.
    let pause = Duration::from_millis(1500);
    assert_eq!(redis_cmd(redis, "CLIENT PAUSE 1500 WRITE"), "+OK");
    let paused_at = Instant::now();
    let mut approvals = Vec::new();
    let start = Instant::now();
    let r = phone.approve(&login.id).await;
    assert!(
        start.elapsed() < QUICK,
        "approve took {:?}",
        start.elapsed()
    );
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    approvals.push(r.status);
    tokio::time::sleep((pause + Duration::from_millis(300)).saturating_sub(paused_at.elapsed()))
        .await;

    // The phone retries (as an app would) until it gets a definite answer.
    let r = phone.approve(&login.id).await;
    assert!(
        r.status == StatusCode::OK || r.status == StatusCode::CONFLICT,
        "retried approve: {} {}",
        r.status,
        r.text()
    );
    approvals.push(r.status);
    assert!(
        approvals.iter().filter(|s| **s == StatusCode::OK).count() <= 1,
        "approved twice: {approvals:?}"
    );
    assert_eq!(browser.state(&login).await, "approved");

    // The same for redeem: a timed-out redeem may have happened, but a
    // retry never hands out a second session.
    assert_eq!(redis_cmd(redis, "CLIENT PAUSE 1500 WRITE"), "+OK");
    let paused_at = Instant::now();
    let r = browser.redeem(&login).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(r.set_cookie("qrl_session").is_none());
    tokio::time::sleep((pause + Duration::from_millis(300)).saturating_sub(paused_at.elapsed()))
        .await;
    let mut wins = 0;
    for _ in 0..5 {
        let r = browser.redeem(&login).await;
        match r.status {
            StatusCode::OK => wins += 1,
            StatusCode::NOT_FOUND | StatusCode::CONFLICT => {}
            s => panic!("retried redeem: {s} {}", r.text()),
        }
    }
    assert!(wins <= 1, "redeemed {wins} times after the timed-out one");
}
