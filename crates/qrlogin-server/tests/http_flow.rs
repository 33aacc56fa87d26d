//! The whole login over real HTTP on loopback, on both stores: SSE and
//! long-poll watching, cookie and header binding, deny, cancel, expiry (real
//! short TTLs and exact edges with a manual clock), indistinguishable 404s,
//! the wrong user, and SSE resume with `Last-Event-ID`.

#[macro_use]
mod common;

use common::*;
use qrlogin_core::{BrowserSecret, Clock, LoginId, ManualClock, SystemClock, User};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

per_store!(
    sse_full_flow,
    long_poll_flow,
    long_poll_is_capped_by_max_wait,
    header_binding,
    deny_flow,
    cancel_flow,
    expiry_with_short_ttl,
    expiry_edges_with_manual_clock,
    unknown_expired_consumed_and_wrong_secret_look_the_same,
    only_the_scanning_user_may_decide,
    sse_resumes_with_last_event_id,
    cross_site_cookie_requests_are_refused,
    sessions_and_phone_tokens_expire,
    operations_endpoints,
    final_states_are_forgotten_after_final_keep,
);

fn alice() -> Value {
    json!({"id": ALICE_ID, "name": "Alice"})
}

/// The first event of a stream is the current state; API.md names it
/// `state`, the server names it after the state itself: accept either, and
/// require `data.state`.
fn assert_initial(ev: &SseEvent, state: &str) {
    assert!(
        ev.event == "state" || ev.event == state,
        "initial SSE event named {:?}",
        ev.event
    );
    assert_eq!(ev.state(), state, "initial SSE event {ev:?}");
    assert_eq!(ev.json()["version"].as_u64(), Some(ev.version()));
}

async fn sse_full_flow(kind: StoreKind) {
    let app = app(kind).await;
    let browser = app.browser();
    let login = browser.create().await;

    // What create returns.
    let c = &login.created;
    assert_eq!(login.id.len(), 22, "login id is 22 base64url chars");
    assert!(login.id.parse::<LoginId>().is_ok());
    assert_eq!(c["qr_payload"], app.url(&format!("/m/{}", login.id)));
    assert_eq!(c["qr_svg"], format!("/v1/logins/{}/qr.svg", login.id));
    assert_eq!(c["qr_png"], format!("/v1/logins/{}/qr.png", login.id));
    assert_eq!(c["events"], format!("/v1/logins/{}/events", login.id));
    assert_eq!(c["status"], format!("/v1/logins/{}", login.id));
    let expires_in = c["expires_in"].as_u64().expect("expires_in");
    assert!((119..=120).contains(&expires_in), "expires_in {expires_in}");
    assert!(c["expires_at"].as_str().is_some_and(|s| s.contains('T')));
    assert!(
        c.get("browser_secret").is_none(),
        "cookie binding: no secret in the body"
    );
    let cookie = login.set_cookie.clone().expect("qrl_bs cookie set");
    assert!(
        cookie.contains(&format!("Path=/v1/logins/{}", login.id)),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");

    let mut sse = browser.events(&login, None).await;
    assert_initial(&sse.expect().await, "pending");

    let phone = app.phone(ALICE).await;
    let ctx = phone.scan_ok(&login.id).await;
    assert_eq!(ctx["login_id"], login.id);
    assert_eq!(ctx["site"]["name"], "qrlogin demo");
    assert_eq!(ctx["site"]["origin"], app.base);
    assert_eq!(ctx["browser"]["ip"], "127.0.0.1");
    assert!(
        ctx["expires_in"].as_u64().unwrap() > 150,
        "scan extends the expiry: {ctx}"
    );

    let ev = sse.expect_named("scanned").await;
    assert_eq!(ev.json()["user"], alice());

    phone.approve_ok(&login.id).await;
    let ev = sse.expect_named("approved").await;
    assert_eq!(ev.json()["user"], alice());

    let r = browser.redeem(&login).await;
    let v = r.ok_json(StatusCode::OK);
    let token = v["token"].as_str().expect("token").to_string();
    assert!(token.len() >= 32, "token {token}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 43_200);
    assert_eq!(v["user"], alice());
    let sc = r.set_cookie("qrl_session").expect("qrl_session cookie");
    assert!(sc.starts_with(&format!("qrl_session={token}")), "{sc}");
    assert!(sc.contains("Path=/;") || sc.ends_with("Path=/"), "{sc}");
    assert!(
        sc.contains("HttpOnly") && sc.contains("SameSite=Lax"),
        "{sc}"
    );

    sse.expect_named("consumed").await;
    sse.expect_end().await;

    let who = browser.whoami().await.ok_json(StatusCode::OK);
    assert_eq!(who["user"], alice());
    assert!(who["expires_at"].is_string());
    let who = browser.whoami_bearer(&token).await.ok_json(StatusCode::OK);
    assert_eq!(who["user"], alice());

    // Exactly once: the consumed login is gone for its browser.
    let again = browser.redeem(&login).await;
    assert!(
        again.status == StatusCode::CONFLICT || again.status == StatusCode::NOT_FOUND,
        "second redeem: {} {}",
        again.status,
        again.text()
    );
    again.assert_json_error();
    assert!(again.set_cookie("qrl_session").is_none());
    browser
        .status(&login, "")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    let out = browser.logout().await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    browser
        .whoami()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // Revoked on the server, not only forgotten by the browser.
    browser
        .whoami_bearer(&token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn long_poll_flow(kind: StoreKind) {
    let app = app(kind).await;
    let browser = app.browser();
    let login = browser.create().await;
    let phone = app.phone(ALICE).await;

    let v = browser.status(&login, "").await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "pending");
    assert!(v.get("user").is_none());
    let v1 = v["version"].as_u64().expect("version");

    // A long-poll blocks while nothing changes, and wakes on the scan.
    let poll = {
        let (b, l) = (browser.clone(), login.clone());
        tokio::spawn(async move { b.status(&l, "?wait=10&since=pending").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "long-poll returned while still pending"
    );
    phone.scan_ok(&login.id).await;
    let v = within("long-poll", poll)
        .await
        .unwrap()
        .ok_json(StatusCode::OK);
    assert_eq!(v["state"], "scanned", "{v}");
    assert_eq!(v["user"], alice());
    assert!(v["version"].as_u64().unwrap() > v1);

    // `since` already differs from the state: answers at once (the wait is
    // longer than the hang guard, so waiting it out fails the test).
    let v = browser
        .status(&login, "?wait=30&since=pending")
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(v["state"], "scanned");

    // Without `since`, it waits for a change from the current state.
    let poll = {
        let (b, l) = (browser.clone(), login.clone());
        tokio::spawn(async move { b.status(&l, "?wait=10").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "long-poll returned while still scanned"
    );
    phone.approve_ok(&login.id).await;
    let v = within("long-poll", poll)
        .await
        .unwrap()
        .ok_json(StatusCode::OK);
    assert_eq!(v["state"], "approved", "{v}");
    assert_eq!(v["user"], alice());

    let r = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(r["user"], alice());
    browser
        .status(&login, "?wait=5&since=approved")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let who = browser.whoami().await.ok_json(StatusCode::OK);
    assert_eq!(who["user"]["id"], ALICE_ID);
}

async fn long_poll_is_capped_by_max_wait(kind: StoreKind) {
    let mut cfg = config();
    cfg.max_wait = 1;
    let app = app_with(kind, cfg, None).await;
    let browser = app.browser();
    let login = browser.create().await;
    let start = Instant::now();
    // Asks for 60 s; the server caps it at 1 s (the hang guard is 20 s).
    let v = browser
        .status(&login, "?wait=60&since=pending")
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(v["state"], "pending");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "an unchanged long-poll waits for the (capped) wait, returned after {:?}",
        start.elapsed()
    );
}

async fn header_binding(kind: StoreKind) {
    let app = app(kind).await;
    let browser = app.browser();
    let login = browser.create_header().await;
    let secret = login.secret.clone().expect("browser_secret in the body");
    assert!(secret.len() >= 43, "256-bit secret: {secret}");
    assert!(login.set_cookie.is_none(), "header binding sets no cookie");

    // Without the bearer the login does not exist.
    let bare = Login {
        secret: None,
        ..login.clone()
    };
    browser
        .status(&bare, "")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let v = browser.status(&login, "").await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "pending");

    let mut sse = browser.events(&login, None).await;
    assert_initial(&sse.expect().await, "pending");
    let phone = app.phone(ALICE).await;
    phone.scan_ok(&login.id).await;
    sse.expect_named("scanned").await;
    phone.approve_ok(&login.id).await;
    sse.expect_named("approved").await;

    browser
        .redeem(&bare)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    let token = v["token"].as_str().expect("token");
    assert_eq!(v["user"], alice());
    let who = browser.whoami_bearer(token).await.ok_json(StatusCode::OK);
    assert_eq!(who["user"], alice());
}

async fn deny_flow(kind: StoreKind) {
    let app = app(kind).await;
    let browser = app.browser();
    let login = browser.create().await;
    let mut sse = browser.events(&login, None).await;
    assert_initial(&sse.expect().await, "pending");
    let phone = app.phone(ALICE).await;
    phone.scan_ok(&login.id).await;
    sse.expect_named("scanned").await;

    let v = phone.deny(&login.id).await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "denied");
    let ev = sse.expect_named("denied").await;
    assert!(
        ev.json().get("user").is_none(),
        "denied shows no user: {ev:?}"
    );
    sse.expect_end().await;

    let r = browser.redeem(&login).await;
    assert!(
        r.status == StatusCode::CONFLICT || r.status == StatusCode::NOT_FOUND,
        "redeem after deny: {} {}",
        r.status,
        r.text()
    );
    r.assert_json_error();
    assert!(r.set_cookie("qrl_session").is_none());
    browser
        .whoami()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    phone
        .approve(&login.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let v = browser.status(&login, "").await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "denied");
}

async fn cancel_flow(kind: StoreKind) {
    let app = app(kind).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;

    // Cancelled after the scan: the phone can no longer approve.
    let login = browser.create().await;
    let mut sse = browser.events(&login, None).await;
    assert_initial(&sse.expect().await, "pending");
    phone.scan_ok(&login.id).await;
    sse.expect_named("scanned").await;
    let r = browser.cancel(&login).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(r.body.is_empty());
    sse.expect_named("cancelled").await;
    sse.expect_end().await;
    phone
        .approve(&login.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let v = browser.status(&login, "").await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "cancelled");
    let r = browser.redeem(&login).await;
    assert!(r.status.is_client_error() && r.status != StatusCode::OK);
    assert!(r.set_cookie("qrl_session").is_none());

    // Cancelled before any scan: the phone cannot scan it.
    let login = browser.create().await;
    assert_eq!(browser.cancel(&login).await.status, StatusCode::NO_CONTENT);
    phone
        .scan(&login.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(browser.state(&login).await, "cancelled");
}

async fn expiry_with_short_ttl(kind: StoreKind) {
    let mut cfg = config();
    cfg.pending_ttl = 1;
    let app = app_with(kind, cfg, None).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;

    let login = browser.create().await;
    assert_eq!(login.created["expires_in"], 1);
    let mut sse = browser.events(&login, None).await;
    assert_initial(&sse.expect().await, "pending");
    let ev = sse.expect_named("expired").await;
    assert!(ev.json().get("user").is_none());
    sse.expect_end().await;
    browser
        .status(&login, "")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    browser
        .events_reply(&login)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    // The phone may learn that it expired.
    phone
        .scan(&login.id)
        .await
        .assert_error(StatusCode::GONE, "gone");

    // Long-poll sees the expiry too.
    let login = browser.create().await;
    let v = browser
        .status(&login, "?wait=10&since=pending")
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(v["state"], "expired", "{v}");
    browser
        .redeem(&login)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    browser
        .cancel(&login)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

async fn expiry_edges_with_manual_clock(kind: StoreKind) {
    let t0 = SystemClock.now_ms();
    let clock = Arc::new(ManualClock::new(t0));
    let app = app_with(kind, config(), Some(clock.clone() as Arc<dyn Clock>)).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;

    let a = browser.create().await; // scanned at the last moment, approved late
    let b = browser.create().await; // never scanned
    let c = browser.create().await; // scanned early, approved too late
    assert_eq!(a.created["expires_in"], 120);

    clock.set_ms(t0 + 1_000);
    phone.scan_ok(&c.id).await;

    // 1 ms before the pending TTL: still pending, and scannable.
    clock.set_ms(t0 + 119_999);
    let v = browser.status(&b, "").await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "pending");
    assert_eq!(v["expires_in"], 1);
    let ctx = phone.scan_ok(&a.id).await;
    // Extended once, by 60 s from the original expiry: 60.001 s left.
    assert_eq!(ctx["expires_in"], 61, "{ctx}");
    // Scanning again (a reloaded phone page) extends nothing.
    let ctx2 = phone.scan_ok(&a.id).await;
    assert_eq!(ctx2["expires_at"], ctx["expires_at"]);

    // At the TTL: expired, to the browser as 404, to the phone as 410.
    clock.set_ms(t0 + 120_000);
    browser
        .status(&b, "")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    phone
        .scan(&b.id)
        .await
        .assert_error(StatusCode::GONE, "gone");
    browser
        .cancel(&b)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(browser.state(&a).await, "scanned");

    // The scanned logins live until their extended expiry, and not a ms more.
    clock.set_ms(t0 + 179_999);
    phone.approve_ok(&a.id).await;
    clock.set_ms(t0 + 180_000);
    browser
        .redeem(&a)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    browser
        .status(&a, "")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    clock.set_ms(t0 + 181_000);
    phone
        .approve(&c.id)
        .await
        .assert_error(StatusCode::GONE, "gone");
    browser
        .whoami()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn unknown_expired_consumed_and_wrong_secret_look_the_same(kind: StoreKind) {
    let t0 = SystemClock.now_ms();
    let clock = Arc::new(ManualClock::new(t0));
    let app = app_with(kind, config(), Some(clock.clone() as Arc<dyn Clock>)).await;
    let phone = app.phone(ALICE).await;

    // An expired login (its own browser, correct cookie).
    let b_expired = app.browser();
    let expired = b_expired.create().await;
    clock.set_ms(t0 + 121_000);

    // A live login and a consumed one (header binding).
    let browser = app.browser();
    let live = browser.create_header().await;
    let consumed = browser.create_header().await;
    phone.scan_ok(&consumed.id).await;
    phone.approve_ok(&consumed.id).await;
    browser.redeem(&consumed).await.ok_json(StatusCode::OK);

    let unknown_id = LoginId::random().to_string();
    let with = |id: &str, secret: Option<String>| Login {
        id: id.to_string(),
        secret,
        created: Value::Null,
        set_cookie: None,
    };
    let random_secret = || Some(BrowserSecret::random().expose());
    let reference = with(&unknown_id, None);

    // Status and events: every one of these is the same 404.
    let cases: Vec<(&str, &Browser, Login)> = vec![
        ("unknown id, no secret", &browser, reference.clone()),
        (
            "unknown id, some secret",
            &browser,
            with(&unknown_id, random_secret()),
        ),
        (
            "live, wrong secret",
            &browser,
            with(&live.id, random_secret()),
        ),
        ("live, no secret", &browser, with(&live.id, None)),
        (
            "live, malformed secret",
            &browser,
            with(&live.id, Some("garbage".into())),
        ),
        (
            "live, another login's secret",
            &browser,
            with(&live.id, consumed.secret.clone()),
        ),
        ("expired, its own cookie", &b_expired, expired.clone()),
        ("consumed, its own secret", &browser, consumed.clone()),
    ];
    let want = browser.status(&reference, "").await;
    want.assert_error(StatusCode::NOT_FOUND, "not_found");
    for (what, b, login) in &cases {
        for r in [b.status(login, "").await, b.events_reply(login).await] {
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{what}: {}", r.text());
            assert_eq!(r.body, want.body, "{what}: body differs");
            assert_eq!(
                r.headers.get("content-type"),
                want.headers.get("content-type"),
                "{what}"
            );
            assert!(r.set_cookies().is_empty(), "{what}: sets a cookie");
        }
    }
    // Redeem and cancel without the right secret (or past expiry): the same.
    let cases: Vec<(&str, &Browser, Login)> = vec![
        ("unknown id", &browser, reference.clone()),
        (
            "live, wrong secret",
            &browser,
            with(&live.id, random_secret()),
        ),
        ("live, no secret", &browser, with(&live.id, None)),
        (
            "consumed, wrong secret",
            &browser,
            with(&consumed.id, random_secret()),
        ),
        ("expired, its own cookie", &b_expired, expired.clone()),
    ];
    for (what, b, login) in &cases {
        for r in [b.redeem(login).await, b.cancel(login).await] {
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{what}: {}", r.text());
            assert_eq!(r.body, want.body, "{what}: body differs");
        }
    }
    // None of that touched the live login.
    let v = browser.status(&live, "").await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "pending");
}

async fn only_the_scanning_user_may_decide(kind: StoreKind) {
    let app = app(kind).await;
    let browser = app.browser();
    let alice_phone = app.phone(ALICE).await;
    let bob_phone = app.phone(BOB).await;

    // Approving before anyone scanned is a conflict.
    let login = browser.create().await;
    alice_phone
        .approve(&login.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(browser.state(&login).await, "pending");

    alice_phone.scan_ok(&login.id).await;
    bob_phone
        .approve(&login.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    bob_phone
        .deny(&login.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    bob_phone
        .scan(&login.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let v = browser.status(&login, "").await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "scanned");
    assert_eq!(v["user"], alice());

    alice_phone.approve_ok(&login.id).await;
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"], alice(), "the session is alice's, not bob's");
}

async fn sse_resumes_with_last_event_id(kind: StoreKind) {
    let app = app(kind).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;

    let mut sse = browser.events(&login, None).await;
    let first = sse.expect().await;
    assert_initial(&first, "pending");
    let v1 = first.version();
    drop(sse);

    // Resuming at the current version: nothing until the next change.
    let mut sse = browser.events(&login, Some(&v1.to_string())).await;
    sse.expect_quiet(Duration::from_millis(400)).await;
    phone.scan_ok(&login.id).await;
    let ev = sse.expect_named("scanned").await;
    let v2 = ev.version();
    assert!(v2 > v1, "versions grow: {v1} then {v2}");
    drop(sse);

    // Resuming from an older version: the current state again, at once.
    let mut sse = browser.events(&login, Some(&v1.to_string())).await;
    let ev = sse.expect().await;
    assert_initial(&ev, "scanned");
    assert_eq!(ev.version(), v2);
    assert_eq!(ev.json()["user"], alice());
    drop(sse);

    // A garbage Last-Event-ID counts as none.
    let mut sse = browser.events(&login, Some("not-a-number")).await;
    assert_initial(&sse.expect().await, "scanned");
    drop(sse);

    // Up to date at v2: quiet, then the approval.
    let mut sse = browser.events(&login, Some(&v2.to_string())).await;
    sse.expect_quiet(Duration::from_millis(400)).await;
    phone.approve_ok(&login.id).await;
    let ev = sse.expect_named("approved").await;
    assert!(ev.version() > v2);
}

async fn cross_site_cookie_requests_are_refused(kind: StoreKind) {
    let app = app(kind).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;
    phone.scan_ok(&login.id).await;
    phone.approve_ok(&login.id).await;

    let url = app.url(&format!("/v1/logins/{}/redeem", login.id));
    let r = send(
        browser
            .http
            .post(&url)
            .header("origin", "https://evil.example"),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(r.set_cookie("qrl_session").is_none());
    let r = send(
        browser
            .http
            .post(&url)
            .header("sec-fetch-site", "cross-site"),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(browser.state(&login).await, "approved");

    // Logout rides on the session cookie too.
    let r = send(
        browser
            .http
            .post(app.url("/v1/session/logout"))
            .header("origin", "https://evil.example"),
    )
    .await;
    // No session cookie yet: nothing to ride on, so not refused.
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    // Our own origin is fine.
    let r = send(browser.http.post(&url).header("origin", app.base.as_str())).await;
    assert_eq!(r.json()["user"], alice(), "{}", r.text());

    let who = browser.whoami().await.ok_json(StatusCode::OK);
    assert_eq!(who["user"], alice());
    let r = send(
        browser
            .http
            .post(app.url("/v1/session/logout"))
            .header("origin", "https://evil.example"),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let who = browser.whoami().await.ok_json(StatusCode::OK);
    assert_eq!(who["user"], alice(), "a cross-site logout does nothing");
}

async fn sessions_and_phone_tokens_expire(kind: StoreKind) {
    let t0 = SystemClock.now_ms();
    let clock = Arc::new(ManualClock::new(t0));
    let mut cfg = config();
    cfg.session_ttl = 60;
    cfg.mobile_token_ttl = 300;
    let app = app_with(kind, cfg, Some(clock.clone() as Arc<dyn Clock>)).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;
    phone.scan_ok(&login.id).await;
    phone.approve_ok(&login.id).await;
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["expires_in"], 60);
    let token = v["token"].as_str().unwrap().to_string();

    clock.set_ms(t0 + 59_999);
    browser.whoami_bearer(&token).await.ok_json(StatusCode::OK);
    browser.whoami().await.ok_json(StatusCode::OK);
    clock.set_ms(t0 + 60_000);
    browser
        .whoami_bearer(&token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // The phone token: alive until its TTL, then refused.
    clock.set_ms(t0 + 299_999);
    let login2 = browser.create().await;
    phone.scan_ok(&login2.id).await;
    clock.set_ms(t0 + 300_000);
    phone
        .approve(&login2.id)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(browser.state(&login2).await, "scanned");
}

async fn operations_endpoints(kind: StoreKind) {
    let app = app(kind).await;
    let http = raw_client();
    let r = send(http.get(app.url("/healthz"))).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(http.get(app.url("/readyz"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.browser().create().await;
    let r = send(http.get(app.url("/metrics"))).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.text();
    assert!(
        text.contains("qrlogin_logins_created_total"),
        "metrics: {}",
        &text[..text.len().min(500)]
    );
    assert!(text.contains("qrlogin_http_requests_total"));
    let api = send(http.get(app.url("/openapi.json")))
        .await
        .ok_json(StatusCode::OK);
    for path in [
        "/v1/logins",
        "/v1/logins/{id}",
        "/v1/logins/{id}/events",
        "/v1/logins/{id}/redeem",
        "/v1/mobile/logins/{id}/scan",
        "/v1/mobile/logins/{id}/approve",
        "/v1/session",
        "/v1/session/logout",
        "/.well-known/jwks.json",
    ] {
        assert!(api["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    // Without --oidc-clients the provider's paths answer 404: not documented.
    for path in [
        "/oauth2/token",
        "/.well-known/openid-configuration",
        "/v1/device/lookup",
    ] {
        assert!(
            api["paths"].get(path).is_none(),
            "openapi has {path} without clients"
        );
    }
}

/// A watcher that gets only the latest of two quick hints (scan then
/// approve collapse into "approved") must still know the scan extended the
/// expiry: a login approved after its original pending TTL but within the
/// extension is approved, not expired.
///
/// Single-threaded runtime: the two transitions run back to back on the
/// store with no await point between them, so the SSE watcher task sees
/// only the last hint (as it does when both hints arrive in one read from
/// Redis pub/sub).
#[tokio::test(flavor = "current_thread")]
async fn collapsed_hints_keep_the_scan_extension() {
    let t0 = SystemClock.now_ms();
    let clock = Arc::new(ManualClock::new(t0));
    let app = app_with(
        StoreKind::Memory,
        config(),
        Some(clock.clone() as Arc<dyn Clock>),
    )
    .await;
    let browser = app.browser();
    let login = browser.create().await;
    let mut sse = browser.events(&login, None).await;
    assert_initial(&sse.expect().await, "pending");

    let id: LoginId = login.id.parse().unwrap();
    let user = User {
        id: ALICE_ID.into(),
        name: "Alice".into(),
    };
    // Scanned 1 s before the pending TTL (now expires at t0 + 180 s) and
    // approved at once; the watcher runs only after the original TTL.
    clock.set_ms(t0 + 119_000);
    app.store.scan(&id, &user, clock.now_ms()).await.unwrap();
    app.store
        .approve(&id, ALICE_ID, clock.now_ms())
        .await
        .unwrap();
    clock.set_ms(t0 + 130_000);

    let ev = sse.expect().await;
    assert_eq!(
        ev.state(),
        "approved",
        "the SSE watcher reported {ev:?} for a login that is approved until t0+180s"
    );
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"], alice());
}

/// SPEC §2: "Final states are kept briefly (default 30 s) so late watchers
/// see the outcome, then deleted." Real time here (1 s), since Redis
/// forgets by its own key TTLs.
async fn final_states_are_forgotten_after_final_keep(kind: StoreKind) {
    let mut cfg = config();
    cfg.final_keep = 1;
    let app = app_with(kind, cfg, None).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let denied = browser.create().await;
    phone.scan_ok(&denied.id).await;
    phone.deny(&denied.id).await.ok_json(StatusCode::OK);
    let cancelled = browser.create().await;
    assert_eq!(
        browser.cancel(&cancelled).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(browser.state(&denied).await, "denied");
    assert_eq!(browser.state(&cancelled).await, "cancelled");

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for (what, login) in [("denied", &denied), ("cancelled", &cancelled)] {
        let r = browser.status(login, "").await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{what} login still visible after final_keep: {}",
            r.text()
        );
    }
    phone
        .scan(&denied.id)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_public_url_means_secure_cookies_and_hsts() {
    let mut cfg = config();
    cfg.public_url = Some("https://login.example.com".into());
    let secure = app_with(StoreKind::Memory, cfg, None).await;
    let http = raw_client();
    let r = send(http.post(secure.url("/v1/logins"))).await;
    let v = r.ok_json(StatusCode::CREATED);
    let cookie = r.set_cookie("qrl_bs").expect("qrl_bs");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        r.headers.contains_key("strict-transport-security"),
        "no HSTS under https"
    );
    assert_eq!(
        v["qr_payload"],
        format!(
            "https://login.example.com/m/{}",
            v["login_id"].as_str().unwrap()
        )
    );
    // Plain http public URL: no Secure (it would never be sent back), no HSTS.
    let plain = app(StoreKind::Memory).await;
    let r = send(http.post(plain.url("/v1/logins"))).await;
    let cookie = r.set_cookie("qrl_bs").expect("qrl_bs");
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(!r.headers.contains_key("strict-transport-security"));
}
