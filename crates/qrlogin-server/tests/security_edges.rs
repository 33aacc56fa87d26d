//! Adversarial suite, part 11: the edges (issue 11; SECURITY.md, property 7).
//!
//! * One canonical client address: on a dual-stack listener (`[::]:0`, what
//!   containers do) IPv4 clients arrive as `::ffff:a.b.c.d`; they must
//!   still get a rate-limit bucket each, be on their own /24 for on-risk
//!   matching, show as IPv4 on the phone, and match an IPv4 trusted proxy.
//! * `X-Forwarded-For` from a trusted proxy: ports and brackets are read;
//!   garbage ends the walk at the proxy, never at the spoofed value left of
//!   it; CIDR ranges of proxies, IPv4 and IPv6 (`--trusted-proxies` on
//!   an IPv6 listener, through the real binary).
//! * The audit log on a dual-stack listener spells IPv4 clients as IPv4.
//! * Slow and greedy clients, with raw sockets: 2,000 half-sent request
//!   heads (and a few trickling ones) are closed at `--header-timeout`
//!   while a normal client is served throughout; idle keep-alive is closed
//!   at `--keepalive-timeout` (which may be longer than the header timeout),
//!   a waiting browser never; `--max-connections` pauses accepting (warning
//!   and metric) and resumes; `--max-streams-per-ip` answers 429 with
//!   `Retry-After` on the next stream.
//! * `--rate-limit` through the real binary: flag and config file.

#[macro_use]
mod common;
#[path = "common/security.rs"]
mod sec;

use common::*;
use futures_util::future::join_all;
use qrlogin_server::config::MatchMode;
use reqwest::StatusCode;
use sec::*;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

per_store!(
    a_dual_stack_listener_sees_ipv4_clients_as_ipv4,
    forwarded_for_garbage_never_launders_a_spoofed_address,
);

/// A client whose sockets come from `local` (any 127/8 address is ours).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().expect("local address"))
        .build()
        .expect("client")
}

/// `POST /v1/logins` (header binding) from `http`, with `extra` headers.
async fn create_with(http: &reqwest::Client, base: &str, extra: &[(&str, &str)]) -> Reply {
    let mut rb = http
        .post(format!("{base}/v1/logins"))
        .json(&serde_json::json!({"binding": "header"}));
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    send(rb).await
}

fn login_of(r: &Reply) -> Login {
    let v = r.ok_json(StatusCode::CREATED);
    Login {
        id: v["login_id"].as_str().expect("login_id").to_string(),
        secret: v["browser_secret"].as_str().map(str::to_owned),
        created: v,
        set_cookie: None,
    }
}

/// The phone `phone` scans `id` with its sockets from `local`.
async fn scan_from(phone: &Phone, local: &str, id: &str) -> Value {
    let r = send(
        client_from(local)
            .post(format!("{}/v1/mobile/logins/{id}/scan", phone.base))
            .bearer_auth(&phone.token),
    )
    .await;
    r.ok_json(StatusCode::OK)
}

async fn a_dual_stack_listener_sees_ipv4_clients_as_ipv4(kind: StoreKind) {
    let mut cfg = config();
    cfg.match_code = MatchMode::OnRisk;
    cfg.trusted_proxies = vec!["127.0.0.5".parse().unwrap()];
    cfg.rate_limit = vec!["create=60/min,burst=5".parse().unwrap()];
    // The audit log records the same canonical address.
    let audit_dir = tempfile::tempdir().expect("temp dir");
    let audit = audit_dir.path().join("audit.jsonl");
    cfg.audit_log = Some(audit.to_str().expect("utf-8 path").to_string());
    let app = app_at(kind, cfg, None, "[::]:0").await;
    assert!(app.running.addr.is_ipv6(), "{}", app.running.addr);
    // IPv4 clients reach the dual-stack socket through 127.0.0.1.
    let base = format!("http://127.0.0.1:{}", app.running.addr.port());
    let phone = Phone::sign_in(&base, ALICE).await;

    // 1. Two IPv4 sources, two buckets: flooding from 127.0.0.2 does not
    //    refuse 127.0.0.3 (as one IPv6 /64 "::ffff:0:0/64" it did).
    let a = client_from("127.0.0.2");
    let floods = join_all((0..12).map(|_| create_with(&a, &base, &[]))).await;
    let refused = floods
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        refused >= 5,
        "the burst of 5 held for 127.0.0.2: {refused} refused"
    );
    let b = create_with(&client_from("127.0.0.3"), &base, &[]).await;
    assert_eq!(
        b.status,
        StatusCode::CREATED,
        "127.0.0.3 was limited by 127.0.0.2's creates: {}",
        b.text()
    );

    // 2. The phone is told the browser's IPv4 address and /24, and matching
    //    asks exactly when they are on different IPv4 /24s.
    let login = login_of(&b);
    let ctx = scan_from(&phone, "127.1.0.2", &login.id).await;
    assert_eq!(ctx["browser"]["ip"], "127.0.0.3", "{ctx}");
    assert_eq!(ctx["browser"]["network"], "127.0.0.0/24", "{ctx}");
    assert!(
        ctx.get("match_choices").is_some(),
        "browser 127.0.0.3 and phone 127.1.0.2 are on different networks: {ctx}"
    );
    let near = login_of(&create_with(&client_from("127.0.0.4"), &base, &[]).await);
    let ctx = scan_from(&phone, "127.0.0.9", &near.id).await;
    assert!(
        ctx.get("match_choices").is_none(),
        "browser and phone on one /24 are not asked: {ctx}"
    );

    // 3. An IPv4 trusted proxy is recognised: its X-Forwarded-For counts.
    let proxied = create_with(
        &client_from("127.0.0.5"),
        &base,
        &[("x-forwarded-for", "198.51.100.7")],
    )
    .await;
    let ctx = scan_from(&phone, "127.0.0.9", &login_of(&proxied).id).await;
    assert_eq!(ctx["browser"]["ip"], "198.51.100.7", "{ctx}");
    // ...and nobody else's does.
    let spoofed = create_with(
        &client_from("127.0.0.6"),
        &base,
        &[("x-forwarded-for", "198.51.100.7")],
    )
    .await;
    let ctx = scan_from(&phone, "127.0.0.9", &login_of(&spoofed).id).await;
    assert_eq!(ctx["browser"]["ip"], "127.0.0.6", "{ctx}");

    // IPv6 clients keep their IPv6 address.
    let v6 = format!("http://[::1]:{}", app.running.addr.port());
    let r = create_with(&raw_client(), &v6, &[]).await;
    let v6_login = login_of(&r);
    let ctx = scan_from(&phone, "127.0.0.9", &v6_login.id).await;
    assert_eq!(ctx["browser"]["ip"], "::1", "{ctx}");

    // 4. The audit log's lines carry the IPv4 spelling, never `::ffff:`.
    let text = std::fs::read_to_string(&audit).expect("the audit log");
    assert!(
        !text.contains("::ffff:"),
        "a mapped address in the audit log:\n{text}"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let scanned_ip = |id: &str| {
        lines
            .iter()
            .find(|l| l["type"] == "login.scanned" && l["login_id"] == id)
            .map(|l| l["ip"].clone())
            .unwrap_or_else(|| panic!("no login.scanned line for {id} in:\n{text}"))
    };
    assert_eq!(scanned_ip(&login.id), "127.0.0.3", "{text}");
    assert_eq!(scanned_ip(&near.id), "127.0.0.4", "{text}");
    assert_eq!(scanned_ip(&login_of(&proxied).id), "198.51.100.7", "{text}");
    assert_eq!(scanned_ip(&login_of(&spoofed).id), "127.0.0.6", "{text}");
    assert_eq!(scanned_ip(&v6_login.id), "::1", "{text}");
}

/// IPv6 proxies by CIDR range, through the real binary on an IPv6 listener
/// (`--listen [::1]:0 --trusted-proxies ::1/128,fd00::/8`, the flag's own
/// comma-separated syntax): the test client at ::1 is a trusted proxy, so
/// its `X-Forwarded-For` is walked, and every hop inside fd00::/8 is
/// skipped as a proxy too; the first hop outside the range is the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_proxy_ranges_from_the_flag_are_trusted() {
    let srv = Proc::start(&[
        "--listen",
        "[::1]:0",
        "--store",
        "memory",
        "--trusted-proxies",
        "::1/128,fd00::/8",
    ]);
    assert!(srv.base.starts_with("http://[::1]:"), "{}", srv.base);
    let phone = Phone::sign_in(&srv.base, ALICE).await;
    let http = raw_client();
    for (xff, want) in [
        // fd00::2 is in fd00::/8: a proxy; the client is left of it.
        ("198.51.100.7, fd00::2", "198.51.100.7"),
        ("2001:db8::7, [fdff:ffff::1]:443, fd00::2", "2001:db8::7"),
        // fc00::1 is just outside fd00::/8: it is the client.
        ("198.51.100.7, fc00::1, fd00::2", "fc00::1"),
        // Garbage ends the walk at the last trusted hop.
        ("198.51.100.7, unknown, fd00::2", "fd00::2"),
        // Nothing forwarded: the trusted peer itself.
        ("", "::1"),
    ] {
        let extra: &[(&str, &str)] = match xff {
            "" => &[],
            _ => &[("x-forwarded-for", xff)],
        };
        let r = create_with(&http, &srv.base, extra).await;
        let ctx = phone.scan_ok(&login_of(&r).id).await;
        assert_eq!(ctx["browser"]["ip"], want, "X-Forwarded-For: {xff}");
    }
}

async fn forwarded_for_garbage_never_launders_a_spoofed_address(kind: StoreKind) {
    let mut cfg = config();
    // The test client's 127.0.0.1 is in the trusted range, and so is the
    // inner proxy 10.0.0.2 that the chains below name.
    cfg.trusted_proxies = vec![
        "127.0.0.0/8".parse().unwrap(),
        "10.0.0.0/8".parse().unwrap(),
    ];
    let app = unlimited_with(kind, cfg).await;
    let phone = app.phone(ALICE).await;
    let http = raw_client();
    for (xff, want) in [
        // The client is the right-most untrusted entry.
        ("198.51.100.9, 10.0.0.2", "198.51.100.9"),
        // Ports (Azure Application Gateway) and brackets are read.
        ("198.51.100.66, 203.0.113.7:4711", "203.0.113.7"),
        (
            "198.51.100.66, [2001:db8::7]:443, 10.0.0.2:8080",
            "2001:db8::7",
        ),
        ("[::ffff:203.0.113.8]", "203.0.113.8"),
        // Garbage ends the walk at the last trusted hop; the attacker's
        // value to its left is never the client.
        ("198.51.100.66, garbage", "127.0.0.1"),
        ("198.51.100.66, unknown, 10.0.0.2", "10.0.0.2"),
        ("198.51.100.66,,10.0.0.2", "10.0.0.2"),
        ("198.51.100.66, 203.0.113.7:99999", "127.0.0.1"),
    ] {
        let r = create_with(&http, &app.base, &[("x-forwarded-for", xff)]).await;
        let ctx = phone.scan_ok(&login_of(&r).id).await;
        assert_eq!(ctx["browser"]["ip"], want, "X-Forwarded-For: {xff}");
    }
}

// ---------------------------------------------------------------------------
// raw sockets

/// Reads from `s` until the server closes it (EOF or reset); how long that
/// took, or `None` if it was still open after `limit`.
async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether the server still holds `s` open (nothing to read, no EOF).
async fn still_open(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf))
        .await
        .is_err()
}

/// Reads one HTTP/1.1 response head from `s`: its status and header lines.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = within("reading a response head", s.read(&mut byte))
            .await
            .expect("reading a response head");
        assert_eq!(n, 1, "the connection closed inside a response head");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text.to_ascii_lowercase())
}

/// A complete response to a request without a body: head, then a
/// `content-length` body.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> (u16, String, String) {
    let (status, head) = read_head(s).await;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("content-length"))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    within("reading a body", s.read_exact(&mut body))
        .await
        .expect("reading a body");
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// The app's address for raw sockets.
fn addr_of(app: &App) -> SocketAddr {
    app.running.addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_sent_heads_are_closed_at_the_header_timeout_while_others_are_served() {
    const HEADS: usize = 2000;
    const TIMEOUT: Duration = Duration::from_secs(2);
    // Each head is two descriptors in this one process (the client's socket
    // and the server's): ~4,000 and the normal client's, above the common
    // default soft limit of 1,024. Raise it up to the hard limit first.
    let nofile = rlimit::increase_nofile_limit(8192).expect("raising RLIMIT_NOFILE");
    assert!(
        nofile >= 4500,
        "this test needs ~4,500 file descriptors (2,000 half-sent heads, both ends in this \
         process); the hard limit allows {nofile}: raise it (ulimit -Hn, LimitNOFILE)"
    );
    let mut cfg = config();
    cfg.header_timeout = TIMEOUT.as_secs();
    let app = unlimited_with(StoreKind::Memory, cfg).await;
    let addr = addr_of(&app);

    // A normal client, served throughout: a login and its status, again
    // and again, each answered promptly.
    let browser = app.browser();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let normal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut served = 0u32;
            let mut slowest = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let login = browser.create_header().await;
                assert_eq!(browser.state(&login).await, "pending");
                slowest = slowest.max(t.elapsed());
                served += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (served, slowest)
        })
    };

    // Slowloris: each sends half a request head and waits; a few trickle
    // one byte every 300 ms, which must not extend their deadline.
    let started = Instant::now();
    let mut attackers = Vec::new();
    for batch in 0..HEADS / 100 {
        let conns = join_all((0..100).map(|i| async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: qrlogin\r\nX-Slow: ")
                .await
                .expect("half a head");
            let sent = Instant::now();
            let trickle = batch == 0 && i < 5;
            (s, sent, trickle)
        }))
        .await;
        attackers.extend(conns);
    }
    let opened_in = started.elapsed();
    let results = join_all(
        attackers
            .into_iter()
            .map(|(mut s, sent, trickle)| async move {
                if trickle {
                    let mut closed = None;
                    for _ in 0..40 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if s.write_all(b"a").await.is_err() || !still_open(&mut s).await {
                            closed = Some(sent.elapsed());
                            break;
                        }
                    }
                    closed
                } else {
                    closed_within(&mut s, TIMEOUT + Duration::from_secs(15))
                        .await
                        .map(|_| sent.elapsed())
                }
            }),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, slowest) = normal.await.expect("normal client");

    let open = results.iter().filter(|r| r.is_none()).count();
    assert_eq!(
        open,
        0,
        "{open} of {HEADS} half-sent heads were still open {:?} after the timeout",
        TIMEOUT + Duration::from_secs(15)
    );
    let times: Vec<Duration> = results.into_iter().flatten().collect();
    let early = times
        .iter()
        .filter(|t| **t < TIMEOUT - Duration::from_millis(100))
        .count();
    assert_eq!(early, 0, "{early} heads were cut before the timeout");
    let latest = times.iter().max().copied().unwrap_or_default();
    assert!(
        latest < TIMEOUT + Duration::from_secs(10),
        "the last head was closed {latest:?} after it was sent (timeout {TIMEOUT:?})"
    );
    assert!(served >= 5, "the normal client was served {served} times");
    assert!(
        slowest < Duration::from_secs(3),
        "a normal login + status took {slowest:?} during the attack"
    );
    eprintln!(
        "{HEADS} heads opened in {opened_in:?}, closed after {:?}..{latest:?}; \
         normal client served {served} times, slowest {slowest:?}",
        times.iter().min().copied().unwrap_or_default()
    );
}

/// A `POST /v1/logins` head declaring a `len`-byte JSON body.
fn post_head(len: usize) -> String {
    format!(
        "POST /v1/logins HTTP/1.1\r\nHost: qrlogin\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n"
    )
}

/// A 408 `request_timeout` with `Connection: close`, then the close.
async fn expect_body_timeout<S: AsyncRead + Unpin>(s: &mut S, sent: Instant, what: &str) {
    let (status, head, body) = read_response(s).await;
    let after = sent.elapsed();
    assert_eq!(status, 408, "{what}: {head}{body}");
    assert!(head.contains("connection: close"), "{what}: {head}");
    let v: Value = serde_json::from_str(&body).expect("a JSON error body");
    assert_eq!(v["error"], "request_timeout", "{what}: {body}");
    // The body deadline is 10 s from the head (guard.rs, BODY_DEADLINE).
    assert!(
        after >= Duration::from_millis(9500) && after < Duration::from_secs(13),
        "{what}: answered 408 after {after:?} (body deadline 10 s)"
    );
    assert!(
        closed_within(s, Duration::from_secs(3)).await.is_some(),
        "{what}: the connection stayed open after the 408"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_within_its_declared_length_gets_408_at_the_body_deadline() {
    // The head arrives at once, so the header timeout (2 s here) is met;
    // the body, within --max-body, never completes. Without a body deadline
    // the connection is busy (no timer) and would be held for good.
    let mut cfg = config();
    cfg.header_timeout = 2;
    let app = unlimited_with(StoreKind::Memory, cfg).await;
    let addr = addr_of(&app);
    let body = br#"{"binding": "header"}"#;

    // 10 of 100 declared bytes, then silence.
    let silent = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(post_head(100).as_bytes()).await.unwrap();
        s.write_all(&[b' '; 10]).await.unwrap();
        let sent = Instant::now();
        expect_body_timeout(&mut s, sent, "10 of 100 bytes, then silence").await;
    };
    // One byte every 400 ms: steady progress, but the deadline is absolute.
    let trickle = async {
        let s = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        wr.write_all(post_head(200).as_bytes()).await.unwrap();
        let sent = Instant::now();
        let writer = tokio::spawn(async move {
            for _ in 0..200 {
                if wr.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        });
        expect_body_timeout(&mut rd, sent, "one byte every 400 ms").await;
        writer.abort();
    };
    // A body split in two parts a second apart is read and served.
    let split = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(post_head(body.len()).as_bytes()).await.unwrap();
        s.write_all(&body[..5]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.write_all(&body[5..]).await.unwrap();
        let (status, head, text) = read_response(&mut s).await;
        assert_eq!(status, 201, "{head}{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["login_id"].is_string(), "{text}");
        // And the connection carries the next request.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: qrlogin\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut s).await.0, 200);
    };
    tokio::join!(silent, trickle, split);
    // The service is still there for everyone else.
    let browser = app.browser();
    let login = browser.create_header().await;
    assert_eq!(browser.state(&login).await, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_is_closed_at_its_own_timeout_and_a_waiting_browser_never() {
    let mut cfg = config();
    cfg.header_timeout = 1;
    cfg.keepalive_timeout = 4;
    let app = unlimited_with(StoreKind::Memory, cfg).await;
    let addr = addr_of(&app);
    let request = b"GET /healthz HTTP/1.1\r\nHost: qrlogin\r\n\r\n";

    // Idle after a response: kept past the header timeout, closed at the
    // keep-alive timeout.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(request).await.unwrap();
    let (status, _, body) = read_response(&mut idle).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let idle_since = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        still_open(&mut idle).await,
        "an idle keep-alive connection was closed at the header timeout"
    );
    // Still usable, and each request starts the idle time anew.
    idle.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut idle).await.0, 200);
    let idle_since_2 = Instant::now();
    let closed = closed_within(&mut idle, Duration::from_secs(15))
        .await
        .expect("the idle connection was never closed");
    let after = idle_since_2.elapsed();
    assert!(
        after >= Duration::from_millis(3800) && after < Duration::from_secs(10),
        "closed {after:?} after its last response (keep-alive 4 s; read {closed:?}); first idle {:?}",
        idle_since.elapsed()
    );

    // The next head begun on a kept-alive connection: the header timeout
    // counts from its first byte.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut partial).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    partial.write_all(b"GET /hea").await.unwrap();
    let t = closed_within(&mut partial, Duration::from_secs(15))
        .await
        .expect("a half-sent second head was never closed");
    assert!(
        t >= Duration::from_millis(900) && t < Duration::from_millis(3500),
        "a half-sent second head was closed after {t:?} (header timeout 1 s, keep-alive 4 s)"
    );

    // A browser waiting on SSE outlives both timeouts and gets its event.
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create_header().await;
    let mut sse = browser.events(&login, None).await;
    assert_eq!(sse.expect().await.state(), "pending");
    let mut poll = tokio::spawn({
        let browser = browser.clone();
        let login = login.clone();
        async move { browser.status(&login, "?wait=30&since=pending").await }
    });
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(10), &mut poll)
            .await
            .is_err(),
        "the long-poll ended early"
    );
    phone.scan_ok(&login.id).await;
    sse.expect_named("scanned").await;
    let r = within("long-poll", poll).await.expect("long-poll task");
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "scanned");

    // Keep-alive 0: one request per connection.
    let mut cfg = config();
    cfg.keepalive_timeout = 0;
    let app = unlimited_with(StoreKind::Memory, cfg).await;
    let mut once = TcpStream::connect(addr_of(&app)).await.unwrap();
    once.write_all(request).await.unwrap();
    let (status, head, _) = read_response(&mut once).await;
    assert_eq!(status, 200);
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_within(&mut once, Duration::from_secs(5))
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_cap_answers_429_on_the_next_stream() {
    let mut cfg = config();
    cfg.max_streams_per_ip = 3;
    let app = unlimited_with(StoreKind::Memory, cfg).await;
    let addr = addr_of(&app);
    let browser = app.browser();
    let logins: Vec<Login> = join_all((0..5).map(|_| browser.create_header())).await;
    let sse_request = |l: &Login| {
        format!(
            "GET /v1/logins/{}/events HTTP/1.1\r\nHost: qrlogin\r\nAccept: text/event-stream\r\n\
             Authorization: Bearer {}\r\n\r\n",
            l.id,
            l.secret.as_deref().unwrap()
        )
    };
    let mut open = Vec::new();
    for l in &logins[..3] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(sse_request(l).as_bytes()).await.unwrap();
        let (status, head) = read_head(&mut s).await;
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("text/event-stream"), "{head}");
        open.push(s);
    }
    // The next stream: 429, JSON, Retry-After.
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    fourth
        .write_all(sse_request(&logins[3]).as_bytes())
        .await
        .unwrap();
    let (status, head, body) = read_response(&mut fourth).await;
    assert_eq!(status, 429, "{head}{body}");
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after:"))
        .unwrap_or_else(|| panic!("429 without Retry-After: {head}"))
        .trim()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "too_many_streams", "{body}");
    // A long-poll is a stream too; a plain status read is not.
    browser
        .status(&logins[4], "?wait=5")
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_streams");
    assert_eq!(browser.state(&logins[4]).await, "pending");
    // Another address has its own streams.
    let other = Browser {
        base: app.base.clone(),
        http: client_from("127.0.0.2"),
    };
    let mut s = other.events(&logins[4], None).await;
    assert_eq!(s.expect().await.state(), "pending");
    // A stream that ends frees its slot.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The status only: a 200 stream would never end.
        let resp = within(
            "SSE connect",
            raw_client()
                .get(app.url(&format!("/v1/logins/{}/events", logins[3].id)))
                .bearer_auth(logins[3].secret.as_deref().unwrap())
                .send(),
        )
        .await
        .expect("SSE connect");
        if resp.status() == StatusCode::OK {
            break;
        }
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            Instant::now() < deadline,
            "a closed stream's slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_pauses_at_max_connections_with_a_warning_and_a_metric_then_resumes() {
    let bin = Proc::start(&["--max-connections", "20", "--header-timeout", "60"]);
    let addr: SocketAddr = bin.base.strip_prefix("http://").unwrap().parse().unwrap();
    // 20 connections that send nothing hold every slot.
    let mut holders = Vec::new();
    for _ in 0..20 {
        holders.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The 21st waits in the backlog: not refused, not served.
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: qrlogin\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), waiting.read(&mut buf))
            .await
            .is_err(),
        "a connection beyond --max-connections was served"
    );
    // One closes: the waiting one is accepted and answered.
    drop(holders.drain(..5));
    let (status, _, body) = read_response(&mut waiting).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    drop(waiting);
    let metrics = send(raw_client().get(format!("{}/metrics", bin.base))).await;
    let text = metrics.text();
    let paused = text
        .lines()
        .find(|l| l.starts_with("qrlogin_accept_paused_total"))
        .unwrap_or_else(|| panic!("no qrlogin_accept_paused_total in /metrics"));
    assert!(!paused.ends_with(" 0"), "{paused}");
    assert!(
        text.contains("qrlogin_open_connections"),
        "no open-connections gauge"
    );
    drop(holders);
    let log = bin.log();
    assert!(
        log.contains("connection limit reached") && log.contains("--max-connections"),
        "no warning in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_set_by_flag_and_by_config_file_and_429_says_when_to_retry() {
    // Flag: create 3/min, burst 2; scan off.
    let bin = Proc::start(&[
        "--rate-limit",
        "create=3/min,burst=2",
        "--rate-limit",
        "scan=off",
    ]);
    let http = raw_client();
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let r = send(http.post(format!("{}/v1/logins", bin.base))).await;
        statuses.push(r.status.as_u16());
        last = Some(r);
    }
    assert_eq!(statuses, [201, 201, 429]);
    let r = last.unwrap();
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    // scan=off: far beyond the default burst of 15.
    let phone = Phone::sign_in(&bin.base, ALICE).await;
    let replies = join_all((0..30).map(|_| {
        send(
            http.post(format!(
                "{}/v1/mobile/logins/{}/scan",
                bin.base,
                qrlogin_core::LoginId::random()
            ))
            .bearer_auth(&phone.token),
        )
    }))
    .await;
    for r in &replies {
        r.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    drop(bin);

    // Config file: the same, as a list.
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(
        &mut file,
        b"rate-limit = [\"create=3/min,burst=1\", \"sign-in=2/min,burst=2\"]\n",
    )
    .unwrap();
    let bin = Proc::start(&["--config", file.path().to_str().unwrap()]);
    let a = send(http.post(format!("{}/v1/logins", bin.base))).await;
    let b = send(http.post(format!("{}/v1/logins", bin.base))).await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (201, 429));
    assert!(b.headers.contains_key("retry-after"));
}
