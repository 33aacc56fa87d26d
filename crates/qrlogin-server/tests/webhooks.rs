//! Webhooks and the audit log against the real binary: a real receiver
//! (`webhooks/receiver.py`, the Standard Webhooks reference library in a
//! private virtualenv made by ./scripts/test from `webhooks/requirements.txt`)
//! verifies every signature and records what it got; private redis-servers
//! for the shared-store cases; a real SIGKILL for the crash case.

mod common;

use common::*;
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks")
}

fn python() -> PathBuf {
    let dir = dir();
    let py = dir.join(".venv/bin/python");
    assert!(
        py.exists(),
        "the webhook receiver's virtualenv is missing at {venv}: ./scripts/test makes it, or by hand:\n  \
         python3 -m venv {venv} && {venv}/bin/pip install -r {req}",
        venv = dir.join(".venv").display(),
        req = dir.join("requirements.txt").display(),
    );
    py
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The verifying receiver, on its own port; killed on drop.
struct Receiver {
    child: Child,
    out: PathBuf,
}

impl Receiver {
    fn start(port: u16, secret_file: &Path, out: &Path) -> Receiver {
        use std::io::BufRead as _;
        let mut child = Command::new(python())
            .arg(dir().join("receiver.py"))
            .arg(port.to_string())
            .arg(secret_file)
            .arg(out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting receiver.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("receiver output");
        assert_eq!(line.trim(), "ready", "receiver did not start");
        Receiver {
            child,
            out: out.to_path_buf(),
        }
    }

    /// Every request so far; each must have had a valid signature.
    fn got(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("receiver line"))
            .collect();
        for l in &lines {
            assert_eq!(l["ok"], true, "a request failed verification: {l}");
        }
        lines
    }

    /// Waits until `n` distinct webhook ids arrived; returns the first
    /// delivery of each, in arrival order.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let mut seen = HashSet::new();
            let firsts: Vec<Value> = self
                .got()
                .into_iter()
                .filter(|l| seen.insert(l["id"].as_str().unwrap_or("").to_string()))
                .collect();
            if firsts.len() >= n || start.elapsed() > within {
                assert_eq!(firsts.len(), n, "events received: {firsts:#?}");
                return firsts;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    work: tempfile::TempDir,
    port: u16,
}

impl Setup {
    fn new() -> Setup {
        let work = tempfile::tempdir().expect("temp dir");
        std::fs::write(work.path().join("secret"), format!("{SECRET}\n")).expect("secret");
        Setup {
            work,
            port: free_port(),
        }
    }
    fn secret_file(&self) -> PathBuf {
        self.work.path().join("secret")
    }
    fn receiver(&self) -> Receiver {
        Receiver::start(
            self.port,
            &self.secret_file(),
            &self.work.path().join("got.jsonl"),
        )
    }
    fn path(&self, name: &str) -> String {
        self.work.path().join(name).display().to_string()
    }
    /// `qrlogin serve` with webhooks to the receiver's port, and `extra`.
    fn server(&self, extra: &[&str]) -> Proc {
        let url = format!("http://127.0.0.1:{}/hooks", self.port);
        let secret = self.secret_file().display().to_string();
        let mut args = vec![
            "--rate-limits",
            "false",
            "--webhook-url",
            &url,
            "--webhook-secret-file",
            &secret,
        ];
        args.extend_from_slice(extra);
        Proc::start(&args)
    }
}

/// A login created with header binding by a "Chrome" browser.
async fn create(base: &str) -> Login {
    let b = Browser::new(base);
    let r = send(
        b.http
            .post(b.url("/v1/logins"))
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, CHROME)
            .body(r#"{"binding":"header"}"#),
    )
    .await;
    let v = r.ok_json(StatusCode::CREATED);
    Login {
        id: v["login_id"].as_str().expect("login_id").to_string(),
        secret: v["browser_secret"].as_str().map(str::to_owned),
        set_cookie: None,
        created: v,
    }
}

/// Create, scan, approve, redeem; returns the login, the session token and
/// the phone.
async fn full_login(base: &str, phone: &Phone) -> (Login, String) {
    let login = create(base).await;
    phone.scan_ok(&login.id).await;
    phone.approve_ok(&login.id).await;
    let r = Browser::new(base).redeem(&login).await;
    let token = r.ok_json(StatusCode::OK)["token"]
        .as_str()
        .expect("token")
        .to_string();
    (login, token)
}

fn kinds(got: &[Value]) -> Vec<(String, String)> {
    got.iter()
        .map(|l| {
            (
                l["body"]["type"].as_str().unwrap_or("").to_string(),
                l["body"]["data"]["login_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

async fn logins_deny_and_logout(store: &str) {
    let setup = Setup::new();
    let receiver = setup.receiver();
    let audit = setup.path("audit.jsonl");
    let srv = setup.server(&["--store", store, "--audit-log", &audit]);
    let phone = Phone::sign_in(&srv.base, ALICE).await;
    let (login, token) = full_login(&srv.base, &phone).await;
    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    let id = login.id.clone();
    assert_eq!(
        kinds(&got),
        [
            ("login.scanned".to_string(), id.clone()),
            ("login.approved".to_string(), id.clone()),
            ("login.consumed".to_string(), id.clone()),
        ]
    );
    for (n, l) in got.iter().enumerate() {
        assert_eq!(l["id"], format!("evt_{id}_{}", n + 2));
        let body = &l["body"];
        let ts = body["timestamp"].as_str().expect("timestamp");
        assert!(ts.ends_with('Z') && ts.contains('T'), "RFC 3339: {ts}");
        let d = &body["data"];
        assert_eq!(d["user"]["id"], ALICE_ID, "{d}");
        assert_eq!(
            d["user"]["name"].as_str().map(|s| !s.is_empty()),
            Some(true)
        );
        assert_eq!(d["ip"], "127.0.0.1");
        assert_eq!(d["browser"]["user_agent"], CHROME);
        assert!(
            d["browser"]["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("Chrome"),
            "{d}"
        );
        assert_eq!(d["browser"]["os"], "Windows 10");
        assert!(d["place"].is_null() && d["risk"].is_null() && d["client_id"].is_null());
    }

    // Deny gives login.denied.
    let denied = create(&srv.base).await;
    phone.scan_ok(&denied.id).await;
    phone.deny(&denied.id).await.ok_json(StatusCode::OK);
    // Logout gives session.revoked.
    let b = Browser::new(&srv.base);
    let r = send(b.http.post(b.url("/v1/session/logout")).bearer_auth(&token)).await;
    assert!(r.status.is_success(), "logout: {}", r.text());
    let got = receiver.wait_for(6, Duration::from_secs(10)).await;
    let mut rest = kinds(&got[3..]);
    rest.sort();
    assert_eq!(
        rest,
        [
            ("login.denied".to_string(), denied.id.clone()),
            ("login.scanned".to_string(), denied.id.clone()),
            ("session.revoked".to_string(), id.clone()),
        ]
    );
    let revoked = got
        .iter()
        .find(|l| l["body"]["type"] == "session.revoked")
        .expect("revoked");
    assert_eq!(revoked["id"], format!("evt_{id}_revoked"));
    assert_eq!(revoked["body"]["data"]["user"]["id"], ALICE_ID);

    // The audit log: one line per transition and session event, and no
    // secret or token anywhere in it (nor in what the receiver got).
    let text = std::fs::read_to_string(&audit).expect("audit log");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect();
    let of = |lid: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["login_id"] == lid)
            .map(|l| l["type"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        of(&id),
        [
            "login.created",
            "login.scanned",
            "login.approved",
            "login.consumed",
            "session.revoked"
        ]
    );
    assert_eq!(
        of(&denied.id),
        ["login.created", "login.scanned", "login.denied"]
    );
    for l in lines.iter().filter(|l| l["login_id"] == id.as_str()) {
        assert!(
            l["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{l}"
        );
        if l["type"] != "login.created" {
            assert_eq!(l["user_id"], ALICE_ID, "{l}");
        }
        assert!(
            l.get("place").is_some() && l.get("risk").is_some() && l.get("client_id").is_some()
        );
        if l["type"] != "session.revoked" {
            assert_eq!(l["ip"], "127.0.0.1", "{l}");
        }
    }
    let received = std::fs::read_to_string(&receiver.out).expect("receiver file");
    let browser_secret = login.secret.clone().expect("header binding secret");
    let session_secret = token.split_once('.').map(|(_, s)| s).unwrap_or(&token);
    for (what, secret) in [
        ("browser secret", browser_secret.as_str()),
        ("session token", token.as_str()),
        ("session token's secret part", session_secret),
        ("mobile token", phone.token.as_str()),
        ("webhook secret", SECRET.trim_start_matches("whsec_")),
    ] {
        assert!(!text.contains(secret), "the audit log holds the {what}");
        assert!(!received.contains(secret), "a webhook holds the {what}");
        assert!(
            !srv.log().contains(secret),
            "the service log holds the {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_deny_and_logout_are_delivered_signed_and_audited_memory() {
    logins_deny_and_logout("memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_deny_and_logout_are_delivered_signed_and_audited_redis() {
    let redis = redis_server().await;
    logins_deny_and_logout(&redis.url()).await;
}

/// With a GeoIP database, the events carry the browser's place and, from
/// the scan on, the risk verdict, in the API's JSON form (both stores: on
/// Redis the scripts convert the record's stored form).
async fn events_carry_place_and_risk(store: &str) {
    let setup = Setup::new();
    let receiver = setup.receiver();
    let (_geo, db) = mmdb::world_with_loopback_file();
    let db = db.display().to_string();
    let srv = setup.server(&["--store", store, "--geoip-db", &db]);
    let phone = Phone::sign_in(&srv.base, ALICE).await;
    let (login, _token) = full_login(&srv.base, &phone).await;
    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "{got:?}");
    for l in &got {
        let d = &l["body"]["data"];
        assert_eq!(d["login_id"], login.id.as_str(), "{d}");
        assert_eq!(d["place"]["city"], "Berlin", "{d}");
        assert_eq!(d["place"]["country_code"], "DE", "{d}");
        assert_eq!(d["place"]["asn"], 64500, "{d}");
        assert_eq!(d["place"]["coords"]["lat_e6"], 52_520_000, "{d}");
        // Browser and phone both on 127.0.0.1: same place, same network.
        assert_eq!(d["risk"]["level"], "low", "{d}");
        assert_eq!(d["risk"]["reasons"], serde_json::json!([]), "{d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_place_and_risk_memory() {
    events_carry_place_and_risk("memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_place_and_risk_redis() {
    let redis = redis_server().await;
    events_carry_place_and_risk(&redis.url()).await;
}

/// The receiver is down for a while: every event arrives once it is up,
/// each under one id (retries reuse it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_receiver_outage() {
    let redis = redis_server().await;
    let setup = Setup::new();
    let srv = setup.server(&["--store", &redis.url()]);
    let phone = Phone::sign_in(&srv.base, ALICE).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(full_login(&srv.base, &phone).await.0.id);
    }
    // Attempts fail meanwhile (connection refused) and are retried.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = send(raw_client().get(format!("{}/metrics", srv.base)))
        .await
        .text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("qrlogin_webhooks_failed_total") && !l.ends_with(" 0")),
        "failed attempts are counted:\n{metrics}"
    );
    let receiver = setup.receiver();
    let got = receiver.wait_for(9, Duration::from_secs(20)).await;
    // One id per event: (type, login) pairs are as many as ids.
    let mut by_event: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for l in receiver.got() {
        let k = kinds(std::slice::from_ref(&l)).remove(0);
        by_event
            .entry(k)
            .or_default()
            .insert(l["id"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(by_event.len(), 9);
    assert!(by_event.values().all(|ids| ids.len() == 1), "{by_event:?}");
    for id in &ids {
        let mine: Vec<_> = kinds(&got)
            .into_iter()
            .filter(|(_, lid)| lid == id)
            .map(|(t, _)| t)
            .collect();
        assert_eq!(mine, ["login.scanned", "login.approved", "login.consumed"]);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = send(raw_client().get(format!("{}/metrics", srv.base)))
        .await
        .text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("qrlogin_webhooks_delivered_total")),
        "{metrics}"
    );
}

/// An instance that took events and died before delivering them (SIGKILL):
/// another instance on the same Redis takes them all over and delivers
/// them, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_s_events_are_delivered_by_another() {
    let redis = redis_server().await;
    let setup = Setup::new();
    let store = redis.url();
    let reclaim = ["--store", store.as_str(), "--webhook-reclaim-after", "2"];
    let mut a = setup.server(&reclaim);
    let phone = Phone::sign_in(&a.base, ALICE).await;
    let (login, _) = full_login(&a.base, &phone).await;
    // A took all three events (Redis says they are pending, delivered to
    // a consumer) and tried the first (nobody listens yet; the login's later
    // events wait behind it, in order).
    let start = Instant::now();
    loop {
        let pending = Command::new("redis-cli")
            .arg("-s")
            .arg(redis.socket_path())
            .args(["XPENDING", "qrl:events", "qrl-webhooks"])
            .output()
            .expect("redis-cli (apt-get install -y redis-tools)");
        let first = String::from_utf8_lossy(&pending.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let m = send(raw_client().get(format!("{}/metrics", a.base)))
            .await
            .text();
        let tried = m
            .lines()
            .any(|l| l.starts_with("qrlogin_webhooks_failed_total") && l.contains("login.scanned"));
        if first == "3" && tried {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "A never took and tried the events (pending {first:?}):\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.kill();
    let receiver = setup.receiver();
    let b = setup.server(&reclaim);
    let got = receiver.wait_for(3, Duration::from_secs(15)).await;
    assert_eq!(
        kinds(&got).into_iter().map(|(t, _)| t).collect::<Vec<_>>(),
        ["login.scanned", "login.approved", "login.consumed"]
    );
    assert!(kinds(&got).iter().all(|(_, lid)| *lid == login.id));
    drop(b);
}

/// Half a configuration is refused at start-up, with a clear message.
#[test]
fn half_a_webhook_configuration_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_qrlogin"))
        .args(["check-config", "--webhook-url", "http://127.0.0.1:1/x"])
        .output()
        .expect("run qrlogin");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--webhook-secret-file"));
    let work = tempfile::tempdir().expect("dir");
    let bad = work.path().join("bad");
    std::fs::write(&bad, "not-a-secret-value").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_qrlogin"))
        .args([
            "check-config",
            "--webhook-url",
            "http://127.0.0.1:1/x",
            "--webhook-secret-file",
        ])
        .arg(&bad)
        .output()
        .expect("run qrlogin");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("whsec_") && !err.contains("not-a-secret-value"),
        "{err}"
    );
}
