//! Helpers of the adversarial security suite (`tests/security_*.rs`), on top
//! of [`crate::common`]. Included by each suite file as
//! `#[path = "common/security.rs"] mod sec;` after `mod common;`.
//!
//! * [`Bystander`] — someone who photographed the QR: knows the login id,
//!   not the browser secret; calls the browser API with no secret, a forged
//!   one, or the right secret on the wrong login.
//! * [`unlimited`] / [`clocked`] — the service without rate limits, and with
//!   a [`ManualClock`].
//! * [`redis_dump`] — every key and value of a private redis-server (over
//!   its unix socket, RESP), to check that only hashes are stored.
//! * [`Bin`] — the real `qrlogin` binary as a child process with
//!   `QRLOGIN_LOG=debug`, its stderr captured.

#![allow(dead_code)]

use crate::common::*;
use qrlogin_core::{BrowserSecret, Clock, ManualClock, SystemClock};
use qrlogin_server::ServeConfig;
use qrlogin_testkit::RedisServer;
use reqwest::StatusCode;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::time::Duration;

/// The service on `kind` with `cfg` and rate limits off (tests that make
/// many requests from one address).
pub async fn unlimited_with(kind: StoreKind, mut cfg: ServeConfig) -> App {
    cfg.rate_limits = false;
    app_with(kind, cfg, None).await
}

/// The default service on `kind` with rate limits off.
pub async fn unlimited(kind: StoreKind) -> App {
    unlimited_with(kind, config()).await
}

/// The service on `kind` with `cfg` (rate limits off) and a manual clock
/// starting now.
pub async fn clocked(kind: StoreKind, mut cfg: ServeConfig) -> (App, Arc<ManualClock>) {
    cfg.rate_limits = false;
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let app = app_with(kind, cfg, Some(clock.clone() as Arc<dyn Clock>)).await;
    (app, clock)
}

/// A well-formed browser secret that belongs to no login.
pub fn forged_secret() -> String {
    BrowserSecret::random().expose()
}

/// How a bystander presents (or does not present) a browser secret.
#[derive(Debug, Clone)]
pub enum Cred {
    /// Nothing at all.
    None,
    /// `Authorization: Bearer <secret>`.
    Bearer(String),
    /// `Cookie: qrl_bs=<secret>`.
    Cookie(String),
}

impl Cred {
    /// The credentials a bystander tries: none, forged bearer, forged
    /// cookie, a malformed one, and `others` (e.g. the secret of another
    /// login).
    pub fn attempts(others: &[String]) -> Vec<Cred> {
        let mut v = vec![
            Cred::None,
            Cred::Bearer(forged_secret()),
            Cred::Cookie(forged_secret()),
            Cred::Bearer("not-a-secret".into()),
            Cred::Cookie(String::new()),
        ];
        for o in others {
            v.push(Cred::Bearer(o.clone()));
            v.push(Cred::Cookie(o.clone()));
        }
        v
    }

    fn apply(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Cred::None => rb,
            Cred::Bearer(s) => rb.bearer_auth(s),
            Cred::Cookie(s) => rb.header("cookie", format!("qrl_bs={s}")),
        }
    }
}

/// Someone who knows a login id (from the QR) but not its browser secret.
pub struct Bystander {
    pub base: String,
    pub http: reqwest::Client,
}

impl Bystander {
    pub fn new(base: &str) -> Bystander {
        Bystander {
            base: base.to_string(),
            http: raw_client(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn status(&self, id: &str, query: &str, cred: &Cred) -> Reply {
        send(cred.apply(self.http.get(self.url(&format!("/v1/logins/{id}{query}"))))).await
    }

    pub async fn events(&self, id: &str, cred: &Cred) -> Reply {
        send(
            cred.apply(
                self.http
                    .get(self.url(&format!("/v1/logins/{id}/events")))
                    .header("accept", "text/event-stream"),
            ),
        )
        .await
    }

    pub async fn redeem(&self, id: &str, cred: &Cred) -> Reply {
        send(cred.apply(self.http.post(self.url(&format!("/v1/logins/{id}/redeem"))))).await
    }

    pub async fn cancel(&self, id: &str, cred: &Cred) -> Reply {
        send(cred.apply(self.http.delete(self.url(&format!("/v1/logins/{id}"))))).await
    }

    /// Every browser-side call with every credential in `creds`; each
    /// answer with a label.
    pub async fn try_everything(&self, id: &str, creds: &[Cred]) -> Vec<(String, Reply)> {
        let mut out = Vec::new();
        for c in creds {
            out.push((format!("status {c:?}"), self.status(id, "", c).await));
            out.push((
                format!("long-poll {c:?}"),
                self.status(id, "?wait=1", c).await,
            ));
            out.push((format!("events {c:?}"), self.events(id, c).await));
            out.push((format!("redeem {c:?}"), self.redeem(id, c).await));
            out.push((format!("cancel {c:?}"), self.cancel(id, c).await));
        }
        out
    }
}

/// The 404 a browser caller gets for a login id nobody ever created: the
/// reference every bystander answer must equal.
pub async fn unknown_login_404(base: &str) -> Reply {
    let id = qrlogin_core::LoginId::random().to_string();
    let r = Bystander::new(base)
        .status(&id, "", &Cred::Bearer(forged_secret()))
        .await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");
    r
}

/// Asserts that every reply is the same 404 as `reference`: same status,
/// same body bytes, same content type, no cookie, no user data.
pub fn assert_all_like_404(replies: &[(String, Reply)], reference: &Reply) {
    for (what, r) in replies {
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{what}: bystander got {} {}",
            r.status,
            r.text()
        );
        assert_eq!(
            r.body, reference.body,
            "{what}: 404 body differs from an unknown login's"
        );
        assert_eq!(
            r.headers.get("content-type"),
            reference.headers.get("content-type"),
            "{what}: content type differs"
        );
        assert!(
            r.set_cookies().is_empty(),
            "{what}: bystander got a cookie {:?}",
            r.set_cookies()
        );
    }
}

// ---------------------------------------------------------------------------
// Redis contents

/// One RESP value, flattened to its strings.
fn read_resp(r: &mut BufReader<std::os::unix::net::UnixStream>, out: &mut Vec<String>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("RESP line");
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" | "-" | ":" => out.push(rest.to_string()),
        "$" => {
            let n: i64 = rest.parse().expect("bulk length");
            if n >= 0 {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf).expect("bulk body");
                buf.truncate(n as usize);
                out.push(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        "*" => {
            let n: i64 = rest.parse().expect("array length");
            for _ in 0..n.max(0) {
                read_resp(r, out);
            }
        }
        other => panic!("unexpected RESP type {other:?} in {line:?}"),
    }
}

/// Sends one command (as RESP) to the server's unix socket; all strings of
/// the reply.
pub fn redis_call(server: &RedisServer, args: &[&str]) -> Vec<String> {
    let mut s =
        std::os::unix::net::UnixStream::connect(server.socket_path()).expect("connect to redis");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).expect("send to redis");
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    read_resp(&mut r, &mut out);
    out
}

/// Every key of the server with every value it holds, as one text.
pub fn redis_dump(server: &RedisServer) -> String {
    let mut text = String::new();
    for key in redis_call(server, &["KEYS", "*"]) {
        let ty = redis_call(server, &["TYPE", &key]);
        let vals = match ty.first().map(String::as_str) {
            Some("hash") => redis_call(server, &["HGETALL", &key]),
            Some("string") => redis_call(server, &["GET", &key]),
            // The per-user session index: login ids and scores.
            Some("zset") => redis_call(server, &["ZRANGE", &key, "0", "-1", "WITHSCORES"]),
            other => panic!("unexpected key type {other:?} for {key}"),
        };
        text.push_str(&format!("{key} => {vals:?}\n"));
    }
    text
}

// ---------------------------------------------------------------------------
// the real binary, logging at debug

/// A `qrlogin serve` child process logging at `QRLOGIN_LOG=debug` (or a
/// chosen level); stderr goes to a file, read with [`Bin::log`]. Killed on
/// drop.
pub struct Bin {
    pub base: String,
    child: std::process::Child,
    log: tempfile::NamedTempFile,
}

impl Bin {
    pub fn start(args: &[&str]) -> Bin {
        Bin::start_logging("debug", args)
    }

    /// Like [`Bin::start`] with `QRLOGIN_LOG=level`.
    pub fn start_logging(level: &str, args: &[&str]) -> Bin {
        use std::process::{Command, Stdio};
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_qrlogin"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("QRLOGIN_LOG", level)
            // The demo users (which the tests sign in as) default to off
            // with a shared store; on here unless the test picks a real
            // verifier. A flag in `args` still wins over the environment.
            .envs((!args.contains(&"--mobile-verifier")).then_some(("QRLOGIN_DEMO_USERS", "true")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.reopen().expect("log file")))
            .spawn()
            .expect("spawning the qrlogin binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            }
        });
        let mut bin = Bin {
            base: String::new(),
            child,
            log,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => match line.trim().strip_prefix("listening on ") {
                Some(url) => bin.base = url.trim_end_matches('/').to_string(),
                None => panic!("first stdout line {line:?}; log:\n{}", bin.log()),
            },
            Err(_) => panic!("qrlogin did not start; log:\n{}", bin.log()),
        }
        bin
    }

    /// Everything the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
