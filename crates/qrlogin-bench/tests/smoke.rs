//! Smoke test of the load generator against an in-process server with the
//! memory store: a couple of seconds of each wait mode, checking
//! correctness (no errors, every started login completed), never speed.
//! Figures come from `qrlogin-bench` runs documented in BENCHMARKS.md.
//!
//! `--phone-auth jwt` is tested against the server configured as
//! `qrlogin serve --mobile-verifier jwt --mobile-jwt-issuer <idp>` would
//! be (the same library the binary runs), with the idp both as the
//! `qrlogin-bench idp` binary and in-process.
//!
//! Multi-instance runs (`--url` several times) are tested against two
//! server *processes* on one private redis-server: each its own
//! Prometheus recorder, so each instance's /metrics counts only its own
//! requests and hint messages (in-process servers would share one).

use qrlogin_bench::idp::IdpAlg;
use qrlogin_bench::{
    idle, run, Binding, IdleConfig, PhoneAuth, PhoneTokens, RunConfig, RunReport, WaitMode,
};
use qrlogin_server::config::VerifierKind;
use qrlogin_server::ServeConfig;
use qrlogin_testkit::RedisServer;
use std::io::BufRead as _;
use std::time::Duration;

async fn server() -> qrlogin_server::Running {
    let mut cfg = ServeConfig::defaults();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    // A load generator on one IP is exactly what the limits stop.
    cfg.rate_limits = false;
    qrlogin_server::spawn(cfg).await.expect("server starts")
}

/// A server whose phones are verified as JWTs from `issuer` (demo users
/// off, as with `--mobile-verifier jwt`).
async fn jwt_server(issuer: &str) -> qrlogin_server::Running {
    let mut cfg = ServeConfig::defaults();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.rate_limits = false;
    cfg.mobile_verifier = VerifierKind::Jwt;
    cfg.mobile_jwt_issuer = Some(issuer.to_string());
    cfg.mobile_jwt_audience = Some(qrlogin_bench::idp::DEFAULT_AUDIENCE.to_string());
    qrlogin_server::spawn(cfg).await.expect("jwt server starts")
}

/// Kills the child process when dropped (a failed assertion included).
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn assert_clean(r: &RunReport) {
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_eq!(r.failed, 0, "{r:?}");
    assert!(r.completed > 0, "no login completed: {r:?}");
    assert_eq!(r.started, r.completed, "{r:?}");
    for step in ["create", "scan", "approve", "wake", "redeem", "full"] {
        assert_eq!(
            r.steps.get(step).map(|s| s.count),
            Some(r.completed),
            "step {step}: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wait_mode_completes_every_login() {
    let srv = server().await;
    let url = format!("http://{}", srv.addr);
    let mk = |wait: WaitMode, binding: Binding| {
        let mut c = RunConfig::new(&url, wait);
        c.concurrency = 3;
        c.duration = Duration::from_secs(2);
        c.max_logins = Some(300);
        c.binding = binding;
        c.server_pid = Some(std::process::id());
        c
    };
    let (sse, sse_cookie, lp, poll) = tokio::join!(
        run(mk(WaitMode::Sse, Binding::Header)),
        run(mk(WaitMode::Sse, Binding::Cookie)),
        run(mk(WaitMode::Longpoll, Binding::Header)),
        run(mk(WaitMode::Poll1s, Binding::Header)),
    );
    for r in [
        &sse.unwrap(),
        &sse_cookie.unwrap(),
        &lp.unwrap(),
        &poll.unwrap(),
    ] {
        assert_clean(r);
        assert!(r.server_rss_after.is_some());
        if r.wait == WaitMode::Sse {
            assert_eq!(r.steps["events"].count, r.completed);
        } else {
            assert!(r.status_requests_per_login >= 1.0, "{r:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_logins_bounds_the_run() {
    let srv = server().await;
    let mut c = RunConfig::new(&format!("http://{}", srv.addr), WaitMode::Longpoll);
    c.concurrency = 4;
    c.max_logins = Some(10);
    let duration = Duration::from_secs(20);
    c.duration = duration;
    let r = run(c).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.completed, 10);
    // The run ended on its login count, not by waiting out its duration
    // (a logical bound, not a speed threshold).
    assert!(
        r.elapsed_s < duration.as_secs_f64(),
        "ran out its {duration:?} instead of stopping at max_logins: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_targets_off_loopback() {
    let c = RunConfig::new("http://192.0.2.1:8080", WaitMode::Sse);
    let err = run(c).await.unwrap_err().to_string();
    assert!(err.contains("loopback"), "{err}");
    // Every instance of a multi-instance run, not only the first.
    let mut c = RunConfig::new("http://127.0.0.1:1", WaitMode::Sse);
    c.more_urls = vec!["http://192.0.2.1:8080".into()];
    let err = run(c).await.unwrap_err().to_string();
    assert!(err.contains("loopback"), "{err}");
    let mut c = RunConfig::new("http://127.0.0.1:1", WaitMode::Sse);
    c.redis_url = Some("redis://192.0.2.1:6379".into());
    // Refused for the Redis address itself, not merely because nothing
    // listens on 127.0.0.1:1.
    let err = run(c).await.unwrap_err().to_string();
    assert!(err.contains("loopback"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_waiters() {
    let srv = server().await;
    let url = format!("http://{}", srv.addr);
    for wait in [WaitMode::Sse, WaitMode::Longpoll] {
        let mut c = IdleConfig::new(&url, 20, wait, std::process::id());
        c.hold = Duration::from_secs(1);
        let r = idle(c).await.unwrap();
        assert_eq!(r.failed, 0, "{r:?}");
        assert!(r.errors.is_empty(), "{r:?}");
        assert_eq!(r.waiters_open, 20, "{r:?}");
    }
}

/// `--sources`: with the server's cap at 7 streams per address, 20
/// waiters from one address get 429s, and from 3 addresses (7, 7, 6) all
/// open; `--ready-file` is written with the count open, and `--keep` holds
/// every one of them to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_spreads_waiters_over_source_addresses() {
    let mut cfg = ServeConfig::defaults();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.rate_limits = false;
    cfg.max_streams_per_ip = 7;
    let srv = qrlogin_server::spawn(cfg).await.expect("server starts");
    let url = format!("http://{}", srv.addr);

    let mut one = IdleConfig::new(&url, 20, WaitMode::Sse, std::process::id());
    one.hold = Duration::from_secs(1);
    let r = idle(one).await.unwrap();
    assert_eq!(r.waiters_open, 7, "one address holds only its cap: {r:?}");
    assert!(r.errors.keys().any(|k| k.contains("429")), "{r:?}");

    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut three = IdleConfig::new(&url, 20, WaitMode::Sse, std::process::id());
    three.hold = Duration::from_secs(1);
    three.sources = 3;
    three.ready_file = Some(ready.clone());
    three.keep = Duration::from_secs(1);
    let r = idle(three).await.unwrap();
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(r.waiters_open, 20, "{r:?}");
    assert_eq!(r.waiters_open_at_end, 20, "{r:?}");
    assert_eq!(std::fs::read_to_string(&ready).unwrap().trim(), "20");
}

/// `--healthz-baseline`: the requests are sent and answered, and a login's
/// CPU is reported in them (the in-process server's CPU is this process's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_baseline_counts_a_login_in_trivial_requests() {
    let srv = server().await;
    let mut c = RunConfig::new(&format!("http://{}", srv.addr), WaitMode::Sse);
    c.concurrency = 4;
    c.max_logins = Some(200);
    c.server_pid = Some(std::process::id());
    c.healthz_baseline = 2000;
    let r = run(c).await.unwrap();
    assert_clean(&r);
    let h = r.healthz.as_ref().expect("a baseline");
    assert_eq!((h.requests, h.failed), (2000, 0), "{h:?}");
    assert!(h.server_us_per_request.is_some_and(|u| u > 0.0), "{h:?}");
    assert!(r.login_in_healthz.is_some_and(|x| x > 0.0), "{r:?}");
}

#[test]
fn the_binary_prints_json() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(server());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qrlogin-bench"))
        .args([
            "run",
            "--url",
            &format!("http://{}", srv.addr),
            "--concurrency",
            "2",
            "--duration",
            "5",
            "--max-logins",
            "6",
            "--wait",
            "sse",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["completed"], 6, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert!(v["steps"]["wake"]["p99_ms"].is_number(), "{v}");
    // One --url: the report as before, plus the per-instance fields.
    assert_eq!(v["url"], format!("http://{}", srv.addr), "{v}");
    assert_eq!(v["urls"], serde_json::json!([v["url"]]), "{v}");
    assert_eq!(v["instances"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["instances"][0]["browser_logins"], 6, "{v}");
    assert_eq!(v["instances"][0]["phone_logins"], 6, "{v}");
    // The memory store has no hint subscriber: no counter, not zero.
    assert!(v["hints"].is_null(), "{v}");
    assert!(v["redis_pubsub"].is_null(), "{v}");

    let mismatched = std::process::Command::new(env!("CARGO_BIN_EXE_qrlogin-bench"))
        .args([
            "run",
            "--url",
            &format!("http://{}", srv.addr),
            "--url",
            &format!("http://{}", srv.addr),
        ])
        .args(["--server-pid", "1", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!mismatched.status.success());
    let stderr = String::from_utf8_lossy(&mismatched.stderr);
    assert!(stderr.contains("once per --url"), "{stderr}");

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_qrlogin-bench"))
        .args(["run", "--url", "http://198.51.100.7:80", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("loopback"),
        "refused for another reason: {stderr}"
    );
    drop(srv);
}

/// The binaries end to end: `qrlogin-bench idp` announces its issuer, a
/// server verifying JWTs from it serves a short `run --phone-auth jwt`
/// with a distinct RS256 token per login, and every login completes.
#[test]
fn phone_auth_jwt_with_the_idp_binary() {
    let mut idp = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_qrlogin-bench"))
            .args(["idp", "--listen", "127.0.0.1:0", "--exit-after", "120"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    // Kept open (and drained) to the end: the idp prints a second line, and
    // a closed pipe would make that print fail and the idp exit.
    let mut out = std::io::BufReader::new(idp.0.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    std::thread::spawn(move || for _ in out.lines() {});
    let issuer = first
        .trim()
        .strip_prefix("issuer ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(jwt_server(&issuer));
    let url = format!("http://{}", srv.addr);
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--url",
            &url,
            "--concurrency",
            "2",
            "--duration",
            "10",
            "--max-logins",
            "6",
            "--json",
        ];
        args.extend_from_slice(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_qrlogin-bench"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = bench(&["--phone-auth", "jwt", "--idp", &issuer]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["completed"], 6, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
    assert_eq!(v["phone_auth"], "jwt", "{v}");
    assert_eq!(v["phone_tokens"], "per-login", "{v}");
    assert_eq!(v["phone_token_count"], 6, "{v}");
    assert_eq!(v["phone_token_alg"], "RS256", "{v}");

    // The demo sign-in is off with a real verifier: the run says what to do.
    let demo = bench(&[]);
    assert!(!demo.status.success());
    let stderr = String::from_utf8_lossy(&demo.stderr);
    assert!(stderr.contains("--phone-auth jwt"), "{stderr}");
    drop(srv);
}

/// In-process: ES256 tokens, one per login and one shared by all; the
/// pool bounds a run (a token is never used for two logins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_auth_jwt_es256_per_login_and_shared() {
    let idp = qrlogin_bench::idp::spawn(
        "127.0.0.1:0".parse().unwrap(),
        qrlogin_bench::idp::DEFAULT_AUDIENCE,
        IdpAlg::Es256,
    )
    .await
    .unwrap();
    let srv = jwt_server(idp.idp.issuer()).await;
    let mk = |tokens: PhoneTokens| {
        let mut c = RunConfig::new(&format!("http://{}", srv.addr), WaitMode::Sse);
        c.concurrency = 3;
        c.duration = Duration::from_secs(10);
        c.phone_auth = PhoneAuth::Jwt;
        c.idp = Some(idp.idp.issuer().to_string());
        c.phone_tokens = tokens;
        c
    };
    let mut per_login = mk(PhoneTokens::PerLogin);
    per_login.token_pool = Some(12);
    let mut shared = mk(PhoneTokens::Shared);
    shared.max_logins = Some(12);
    let (a, b) = tokio::join!(run(per_login), run(shared));
    let (a, b) = (a.unwrap(), b.unwrap());
    for r in [&a, &b] {
        assert_clean(r);
        assert_eq!(r.completed, 12, "{r:?}");
        assert_eq!(r.phone_token_alg.as_deref(), Some("ES256"), "{r:?}");
    }
    assert_eq!(a.phone_token_count, 12);
    assert!(a.phone_tokens_exhausted, "{a:?}");
    assert_eq!(b.phone_token_count, 1);
    assert!(!b.phone_tokens_exhausted, "{b:?}");
}

/// Set (to a store URL) in the environment of an instance process.
const INSTANCE_STORE_ENV: &str = "QRLOGIN_BENCH_SMOKE_INSTANCE_STORE";

/// Not a test: the body of the instance processes that
/// `two_instances_phone_on_the_other_one` and `soak_checks_every_login_twice`
/// start (this test binary run again with `--ignored --exact
/// instance_process`). It serves like
/// `qrlogin serve --store URL --rate-limits false --demo-users true` on a
/// free port (first stdout line `listening on http://...`) and exits when
/// its parent closes its stdin, or after two minutes.
#[test]
#[ignore = "the instance process of the multi-instance tests, run by them"]
fn instance_process() {
    let store = std::env::var(INSTANCE_STORE_ENV).unwrap_or_else(|_| {
        panic!("only the multi-instance tests run this (they set {INSTANCE_STORE_ENV})")
    });
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let mut cfg = ServeConfig::defaults();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.store = store;
    cfg.rate_limits = false;
    cfg.demo_users = Some(true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        tokio::select! {
            r = qrlogin_server::serve(cfg) => r.expect("the instance serves"),
            _ = tokio::time::sleep(Duration::from_secs(120)) => {}
        }
    });
}

/// An instance process on `store`: its URL and pid (killed on drop).
fn instance(store: &str) -> (Child, String) {
    let mut child = Child(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "instance_process", "--nocapture"])
            .env(INSTANCE_STORE_ENV, store)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(u) = l.strip_prefix("listening on ") {
                    break u.trim().to_string();
                }
            }
            other => panic!("the instance process ended before listening: {other:?}"),
        }
    };
    // Keep reading its stdout so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

/// Two instances on one Redis, 41 logins: login k's browser on instance
/// k mod 2, its phone on the other one. Each instance's own /metrics
/// shows it: it answered the creates, SSE streams and redeems of its
/// browsers and the scans and approves of the *other* instance's logins
/// (21 against 20, so a phone sent to the browser's instance would show),
/// and every wake-up crossed instances through the hints, which the
/// report counts per instance and per login.
#[test]
fn two_instances_phone_on_the_other_one() {
    let redis = RedisServer::start();
    let (a, url_a) = instance(&redis.url());
    let (b, url_b) = instance(&redis.url());
    let mut c = RunConfig::new(&url_a, WaitMode::Sse);
    c.more_urls = vec![url_b.clone()];
    c.server_pid = Some(a.0.id());
    c.more_server_pids = vec![b.0.id()];
    c.redis_url = Some(redis.url());
    c.concurrency = 3;
    c.max_logins = Some(41);
    c.duration = Duration::from_secs(30);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(run(c)).unwrap();
    // Shown with --nocapture: what the report says about the instances.
    eprintln!("{}", qrlogin_bench::run::render(&r));
    assert_clean(&r);
    assert_eq!(r.completed, 41, "{r:?}");
    assert_eq!(r.urls, vec![url_a.clone(), url_b.clone()]);
    assert_eq!(r.instances.len(), 2, "{r:?}");
    let expect = [(&url_a, 21, 20), (&url_b, 20, 21)];
    for (i, (url, browsers, phones)) in r.instances.iter().zip(expect) {
        assert_eq!(&i.url, url);
        assert_eq!(
            (i.browser_logins, i.phone_logins),
            (browsers, phones),
            "{i:?}"
        );
        let req = i.requests.as_ref().unwrap_or_else(|| panic!("{i:?}"));
        let n = |route: &str| req.get(route).copied().unwrap_or(0);
        assert_eq!(n("/v1/logins"), browsers, "{req:?}");
        assert_eq!(n("/v1/logins/{id}/events"), browsers, "{req:?}");
        assert_eq!(n("/v1/logins/{id}/redeem"), browsers, "{req:?}");
        assert_eq!(n("/v1/mobile/logins/{id}/scan"), phones, "{req:?}");
        assert_eq!(n("/v1/mobile/logins/{id}/approve"), phones, "{req:?}");
        let hints = i
            .hint_messages
            .unwrap_or_else(|| panic!("no hint counter: {i:?}"));
        assert!(hints > 0, "{i:?}");
        assert!(i.hint_messages_per_login.is_some_and(|x| x > 0.0), "{i:?}");
        assert!(
            i.hint_messages_unwatched.is_some_and(|u| u <= hints),
            "{i:?}"
        );
        assert!(i.cpu_s.is_some() && i.cpu_us_per_login.is_some(), "{i:?}");
        assert!(i.rss_after.is_some(), "{i:?}");
    }
    let h = r.hints.as_ref().unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(h.instances_reporting, 2);
    assert_eq!(
        h.messages,
        r.instances
            .iter()
            .filter_map(|i| i.hint_messages)
            .sum::<u64>()
    );
    assert!(h.per_login > 0.0, "{h:?}");
    // The total server CPU is both instances'.
    let both: f64 = r.instances.iter().filter_map(|i| i.cpu_s).sum();
    assert_eq!(r.cpu.server_s, Some(both));
    let p = r.redis_pubsub.as_ref().unwrap_or_else(|| panic!("{r:?}"));
    assert!(p.publishes_per_login > 0.0, "{p:?}");
    assert!(p.net_output_bytes_per_login > 0.0, "{p:?}");
    // The hint counters carry no labels: no login id (or anything else of
    // a hint) reaches /metrics.
    for url in [&url_a, &url_b] {
        let i = qrlogin_bench::instances::Instance::new(
            url.clone(),
            qrlogin_bench::http::Http::new(url, Duration::from_secs(5)),
            None,
        );
        let page = rt.block_on(i.scrape()).unwrap();
        let hints: Vec<_> = page
            .samples
            .iter()
            .filter(|s| s.name.starts_with("qrlogin_hint_messages"))
            .collect();
        assert!(!hints.is_empty(), "no hint counter on {url}");
        assert!(hints.iter().all(|s| s.labels.is_empty()), "{hints:?}");
    }
    drop((a, b));
}

/// `soak` on two instances of one Redis, briefly and without a restart:
/// every login completes, each is approved and redeemed a second time and
/// both are refused, nothing is retried, the probe sees no outage, and the
/// timeline and RSS samples cover the run.
#[test]
fn soak_checks_every_login_twice() {
    let redis = RedisServer::start();
    let (a, url_a) = instance(&redis.url());
    let (b, url_b) = instance(&redis.url());
    let cfg = qrlogin_bench::soak::SoakConfig {
        urls: vec![url_a, url_b],
        server_pids: vec![a.0.id(), b.0.id()],
        redis_url: redis.url(),
        rate: 20.0,
        concurrency: 8,
        duration: Duration::from_secs(3),
        timeout: Duration::from_secs(10),
        retry_pause: Duration::from_millis(100),
        retry_for: Duration::from_secs(5),
        rss_every: Duration::from_secs(1),
        username: "alice".into(),
        password: "wonderland".into(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(qrlogin_bench::soak::soak(cfg)).unwrap();
    eprintln!("{}", qrlogin_bench::soak::render(&r));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.failed, 0, "{r:?}");
    assert!(r.completed >= 50, "{r:?}");
    assert_eq!(r.started, r.completed, "{r:?}");
    assert_eq!(r.approve_again_checked, r.completed);
    assert_eq!(r.redeem_again_checked, r.completed);
    assert_eq!((r.double_approve, r.double_redeem), (0, 0));
    assert!(r.retried_503.is_empty() && r.found_done.is_empty(), "{r:?}");
    assert_eq!(r.sse_ended_early, 0);
    assert!(r.outages.is_empty(), "{:?}", r.outages);
    assert_eq!(
        r.timeline.iter().map(|s| s.completed).sum::<u64>(),
        r.completed
    );
    assert!(r.timeline.len() >= 3, "{:?}", r.timeline);
    assert!(r.rss.len() >= 3, "{:?}", r.rss);
    assert!(r
        .rss
        .iter()
        .all(|s| s.rss_kb.len() == 2 && s.rss_kb.iter().all(|x| x.is_some())));
    drop((a, b));
}
