//! Behind a real reverse proxy: nginx with `examples/nginx/qrlogin.conf` in
//! front of two `qrlogin` instances on one private Redis, public URL
//! `https://127.0.0.1:PORT/auth/qr` (README "Deploy behind a reverse proxy").
//!
//! * The whole login runs through nginx, with everything under the one
//!   `/auth/qr/` location: create, QR image, SSE, scan, approve, redeem.
//! * The `scanned` and `approved` events arrive through nginx while the
//!   stream is open (asserted as events, not as times).
//! * The phone is shown the browser's own address (127.0.0.2), which only
//!   `X-Forwarded-For` from the trusted proxy (127.0.0.1) can tell.
//! * The instance holding the browser's stream is killed mid-wait: the
//!   browser reconnects through nginx with `Last-Event-ID`, lands on the
//!   other instance, and the login completes there.
//! * Cookies carry `Path=/auth/qr…` and `Secure`; the origin-root files
//!   reach qrlogin through their own location.

#[macro_use]
mod common;
#[path = "common/proxy.rs"]
mod proxy;

use common::*;
use proxy::Stack;
use reqwest::StatusCode;
use serde_json::{json, Value};

const BROWSER_IP: [u8; 4] = [127, 0, 0, 2];
const PHONE_IP: [u8; 4] = [127, 0, 0, 3];

fn events_stream(resp: reqwest::Response) -> SseStream {
    assert_eq!(resp.status(), StatusCode::OK, "SSE through nginx");
    let h = resp.headers();
    assert_eq!(
        h.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-cache, no-transform"),
        "SSE cache-control through nginx"
    );
    assert!(
        h.get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{h:?}"
    );
    SseStream::new(resp)
}

/// The browser creates a login through the stack's nginx (QR payload,
/// events link and cookie path under the public prefix; the QR image
/// served) and opens its event stream there: the login id, the create
/// answer and the stream, its `pending` event read.
async fn create_and_wait(
    stack: &Stack,
    browser: &reqwest::Client,
    what: &str,
) -> (String, Value, SseStream) {
    let r = send(browser.post(stack.url("/v1/logins")).json(&json!({}))).await;
    let created = r.ok_json(StatusCode::CREATED);
    let id = created["login_id"].as_str().unwrap().to_string();
    assert_eq!(created["qr_payload"], stack.url(&format!("/m/{id}")));
    assert_eq!(created["events"], format!("/auth/qr/v1/logins/{id}/events"));
    let cookie = r.set_cookie("qrl_bs").expect("browser-secret cookie");
    assert!(
        cookie.contains(&format!("Path=/auth/qr/v1/logins/{id};")) && cookie.contains("Secure"),
        "{cookie}"
    );
    let qr = send(browser.get(format!(
        "{}{}",
        stack.origin(),
        created["qr_svg"].as_str().unwrap()
    )))
    .await;
    assert_eq!(qr.status, StatusCode::OK);
    let events_url = format!("{}{}", stack.origin(), created["events"].as_str().unwrap());
    let resp = within(
        what,
        browser
            .get(&events_url)
            .header("accept", "text/event-stream")
            .send(),
    )
    .await
    .expect("SSE request");
    let mut sse = events_stream(resp);
    sse.expect_named("pending").await;
    (id, created, sse)
}

/// The phone signs alice in and scans login `id` through nginx: her token
/// and the scan's answer (the context the phone shows).
async fn alice_scans(stack: &Stack, phone: &reqwest::Client, id: &str) -> (String, Value) {
    let signin = send(
        phone
            .post(stack.url("/v1/mobile/session"))
            .json(&json!({"username": "alice", "password": "wonderland"})),
    )
    .await
    .ok_json(StatusCode::OK);
    let token = signin["token"].as_str().unwrap().to_string();
    let ctx = send(
        phone
            .post(stack.url(&format!("/v1/mobile/logins/{id}/scan")))
            .bearer_auth(&token),
    )
    .await
    .ok_json(StatusCode::OK);
    (token, ctx)
}

/// Redeems approved login `id` through nginx (alice's session, its cookie
/// `Path` the public prefix, `GET /v1/session` knows her), then loads the
/// login page and its versioned stylesheet under the prefix: the
/// stylesheet's answer.
async fn redeem_and_fetch_the_page(stack: &Stack, browser: &reqwest::Client, id: &str) -> Reply {
    let r = send(browser.post(stack.url(&format!("/v1/logins/{id}/redeem")))).await;
    assert_eq!(r.ok_json(StatusCode::OK)["user"]["id"], ALICE_ID);
    let session = r.set_cookie("qrl_session").expect("session cookie");
    assert!(
        session.contains("Path=/auth/qr;") && session.contains("Secure"),
        "{session}"
    );
    let who = send(browser.get(stack.url("/v1/session")))
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(who["user"]["id"], ALICE_ID);
    let page = send(browser.get(stack.url("/"))).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    let css = html
        .split('"')
        .find(|s| s.starts_with("/auth/qr/_qrlogin/assets/") && s.ends_with("/app.css"))
        .unwrap_or_else(|| panic!("no versioned app.css link under /auth/qr in the page:\n{html}"))
        .to_string();
    let asset = send(browser.get(format!("{}{css}", stack.origin()))).await;
    assert_eq!(asset.status, StatusCode::OK);
    asset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_login_runs_through_nginx_and_survives_an_instance_dying_mid_wait() {
    let ios = "ios:ABCDE12345.com.example.shop";
    let mut stack = tokio::task::spawn_blocking(move || {
        Stack::start(&["--app-links", ios, "--site-name", "Example Shop"])
    })
    .await
    .expect("starting nginx, Redis and two instances");
    let browser = stack.client(BROWSER_IP);
    let phone_http = stack.client(PHONE_IP);

    // ---- the browser creates a login through nginx and waits on SSE
    let (id, created, mut sse) = create_and_wait(&stack, &browser, "SSE through nginx").await;

    // ---- the phone (another address) signs in and scans through nginx
    let (token, ctx) = alice_scans(&stack, &phone_http, &id).await;
    assert_eq!(
        ctx["browser"]["ip"], "127.0.0.2",
        "the phone must see the browser's address (X-Forwarded-For from the trusted proxy), not nginx's: {ctx}"
    );
    assert_eq!(ctx["site"]["origin"], stack.origin());
    assert_eq!(ctx["site"]["name"], "Example Shop");

    // The scanned event arrives through nginx, on the open stream.
    let scanned = sse.expect_named("scanned").await;
    assert_eq!(scanned.json()["user"]["id"], ALICE_ID);
    let last_id = scanned.id.clone().expect("event id");

    // ---- the instance holding the stream dies
    let holder = stack
        .instance_streaming()
        .await
        .expect("one instance holds the waiting browser");
    eprintln!("[proxy] killing instance {holder} (it holds the stream)");
    stack.instances[holder].kill();
    assert!(
        within("the stream ends with its instance", sse.next())
            .await
            .is_none(),
        "the stream should end when its instance dies"
    );

    // The browser reconnects through nginx, resuming after the event it saw:
    // nginx passes it to the other instance; nothing is repeated.
    let events_url = format!("{}{}", stack.origin(), created["events"].as_str().unwrap());
    let resp = within(
        "SSE reconnect through nginx",
        browser
            .get(&events_url)
            .header("accept", "text/event-stream")
            .header("last-event-id", &last_id)
            .send(),
    )
    .await
    .expect("SSE reconnect");
    let mut sse = events_stream(resp);
    assert_eq!(
        stack.instance_streaming().await,
        Some(1 - holder),
        "the reconnected stream is on the surviving instance"
    );

    // ---- approve through nginx; the event comes on the new stream
    let r = send(
        phone_http
            .post(stack.url(&format!("/v1/mobile/logins/{id}/approve")))
            .bearer_auth(&token)
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    sse.expect_named("approved").await;

    // ---- redeem through nginx; the pages and their assets come through
    // the one location
    let asset = redeem_and_fetch_the_page(&stack, &browser, &id).await;
    assert_eq!(
        asset
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("public, max-age=31536000, immutable")
    );
    let sdk = send(browser.get(stack.url("/_qrlogin/sdk/qrlogin.js"))).await;
    assert_eq!(sdk.status, StatusCode::OK);
    assert!(sdk.text().contains("export const QrLogin"));

    // ---- origin-root files, through their own location
    let aasa = send(browser.get(format!(
        "{}/.well-known/apple-app-site-association",
        stack.origin()
    )))
    .await
    .ok_json(StatusCode::OK);
    assert_eq!(
        aasa["applinks"]["details"][0]["components"][0]["/"],
        "/auth/qr/m/*"
    );
    // Outside the location, nothing reaches qrlogin.
    let outside = send(browser.get(format!("{}/v1/logins", stack.origin()))).await;
    assert_eq!(outside.status, StatusCode::NOT_FOUND);
    assert!(!outside.text().contains("\"error\""), "{}", outside.text());
    drop(stack);
}

/// The direct answer (no proxy in between) carries the header that tells
/// nginx not to buffer; nginx consumes it, so it is checked here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_answers_tell_proxies_not_to_buffer() {
    let app = app(StoreKind::Memory).await;
    let browser = app.browser();
    let login = browser.create().await;
    let resp = within(
        "SSE",
        browser
            .http
            .get(app.url(&format!("/v1/logins/{}/events", login.id)))
            .send(),
    )
    .await
    .expect("SSE");
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(h["cache-control"], "no-cache, no-transform");
}

/// An idle stream carries the server's keep-alive as an event an
/// `EventSource` can see (`event: ping`, data `{}`, no `id`, so
/// `Last-Event-ID` stays the login's version), at least every 15 s. And it
/// does so behind an nginx that buffers (the example's `proxy_buffering
/// off;` deleted, nginx's default back): `X-Accel-Buffering: no` alone gets
/// the first event, the keep-alive and the scan through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_carry_ping_events_even_through_a_buffering_nginx() {
    let stack = tokio::task::spawn_blocking(|| {
        Stack::start_with(&[], |conf| {
            let off = "proxy_buffering off;";
            assert_eq!(conf.matches(off).count(), 1, "the events location");
            conf.replace(off, "")
        })
    })
    .await
    .expect("starting nginx, Redis and two instances");
    let browser = stack.client(BROWSER_IP);
    let created = send(browser.post(stack.url("/v1/logins")).json(&json!({})))
        .await
        .ok_json(StatusCode::CREATED);
    let id = created["login_id"].as_str().unwrap().to_string();
    let events_url = format!("{}{}", stack.origin(), created["events"].as_str().unwrap());
    let resp = within(
        "SSE through nginx",
        browser
            .get(&events_url)
            .header("accept", "text/event-stream")
            .send(),
    )
    .await
    .expect("SSE request");
    let mut sse = events_stream(resp);
    let pending = sse.expect_named("pending").await;

    // Nothing happens to the login for longer than the keep-alive interval.
    sse.expect_quiet(std::time::Duration::from_secs(17)).await;
    assert!(
        !sse.pings.is_empty(),
        "no ping event within 17 s on an idle stream (comments: {})",
        sse.comments
    );
    for p in &sse.pings {
        assert_eq!(
            p.id, None,
            "a keep-alive must not move Last-Event-ID: {p:?}"
        );
        assert_eq!(p.data, "{}", "{p:?}");
    }

    // The stream is still live: the scan arrives on it, after the version
    // the browser last saw.
    let phone = stack.client(PHONE_IP);
    let signin = send(
        phone
            .post(stack.url("/v1/mobile/session"))
            .json(&json!({"username": "alice", "password": "wonderland"})),
    )
    .await
    .ok_json(StatusCode::OK);
    let token = signin["token"].as_str().unwrap().to_string();
    send(
        phone
            .post(stack.url(&format!("/v1/mobile/logins/{id}/scan")))
            .bearer_auth(&token),
    )
    .await
    .ok_json(StatusCode::OK);
    let scanned = sse.expect_named("scanned").await;
    assert!(scanned.version() > pending.version());
    drop(stack);
}

/// The example's recipe for a proxy that strips the prefix, as its header
/// comment spells it: `proxy_pass http://qrlogin/;` in the `/auth/qr/`
/// location, and a rewrite in the (regular-expression) events location,
/// which may not carry a URI part in its `proxy_pass`.
const STRIP_PROXY_PASS: &str = "proxy_pass http://qrlogin/;";
const STRIP_EVENTS_REWRITE: &str = "rewrite ^/auth/qr(/.*)$ $1 break;";

/// The example configuration with the prefix-stripping recipe applied.
fn stripping(conf: String) -> String {
    for line in [STRIP_PROXY_PASS, STRIP_EVENTS_REWRITE] {
        assert!(
            conf.contains(&format!("#     {line}\n")),
            "the example's comment should give the stripping recipe line {line:?}"
        );
    }
    let outer = "location /auth/qr/ {";
    let (head, tail) = conf.split_once(outer).expect("the /auth/qr/ location");
    let tail = tail.replacen("proxy_pass http://qrlogin;", STRIP_PROXY_PASS, 1);
    let events = "location ~ ^/auth/qr/v1/logins/[^/]+/events$ {\n";
    assert_eq!(tail.matches(events).count(), 1, "the events location");
    let tail = tail.replace(
        events,
        &format!("{events}            {STRIP_EVENTS_REWRITE}\n"),
    );
    format!("{head}{outer}{tail}")
}

/// A proxy that strips the prefix (the example's recipe, qrlogin at
/// `--base-path /`, public URL still `…/auth/qr`): the whole login runs
/// through nginx with the `scanned` and `approved` events on an open SSE
/// stream (a 404 on the stream, as with `proxy_pass http://qrlogin/;` alone,
/// fails here), and every link, the QR payload and the cookie paths carry
/// the public prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_stripping_nginx_runs_the_login_over_sse() {
    let stack = tokio::task::spawn_blocking(|| Stack::start_with(&["--base-path", "/"], stripping))
        .await
        .expect("starting nginx, Redis and two instances");
    let browser = stack.client(BROWSER_IP);
    let phone = stack.client(PHONE_IP);

    // The stream goes through the events location and its rewrite.
    let (id, created, mut sse) =
        create_and_wait(&stack, &browser, "SSE through a stripping nginx").await;
    assert_eq!(
        created["qr_svg"],
        format!("/auth/qr/v1/logins/{id}/qr.svg"),
        "{created}"
    );
    assert!(
        stack.instance_streaming().await.is_some(),
        "an instance counts the browser as waiting on SSE"
    );

    let (token, ctx) = alice_scans(&stack, &phone, &id).await;
    assert_eq!(ctx["browser"]["ip"], "127.0.0.2", "{ctx}");
    let scanned = sse.expect_named("scanned").await;
    assert_eq!(scanned.json()["user"]["id"], ALICE_ID);

    let r = send(
        phone
            .post(stack.url(&format!("/v1/mobile/logins/{id}/approve")))
            .bearer_auth(&token)
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    sse.expect_named("approved").await;

    // The session cookie and the pages' asset links carry the public
    // prefix, and those links work through the stripping proxy.
    redeem_and_fetch_the_page(&stack, &browser, &id).await;
    drop(stack);
}
