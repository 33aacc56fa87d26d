//! Adversarial suite, part 2: guessing (SECURITY.md, properties 1 and 7).
//!
//! * Random well-formed ids against scan, status, events, redeem and cancel:
//!   zero hits; ids one character away from a real one: zero hits, and the
//!   real login is undisturbed.
//! * With rate limits on, the limits hold when the requests come in
//!   parallel: at most the burst (plus what the elapsed time refills) gets
//!   through, the rest is 429 with `Retry-After`; status polls answer
//!   `slow_down`; rotating `X-Forwarded-For` does not help unless the peer
//!   is a configured trusted proxy. The create and poll buckets are set
//!   tight here with `--rate-limit` (their defaults are NAT-friendly); the
//!   guessing defences (scan, sign-in) are tested at their defaults.
//! * The defaults let an office behind one address in: 100 creates from one
//!   address in the same moment all succeed.
//!
//! Store-related tests run on both stores.

#[macro_use]
mod common;
#[path = "common/security.rs"]
mod sec;

use common::*;
use futures_util::future::join_all;
use qrlogin_core::LoginId;
use reqwest::StatusCode;
use sec::*;
use std::time::Instant;

per_store!(
    random_ids_never_hit,
    ids_next_to_a_real_one_never_hit,
    parallel_scan_guessing_is_rate_limited,
    parallel_status_polls_answer_slow_down,
    parallel_creates_are_rate_limited,
    spoofed_forwarded_for_does_not_evade_limits,
    parallel_sign_in_guessing_is_rate_limited_by_default,
    an_office_behind_one_address_gets_100_creates_at_once,
);

/// Tight create and poll buckets, as an operator who is not behind NAT
/// might set them (the numbers these tests were written for).
const TIGHT: &str = "create=60/min,burst=30,poll=300/min,burst=60";

/// The service with rate limits on and [`TIGHT`] create and poll buckets.
async fn tight_with(kind: StoreKind, mut cfg: qrlogin_server::ServeConfig) -> App {
    cfg.rate_limit = vec![TIGHT.parse().expect("rate-limit spec")];
    app_with(kind, cfg, None).await
}

async fn tight(kind: StoreKind) -> App {
    tight_with(kind, config()).await
}

/// Sends all requests at once; their replies in order.
async fn all(reqs: Vec<reqwest::RequestBuilder>) -> Vec<Reply> {
    join_all(reqs.into_iter().map(send)).await
}

async fn random_ids_never_hit(kind: StoreKind) {
    let app = unlimited(kind).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    // Live logins in every state the guesser could hope to hit.
    let pending = browser.create().await;
    let scanned = browser.create().await;
    phone.scan_ok(&scanned.id).await;
    let approved = browser.create().await;
    phone.scan_ok(&approved.id).await;
    phone.approve_ok(&approved.id).await;

    let http = raw_client();
    const GUESSES: usize = 250;
    let ids: Vec<String> = (0..GUESSES)
        .map(|_| LoginId::random().to_string())
        .collect();
    let mut reqs = Vec::new();
    for id in &ids {
        reqs.push(
            http.post(app.url(&format!("/v1/mobile/logins/{id}/scan")))
                .bearer_auth(&phone.token),
        );
        reqs.push(
            http.get(app.url(&format!("/v1/logins/{id}")))
                .bearer_auth(forged_secret()),
        );
        reqs.push(
            http.get(app.url(&format!("/v1/logins/{id}/events")))
                .header("cookie", format!("qrl_bs={}", forged_secret())),
        );
        reqs.push(
            http.post(app.url(&format!("/v1/logins/{id}/redeem")))
                .bearer_auth(forged_secret()),
        );
        reqs.push(
            http.delete(app.url(&format!("/v1/logins/{id}")))
                .bearer_auth(forged_secret()),
        );
    }
    let mut hits = 0;
    for chunk in reqs.chunks_mut(100) {
        let batch: Vec<_> = chunk
            .iter_mut()
            .map(|rb| rb.try_clone().expect("clonable request"))
            .collect();
        for r in all(batch).await {
            if r.status != StatusCode::NOT_FOUND {
                hits += 1;
                eprintln!("hit: {} {}", r.status, r.text());
            } else {
                r.assert_error(StatusCode::NOT_FOUND, "not_found");
            }
        }
    }
    assert_eq!(hits, 0, "{hits} of {} guesses were not 404", GUESSES * 5);
    // The live logins are untouched.
    assert_eq!(browser.state(&pending).await, "pending");
    assert_eq!(browser.state(&scanned).await, "scanned");
    assert_eq!(browser.state(&approved).await, "approved");
}

/// Every id that differs from `id` in exactly one character.
fn neighbours(id: &str) -> Vec<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    for i in 0..id.len() {
        for &c in [b'A', b'z', b'0', b'_', b'-']
            .iter()
            .chain(ALPHABET.iter().step_by(7))
        {
            let mut b = id.as_bytes().to_vec();
            if b[i] == c {
                continue;
            }
            b[i] = c;
            out.push(String::from_utf8(b).unwrap());
        }
    }
    out.sort();
    out.dedup();
    out
}

async fn ids_next_to_a_real_one_never_hit(kind: StoreKind) {
    let app = unlimited(kind).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let target = browser.create_header().await;
    let http = raw_client();
    let near = neighbours(&target.id);
    assert!(near.len() > 200);
    // With the *right* secret even: the id must match exactly.
    let secret = target.secret.clone().unwrap();
    let mut reqs = Vec::new();
    for id in &near {
        reqs.push(
            http.post(app.url(&format!("/v1/mobile/logins/{id}/scan")))
                .bearer_auth(&phone.token),
        );
        reqs.push(
            http.get(app.url(&format!("/v1/logins/{id}")))
                .bearer_auth(&secret),
        );
    }
    let mut answers = Vec::new();
    for chunk in reqs.chunks_mut(100) {
        let batch: Vec<_> = chunk.iter_mut().map(|rb| rb.try_clone().unwrap()).collect();
        answers.extend(all(batch).await);
    }
    for r in &answers {
        // 400 for spellings that are not canonical base64url (the last
        // character carries padding bits), 404 for every other neighbour.
        assert!(
            r.status == StatusCode::NOT_FOUND || r.status == StatusCode::BAD_REQUEST,
            "a neighbour id answered {} {}",
            r.status,
            r.text()
        );
    }
    assert!(
        answers
            .iter()
            .filter(|r| r.status == StatusCode::NOT_FOUND)
            .count()
            > near.len(),
        "most neighbours are well formed and must be 404"
    );
    assert_eq!(browser.state(&target).await, "pending");
}

/// How many requests a bucket may let through in `elapsed`: the burst plus
/// what refilled meanwhile, plus one for rounding.
fn allowed(burst: u32, per_minute: u32, started: Instant) -> usize {
    let secs = started.elapsed().as_secs_f64();
    (burst as f64 + (secs * per_minute as f64 / 60.0).ceil() + 1.0) as usize
}

/// Asserts a 429 with `code` and a `Retry-After` of at least one second.
fn assert_limited(r: &Reply, code: &str) {
    assert_rate_limited(r, code);
    // Refusals carry the same security headers as every other answer.
    for (name, want) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(
            r.headers.get(name).and_then(|v| v.to_str().ok()),
            Some(want),
            "429 {name}"
        );
    }
}

async fn parallel_scan_guessing_is_rate_limited(kind: StoreKind) {
    let app = app(kind).await; // rate limits on (scan: 15 burst, 30/min)
    let phone = app.phone(ALICE).await;
    let http = raw_client();
    let started = Instant::now();
    let reqs = (0..60)
        .map(|_| {
            http.post(app.url(&format!("/v1/mobile/logins/{}/scan", LoginId::random())))
                .bearer_auth(&phone.token)
        })
        .collect();
    let replies = all(reqs).await;
    let through = replies
        .iter()
        .filter(|r| r.status != StatusCode::TOO_MANY_REQUESTS)
        .count();
    let max = allowed(15, 30, started);
    assert!(
        through <= max,
        "{through} parallel scans got through (at most {max})"
    );
    assert!(through >= 1, "the first scans must be answered");
    for r in &replies {
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_limited(r, "rate_limited");
        } else {
            r.assert_error(StatusCode::NOT_FOUND, "not_found");
        }
    }
}

async fn parallel_status_polls_answer_slow_down(kind: StoreKind) {
    let app = tight(kind).await; // poll: 60 burst, 300/min
    let browser = app.browser();
    let login = browser.create_header().await;
    let secret = login.secret.clone().unwrap();
    let http = raw_client();
    let started = Instant::now();
    let reqs = (0..150)
        .map(|i| {
            // The owner's polls and a guesser's, from one address.
            if i % 2 == 0 {
                http.get(app.url(&format!("/v1/logins/{}", login.id)))
                    .bearer_auth(&secret)
            } else {
                http.get(app.url(&format!("/v1/logins/{}", LoginId::random())))
                    .bearer_auth(forged_secret())
            }
        })
        .collect();
    let replies = all(reqs).await;
    let through = replies
        .iter()
        .filter(|r| r.status != StatusCode::TOO_MANY_REQUESTS)
        .count();
    let max = allowed(60, 300, started);
    assert!(
        through <= max,
        "{through} parallel polls got through (at most {max})"
    );
    assert!(through < replies.len(), "no poll was slowed down");
    for r in &replies {
        match r.status {
            StatusCode::TOO_MANY_REQUESTS => assert_limited(r, "slow_down"),
            StatusCode::OK | StatusCode::NOT_FOUND => {}
            s => panic!("poll answered {s} {}", r.text()),
        }
    }
    // SSE connects count against the same bucket (a stream that is let
    // through is dropped unread; the bucket may have refilled a little).
    let mut slowed = None;
    for _ in 0..70 {
        let resp = within(
            "SSE connect",
            http.get(app.url(&format!("/v1/logins/{}/events", login.id)))
                .bearer_auth(&secret)
                .send(),
        )
        .await
        .expect("SSE connect");
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            slowed = Some(Reply::of(resp).await);
            break;
        }
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_limited(
        &slowed.expect("SSE connects were never slowed down"),
        "slow_down",
    );
}

async fn parallel_creates_are_rate_limited(kind: StoreKind) {
    let app = tight(kind).await; // create: 30 burst, 60/min
    let http = raw_client();
    let started = Instant::now();
    let reqs = (0..80).map(|_| http.post(app.url("/v1/logins"))).collect();
    let replies = all(reqs).await;
    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let max = allowed(30, 60, started);
    assert!(created <= max, "{created} parallel creates (at most {max})");
    assert!(created >= 1);
    for r in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_limited(r, "rate_limited");
        assert!(r.set_cookies().is_empty(), "a refused create set a cookie");
    }
}

async fn spoofed_forwarded_for_does_not_evade_limits(kind: StoreKind) {
    // No trusted proxies (the default): X-Forwarded-For is the client's own
    // claim and is ignored, so rotating it does not reset the limit.
    let app = tight(kind).await;
    let http = raw_client();
    let started = Instant::now();
    let reqs = (0..80)
        .map(|i| {
            http.post(app.url("/v1/logins"))
                .header("x-forwarded-for", format!("198.51.100.{i}"))
                .header("x-real-ip", format!("203.0.113.{i}"))
                .header("forwarded", format!("for=192.0.2.{i}"))
        })
        .collect();
    let replies = all(reqs).await;
    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let max = allowed(30, 60, started);
    assert!(
        created <= max,
        "rotating X-Forwarded-For got {created} creates through (at most {max})"
    );

    // Behind a configured trusted proxy, clients are told apart by the
    // forwarded address: a second client is not limited by the first.
    let mut cfg = config();
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let app = tight_with(kind, cfg).await;
    let started = Instant::now();
    let flood = (0..60)
        .map(|_| {
            http.post(app.url("/v1/logins"))
                .header("x-forwarded-for", "198.51.100.7")
        })
        .collect();
    let replies = all(flood).await;
    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    assert!(created <= allowed(30, 60, started), "{created}");
    let r = send(
        http.post(app.url("/v1/logins"))
            .header("x-forwarded-for", "198.51.100.7"),
    )
    .await;
    assert_limited(&r, "rate_limited");
    let r = send(
        http.post(app.url("/v1/logins"))
            .header("x-forwarded-for", "203.0.113.50"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

async fn parallel_sign_in_guessing_is_rate_limited_by_default(kind: StoreKind) {
    let app = app(kind).await; // default sign-in bucket: 10 burst, 10/min
    let http = raw_client();
    let started = Instant::now();
    let reqs = (0..40)
        .map(|i| {
            http.post(app.url("/v1/mobile/session"))
                .json(&serde_json::json!({"username": "alice", "password": format!("guess{i}")}))
        })
        .collect();
    let replies = all(reqs).await;
    let answered = replies
        .iter()
        .filter(|r| r.status != StatusCode::TOO_MANY_REQUESTS)
        .count();
    let max = allowed(10, 10, started);
    assert!(
        answered <= max,
        "{answered} password guesses were checked (at most {max})"
    );
    for r in &replies {
        match r.status {
            StatusCode::TOO_MANY_REQUESTS => assert_limited(r, "rate_limited"),
            _ => r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized"),
        }
    }
}

async fn an_office_behind_one_address_gets_100_creates_at_once(kind: StoreKind) {
    // The defaults: everyone behind one NAT address starts a login in the
    // same moment (the old 30-burst default refused 67 of 100 in 3 s).
    let app = app(kind).await;
    let http = raw_client();
    let reqs = (0..100)
        .map(|_| {
            http.post(app.url("/v1/logins"))
                .json(&serde_json::json!({"binding": "header"}))
        })
        .collect();
    let replies = all(reqs).await;
    let refused: Vec<_> = replies
        .iter()
        .filter(|r| r.status != StatusCode::CREATED)
        .map(|r| format!("{} {}", r.status, r.text()))
        .collect();
    assert!(
        refused.is_empty(),
        "{} of 100 creates from one address were refused: {:?}",
        refused.len(),
        refused.first()
    );
    // And each of them can wait for its phone (an SSE stream each).
    let mut streams = Vec::new();
    for r in replies.iter().take(100) {
        let v = r.json();
        let login = Login {
            id: v["login_id"].as_str().unwrap().to_string(),
            secret: v["browser_secret"].as_str().map(str::to_owned),
            created: v.clone(),
            set_cookie: None,
        };
        streams.push(app.browser().events(&login, None).await);
    }
    for s in &mut streams {
        assert_eq!(s.expect().await.state(), "pending");
    }
}
