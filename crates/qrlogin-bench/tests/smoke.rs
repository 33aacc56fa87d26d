//! Smoke test of the load generator against an in-process server with the
//! memory store: a couple of seconds of each wait mode, checking
//! correctness (no errors, every started login completed), never speed.
//! Figures come from `qrlogin-bench` runs documented in BENCHMARKS.md.

use qrlogin_bench::{idle, run, Binding, IdleConfig, RunConfig, RunReport, WaitMode};
use qrlogin_server::ServeConfig;
use std::time::Duration;

async fn server() -> qrlogin_server::Running {
    let mut cfg = ServeConfig::defaults();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    // A load generator on one IP is exactly what the limits stop.
    cfg.rate_limits = false;
    qrlogin_server::spawn(cfg).await.expect("server starts")
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
