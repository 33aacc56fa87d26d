//! Adversarial suite, part 1: what someone who is *not* the initiating
//! browser can do with a login (SECURITY.md, properties 1–5).
//!
//! * A bystander who photographed the QR knows the login id. Without the
//!   browser secret they get the very same 404 as for an id that never
//!   existed, from every browser endpoint, before and after the phone
//!   approves; the legitimate browser still completes.
//! * Replays: re-redeem, re-approve, re-scan, re-deny, cancel after the end:
//!   409/404, never a second session.
//! * Identity injection: user ids, names and phone numbers in bodies,
//!   queries and headers are ignored; the user comes from the phone token.
//! * Ids and secrets are made by the server (a client-supplied id is never
//!   used), 128 / 256 random bits; Redis keeps only their hashes.
//!
//! Every test runs on both stores (`memory::…`, `redis::…`).

#[macro_use]
mod common;
#[path = "common/security.rs"]
mod sec;

use common::*;
use qrlogin_core::{BrowserSecret, LoginId, SessionToken};
use reqwest::StatusCode;
use sec::*;
use serde_json::{json, Value};
use std::collections::HashSet;

per_store!(
    bystander_with_the_id_learns_nothing_before_and_after_approval,
    bystander_cannot_redeem_an_approved_login_even_with_other_secrets,
    replayed_requests_never_yield_a_second_session,
    replays_after_deny_cancel_and_expiry_yield_nothing,
    identity_comes_only_from_the_phone_token,
    a_second_user_cannot_take_over_a_scanned_login,
    ids_and_secrets_are_server_made_and_unguessable,
);

fn user_json(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name})
}

/// True when `r` mentions a demo user in any way (body or headers).
fn mentions_user(r: &Reply) -> bool {
    let mut text = r.text();
    for (k, v) in &r.headers {
        text.push_str(&format!("{k}: {v:?}\n"));
    }
    ["u-alice", "Alice", "u-bob", "Bob", "alice", "bob"]
        .iter()
        .any(|needle| text.contains(needle))
}

async fn bystander_with_the_id_learns_nothing_before_and_after_approval(kind: StoreKind) {
    let app = unlimited(kind).await;
    let reference = unknown_login_404(&app.base).await;
    let browser = app.browser();
    let other_browser = app.browser();
    let phone = app.phone(ALICE).await;
    let eve = Bystander::new(&app.base);

    // The login under attack (cookie binding, like a real browser), and
    // another login whose secret the bystander does hold (her own).
    let login = browser.create().await;
    let eves_own = other_browser.create_header().await;
    let creds = Cred::attempts(&[eves_own.secret.clone().unwrap()]);
    // The legitimate browser watches from the start.
    let mut sse = browser.events(&login, None).await;
    assert_eq!(sse.expect().await.state(), "pending");

    // Pending.
    let answers = eve.try_everything(&login.id, &creds).await;
    assert_all_like_404(&answers, &reference);

    // Scanned: the login now has a user; the bystander still sees nothing.
    phone.scan_ok(&login.id).await;
    assert_eq!(
        sse.expect_named("scanned").await.json()["user"]["id"],
        ALICE_ID
    );
    let answers = eve.try_everything(&login.id, &creds).await;
    assert_all_like_404(&answers, &reference);
    for (what, r) in &answers {
        assert!(!mentions_user(r), "{what}: user data leaked: {}", r.text());
    }

    // Approved: the moment a session could be taken.
    phone.approve_ok(&login.id).await;
    sse.expect_named("approved").await;
    let answers = eve.try_everything(&login.id, &creds).await;
    assert_all_like_404(&answers, &reference);
    for (what, r) in &answers {
        assert!(!mentions_user(r), "{what}: user data leaked: {}", r.text());
        assert!(
            r.set_cookie("qrl_session").is_none(),
            "{what}: got a session"
        );
    }

    // None of it disturbed the login: the browser completes, as alice.
    assert_eq!(browser.state(&login).await, "approved");
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"], user_json(ALICE_ID, "Alice"));
    assert_eq!(
        browser.whoami().await.ok_json(StatusCode::OK)["user"]["id"],
        ALICE_ID
    );

    // Consumed: the bystander's answers are still the same 404, and the
    // bystander has no session.
    let answers = eve.try_everything(&login.id, &creds).await;
    assert_all_like_404(&answers, &reference);
    let r = send(raw_client().get(app.url("/v1/session"))).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // Her own login is untouched by all this (she used its secret on ours).
    assert_eq!(other_browser.state(&eves_own).await, "pending");
}

async fn bystander_cannot_redeem_an_approved_login_even_with_other_secrets(kind: StoreKind) {
    // Many approved logins, each attacked with every other login's real
    // secret (cookie and bearer), a forged one, and none: zero sessions.
    let app = unlimited(kind).await;
    let reference = unknown_login_404(&app.base).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let eve = Bystander::new(&app.base);
    let mut logins = Vec::new();
    for _ in 0..6 {
        let l = browser.create_header().await;
        phone.scan_ok(&l.id).await;
        phone.approve_ok(&l.id).await;
        logins.push(l);
    }
    let secrets: Vec<String> = logins.iter().map(|l| l.secret.clone().unwrap()).collect();
    for (i, l) in logins.iter().enumerate() {
        let others: Vec<String> = secrets
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| s.clone())
            .collect();
        for c in Cred::attempts(&others) {
            let r = eve.redeem(&l.id, &c).await;
            assert_all_like_404(&[(format!("redeem {c:?}"), r)], &reference);
        }
    }
    // Every login is still approved and redeemable exactly once by its
    // own browser.
    for l in &logins {
        assert_eq!(browser.state(l).await, "approved");
        browser.redeem(l).await.ok_json(StatusCode::OK);
    }
}

async fn replayed_requests_never_yield_a_second_session(kind: StoreKind) {
    let app = unlimited(kind).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let bob = app.phone(BOB).await;
    let login = browser.create_header().await;
    phone.scan_ok(&login.id).await;
    phone.approve_ok(&login.id).await;

    // Replayed approve/scan while approved: refused, state unchanged.
    phone
        .approve(&login.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    phone
        .scan(&login.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    phone
        .deny(&login.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(browser.state(&login).await, "approved");

    let first = browser.redeem(&login).await;
    let v = first.ok_json(StatusCode::OK);
    let token = v["token"].as_str().unwrap().to_string();
    assert!(first.set_cookie("qrl_session").is_some());

    // Every replay after consume: 409/404, no token, no cookie.
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(("redeem", browser.redeem(&login).await));
        replies.push(("approve", phone.approve(&login.id).await));
        replies.push(("scan", phone.scan(&login.id).await));
        replies.push(("deny", phone.deny(&login.id).await));
        replies.push(("bob approve", bob.approve(&login.id).await));
        replies.push(("bob scan", bob.scan(&login.id).await));
        replies.push(("cancel", browser.cancel(&login).await));
        replies.push(("status", browser.status(&login, "").await));
    }
    for (what, r) in &replies {
        assert!(
            r.status == StatusCode::CONFLICT || r.status == StatusCode::NOT_FOUND,
            "replayed {what} after consume: {} {}",
            r.status,
            r.text()
        );
        r.assert_json_error();
        assert!(
            !r.text().contains(&token[23..]),
            "{what}: the session token again"
        );
        assert!(r.set_cookies().is_empty(), "{what}: set a cookie");
    }
    // The one session is alice's and works; its login id part cannot be
    // combined with another secret.
    assert_eq!(
        browser.whoami_bearer(&token).await.ok_json(StatusCode::OK)["user"]["id"],
        ALICE_ID
    );
    let forged = SessionToken::new_for(login.id.parse().unwrap()).expose();
    browser
        .whoami_bearer(&forged)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // The SSE stream of a consumed login is gone too (nothing to replay).
    browser
        .events_reply(&login)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

async fn replays_after_deny_cancel_and_expiry_yield_nothing(kind: StoreKind) {
    let (app, clock) = clocked(kind, config()).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;

    // Denied: approve replayed after the deny, then redeem.
    let denied = browser.create_header().await;
    phone.scan_ok(&denied.id).await;
    let v = phone.deny(&denied.id).await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "denied");
    phone
        .approve(&denied.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    phone
        .scan(&denied.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    browser
        .redeem(&denied)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(browser.state(&denied).await, "denied");

    // Cancelled after approval: no redeem, no re-approve.
    let cancelled = browser.create_header().await;
    phone.scan_ok(&cancelled.id).await;
    phone.approve_ok(&cancelled.id).await;
    let r = browser.cancel(&cancelled).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    browser
        .redeem(&cancelled)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    phone
        .approve(&cancelled.id)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(browser.state(&cancelled).await, "cancelled");

    // Approved, then expired before redeem: no session, ever.
    let late = browser.create_header().await;
    phone.scan_ok(&late.id).await;
    phone.approve_ok(&late.id).await;
    clock.advance_ms(180_000); // 120 s + the 60 s scan extension
    browser
        .redeem(&late)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    phone
        .approve(&late.id)
        .await
        .assert_error(StatusCode::GONE, "gone");
    phone
        .scan(&late.id)
        .await
        .assert_error(StatusCode::GONE, "gone");
    browser
        .whoami()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// Headers an attacker (or a misconfigured proxy) might use to claim an
/// identity.
const IDENTITY_HEADERS: &[(&str, &str)] = &[
    ("x-user-id", BOB_ID),
    ("x-user", "bob"),
    ("x-forwarded-user", "bob"),
    ("x-remote-user", "bob"),
    ("remote-user", "bob"),
    ("x-auth-request-user", "bob"),
    ("x-auth-request-email", "bob@example.com"),
    ("x-phone-number", "+15550100"),
    ("x-user-name", "Bob"),
];

fn injected_body() -> Value {
    json!({
        "user_id": BOB_ID,
        "userId": BOB_ID,
        "uid": BOB_ID,
        "id": BOB_ID,
        "user": {"id": BOB_ID, "name": "Bob"},
        "name": "Bob",
        "username": "bob",
        "phone": "+15550100",
        "phone_number": "+15550100",
    })
}

/// A phone call as alice, with bob's identity injected everywhere else.
fn injected(phone: &Phone, id: &str, action: &str) -> reqwest::RequestBuilder {
    let mut rb = phone
        .http
        .post(format!(
            "{}/v1/mobile/logins/{id}/{action}?user_id={BOB_ID}&user=bob",
            phone.base
        ))
        .bearer_auth(&phone.token)
        .json(&injected_body());
    for (k, v) in IDENTITY_HEADERS {
        rb = rb.header(*k, *v);
    }
    rb
}

async fn identity_comes_only_from_the_phone_token(kind: StoreKind) {
    let app = unlimited(kind).await;
    let browser = app.browser();
    let alice = app.phone(ALICE).await;

    // Sign-in: a body claiming another id still signs in the password's user.
    let r = send(
        raw_client()
            .post(app.url("/v1/mobile/session"))
            .json(&json!({"username": "alice", "password": "wonderland", "id": BOB_ID, "user": {"id": BOB_ID}})),
    )
    .await;
    assert_eq!(r.ok_json(StatusCode::OK)["user"]["id"], ALICE_ID);

    // Scan and approve as alice with bob's identity in body, query and
    // headers: the login is alice's.
    let login = browser.create().await;
    let r = send(injected(&alice, &login.id, "scan")).await;
    assert_eq!(
        r.ok_json(StatusCode::OK)["state"],
        "scanned",
        "{}",
        r.text()
    );
    let v = browser.status(&login, "").await.ok_json(StatusCode::OK);
    assert_eq!(v["user"], user_json(ALICE_ID, "Alice"), "scanned by");
    let r = send(injected(&alice, &login.id, "approve")).await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"], user_json(ALICE_ID, "Alice"), "session user");
    let v = browser.whoami().await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], ALICE_ID);

    // Without a token, claiming an identity gets nothing but 401.
    let login = browser.create().await;
    for action in ["scan", "approve", "deny"] {
        let mut rb = raw_client()
            .post(app.url(&format!("/v1/mobile/logins/{}/{action}", login.id)))
            .json(&injected_body());
        for (k, v) in IDENTITY_HEADERS {
            rb = rb.header(*k, *v);
        }
        send(rb)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // A forged token of the right shape: 401 too.
    let forged = qrlogin_core::MobileToken::random().expose();
    let r = send(
        raw_client()
            .post(app.url(&format!("/v1/mobile/logins/{}/scan", login.id)))
            .bearer_auth(&forged),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(browser.state(&login).await, "pending");
}

async fn a_second_user_cannot_take_over_a_scanned_login(kind: StoreKind) {
    let app = unlimited(kind).await;
    let browser = app.browser();
    let alice = app.phone(ALICE).await;
    let bob = app.phone(BOB).await;
    let login = browser.create().await;
    alice.scan_ok(&login.id).await;

    // Bob, claiming to be alice in every way but his token.
    let as_alice = |action: &str| {
        let mut rb = bob
            .http
            .post(app.url(&format!(
                "/v1/mobile/logins/{}/{action}?user_id={ALICE_ID}",
                login.id
            )))
            .bearer_auth(&bob.token)
            .json(&json!({"user_id": ALICE_ID, "user": {"id": ALICE_ID, "name": "Alice"}}));
        for (k, _) in IDENTITY_HEADERS {
            rb = rb.header(*k, ALICE_ID);
        }
        rb
    };
    for action in ["scan", "approve", "deny"] {
        let r = send(as_alice(action)).await;
        r.assert_error(StatusCode::CONFLICT, "conflict");
    }
    let v = browser.status(&login, "").await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "scanned");
    assert_eq!(v["user"], user_json(ALICE_ID, "Alice"));
    alice.approve_ok(&login.id).await;
    assert_eq!(
        browser.redeem(&login).await.ok_json(StatusCode::OK)["user"]["id"],
        ALICE_ID
    );
}

/// Number of 1 bits.
fn ones(bytes: &[u8]) -> u32 {
    bytes.iter().map(|b| b.count_ones()).sum()
}

async fn ids_and_secrets_are_server_made_and_unguessable(kind: StoreKind) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let app = unlimited(kind).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;

    // A client-supplied id (in any field) is never used.
    let chosen = LoginId::random().to_string();
    let r =
        send(raw_client().post(app.url("/v1/logins")).json(
            &json!({"binding": "header", "login_id": chosen, "id": chosen, "secret": chosen}),
        ))
        .await;
    let v = r.ok_json(StatusCode::CREATED);
    assert_ne!(v["login_id"], chosen, "the client chose the login id");
    phone
        .scan(&chosen)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    // 200 logins: ids are 22 base64url chars = 128 bits, secrets 43 = 256
    // bits, all distinct, and their bits look uniform (a counter, a clock
    // or a weak generator would fail the 5-sigma balance check).
    const N: usize = 200;
    let mut ids = HashSet::new();
    let mut secrets = HashSet::new();
    let (mut id_ones, mut secret_ones) = (0u32, 0u32);
    for _ in 0..N {
        let l = browser.create_header().await;
        let secret = l.secret.clone().unwrap();
        assert_eq!(l.id.len(), 22);
        assert_eq!(secret.len(), 43);
        let id_bytes = b64.decode(&l.id).expect("id is base64url");
        let secret_bytes = b64.decode(&secret).expect("secret is base64url");
        assert_eq!(id_bytes.len(), 16, "128-bit id");
        assert_eq!(secret_bytes.len(), 32, "256-bit secret");
        assert!(secret.parse::<BrowserSecret>().is_ok());
        id_ones += ones(&id_bytes);
        secret_ones += ones(&secret_bytes);
        // The QR payload carries the id and nothing else.
        assert_eq!(l.created["qr_payload"], app.url(&format!("/m/{}", l.id)));
        assert!(!l.created["qr_payload"].as_str().unwrap().contains(&secret));
        assert!(ids.insert(l.id), "repeated login id");
        assert!(secrets.insert(secret), "repeated browser secret");
    }
    let within_5_sigma = |ones: u32, bits: usize| {
        let mean = bits as f64 / 2.0;
        let sigma = (bits as f64 / 4.0).sqrt();
        (ones as f64 - mean).abs() < 5.0 * sigma
    };
    assert!(within_5_sigma(id_ones, N * 128), "id bits: {id_ones} ones");
    assert!(
        within_5_sigma(secret_ones, N * 256),
        "secret bits: {secret_ones} ones"
    );

    // Session tokens: <login id>.<256-bit secret>, fresh per redeem.
    let mut tokens = HashSet::new();
    for _ in 0..5 {
        let l = browser.create_header().await;
        phone.scan_ok(&l.id).await;
        phone.approve_ok(&l.id).await;
        let v = browser.redeem(&l).await.ok_json(StatusCode::OK);
        let t = v["token"].as_str().unwrap().to_string();
        let (tid, tsecret) = t.split_once('.').expect("token shape");
        assert_eq!(tid, l.id);
        assert_eq!(b64.decode(tsecret).expect("base64url").len(), 32);
        assert!(!t.contains(l.secret.as_deref().unwrap()));
        assert!(tokens.insert(tsecret.to_string()));
    }
    // Phone tokens: 256 bits too.
    let t = phone.token.clone();
    assert_eq!(b64.decode(&t).expect("base64url").len(), 32);
}

// ---------------------------------------------------------------------------
// Redis only: what the store holds.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_only_hashes_of_secrets_and_tokens() {
    let app = unlimited(StoreKind::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let browser = app.browser();
    let phone = app.phone(ALICE).await;

    let pending = browser.create_header().await;
    let done = browser.create_header().await;
    phone.scan_ok(&done.id).await;
    phone.approve_ok(&done.id).await;
    let token = browser.redeem(&done).await.ok_json(StatusCode::OK)["token"]
        .as_str()
        .unwrap()
        .to_string();

    let dump = redis_dump(redis);
    let pending_secret = pending.secret.clone().unwrap();
    let done_secret = done.secret.clone().unwrap();
    // The check has teeth: the records are there, found by their hashes.
    let hash_hex = |s: &str| s.parse::<BrowserSecret>().unwrap().hash().to_hex();
    assert!(dump.contains(&hash_hex(&pending_secret)), "{dump}");
    assert!(dump.contains(&hash_hex(&done_secret)), "{dump}");
    let session_hash = token.parse::<SessionToken>().unwrap().hash().to_hex();
    assert!(dump.contains(&session_hash), "{dump}");
    let mobile_hash = phone
        .token
        .parse::<qrlogin_core::MobileToken>()
        .unwrap()
        .hash()
        .to_hex();
    assert!(dump.contains(&mobile_hash), "{dump}");
    // …and the secrets themselves are not.
    for (what, secret) in [
        ("pending browser secret", pending_secret.as_str()),
        ("redeemed browser secret", done_secret.as_str()),
        ("session token", token.as_str()),
        ("session token's secret part", &token[23..]),
        ("mobile token", phone.token.as_str()),
        ("password", "wonderland"),
    ] {
        assert!(!dump.contains(secret), "{what} stored in Redis:\n{dump}");
    }
}
