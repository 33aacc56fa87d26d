//! Sessions a user can see and end (SPEC §7), end to end over loopback on
//! both stores: the phone lists its user's web sessions, logs out of one
//! and everywhere; the site backend revokes all of a user's sessions with
//! the `--admin-token-file` bearer; and (Redis) the same across two
//! instances sharing one private redis-server.

#[macro_use]
mod common;

use common::*;
use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;
use serde_json::Value;

const ADMIN_TOKEN: &str = "admin-0123456789abcdef0123456789abcdef";

/// A config with the admin API on; the returned guard keeps its file.
fn admin_config() -> (qrlogin_server::ServeConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin-token");
    std::fs::write(&path, format!("{ADMIN_TOKEN}\n")).expect("write token");
    let mut cfg = config();
    cfg.admin_token_file = Some(path);
    (cfg, dir)
}

/// One browser logged in through `phone` on `base`: its sid and token.
async fn logged_in(base: &str, phone: &Phone) -> (Browser, String, String) {
    let browser = Browser::new(base);
    let login = browser.create().await;
    phone.at(base).scan_ok(&login.id).await;
    phone.at(base).approve_ok(&login.id).await;
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    let token = v["token"].as_str().expect("token").to_string();
    (browser, login.id, token)
}

async fn list(phone: &Phone) -> Reply {
    send(
        phone
            .http
            .get(format!("{}/v1/mobile/sessions", phone.base))
            .header(AUTHORIZATION, format!("Bearer {}", phone.token)),
    )
    .await
}

async fn sids(phone: &Phone) -> Vec<String> {
    let v = list(phone).await.ok_json(StatusCode::OK);
    v["sessions"]
        .as_array()
        .expect("sessions array")
        .iter()
        .map(|s| s["sid"].as_str().expect("sid").to_string())
        .collect()
}

async fn delete(phone: &Phone, sid: &str) -> Reply {
    send(
        phone
            .http
            .delete(format!("{}/v1/mobile/sessions/{sid}", phone.base))
            .header(AUTHORIZATION, format!("Bearer {}", phone.token)),
    )
    .await
}

async fn revoke_all(phone: &Phone) -> Reply {
    send(
        phone
            .http
            .post(format!("{}/v1/mobile/sessions/revoke-all", phone.base))
            .header(AUTHORIZATION, format!("Bearer {}", phone.token)),
    )
    .await
}

async fn admin_revoke_all(base: &str, user: &str, token: Option<&str>) -> Reply {
    let mut rb = raw_client().post(format!("{base}/v1/admin/users/{user}/sessions/revoke-all"));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    send(rb).await
}

async fn phone_flow(kind: StoreKind) {
    let app = app(kind).await;
    let alice = app.phone(ALICE).await;
    let bob = app.phone(BOB).await;
    let (a1, sid1, _) = logged_in(&app.base, &alice).await;
    let (a2, sid2, t2) = logged_in(&app.base, &alice).await;
    let (b1, sid_b, _) = logged_in(&app.base, &bob).await;

    // The list: alice's two, oldest first, with what the phone shows.
    let v = list(&alice).await.ok_json(StatusCode::OK);
    let sessions = v["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "{v}");
    assert_eq!(sessions[0]["sid"], sid1.as_str());
    assert_eq!(sessions[1]["sid"], sid2.as_str());
    for s in sessions {
        assert_eq!(s["ip"], "127.0.0.1", "{s}");
        for f in ["created_at", "expires_at", "browser", "os", "user_agent"] {
            assert!(s[f].is_string(), "{f} in {s}");
        }
        assert_eq!(s["place"], Value::Null);
        // Never the token, nor anything longer than the public login id.
        assert!(!v.to_string().contains(&t2[23..]));
    }
    assert_eq!(sids(&bob).await, vec![sid_b.clone()]);
    // Without a phone credential: 401.
    send(raw_client().get(app.url("/v1/mobile/sessions")))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // Someone else's sid is 404, exactly like an unknown one.
    let theirs = delete(&alice, &sid_b).await;
    theirs.assert_error(StatusCode::NOT_FOUND, "not_found");
    let unknown = delete(&alice, "AAAAAAAAAAAAAAAAAAAAAA").await;
    unknown.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(theirs.json(), unknown.json());
    delete(&alice, "not-a-sid")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    b1.whoami().await.ok_json(StatusCode::OK);

    // Log out of one.
    assert_eq!(delete(&alice, &sid1).await.status, StatusCode::NO_CONTENT);
    a1.whoami()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    a2.whoami().await.ok_json(StatusCode::OK);
    assert_eq!(sids(&alice).await, vec![sid2.clone()]);
    delete(&alice, &sid1)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    // Log out everywhere.
    let v = revoke_all(&alice).await.ok_json(StatusCode::OK);
    assert_eq!(v["revoked"], 1, "{v}");
    a2.whoami()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    a2.whoami_bearer(&t2)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(sids(&alice).await.is_empty());
    b1.whoami().await.ok_json(StatusCode::OK);
    assert_eq!(sids(&bob).await, vec![sid_b]);
    let v = revoke_all(&alice).await.ok_json(StatusCode::OK);
    assert_eq!(v["revoked"], 0);

    // A browser logout drops the session from the list too.
    let (a3, sid3, _) = logged_in(&app.base, &alice).await;
    assert_eq!(sids(&alice).await, vec![sid3]);
    assert_eq!(a3.logout().await.status, StatusCode::NO_CONTENT);
    assert!(sids(&alice).await.is_empty());
}

async fn admin_flow(kind: StoreKind) {
    let (cfg, _dir) = admin_config();
    let app = app_with(kind, cfg, None).await;
    let alice = app.phone(ALICE).await;
    let bob = app.phone(BOB).await;
    let (a1, _, _) = logged_in(&app.base, &alice).await;
    let (a2, _, _) = logged_in(&app.base, &alice).await;
    let (b1, _, _) = logged_in(&app.base, &bob).await;

    admin_revoke_all(&app.base, ALICE_ID, None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    admin_revoke_all(&app.base, ALICE_ID, Some("admin-wrong"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // The phone's own token is not the admin token.
    admin_revoke_all(&app.base, ALICE_ID, Some(&alice.token))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    a1.whoami().await.ok_json(StatusCode::OK);

    let v = admin_revoke_all(&app.base, ALICE_ID, Some(ADMIN_TOKEN))
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(v["revoked"], 2, "{v}");
    for b in [&a1, &a2] {
        b.whoami()
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    b1.whoami().await.ok_json(StatusCode::OK);
    let v = admin_revoke_all(&app.base, "nobody-at-all", Some(ADMIN_TOKEN))
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(v["revoked"], 0);
    // The document lists the admin route only when it is on.
    let doc = send(raw_client().get(app.url("/openapi.json")))
        .await
        .ok_json(StatusCode::OK);
    assert!(doc["paths"]["/v1/admin/users/{user_id}/sessions/revoke-all"].is_object());
}

/// Without `--admin-token-file` the admin route does not exist: 404 with
/// or without a bearer.
async fn admin_off_is_404(kind: StoreKind) {
    let app = app(kind).await;
    for token in [None, Some(ADMIN_TOKEN)] {
        admin_revoke_all(&app.base, ALICE_ID, token)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    let doc = send(raw_client().get(app.url("/openapi.json")))
        .await
        .ok_json(StatusCode::OK);
    assert!(doc["paths"]["/v1/admin/users/{user_id}/sessions/revoke-all"].is_null());
}

per_store!(phone_flow, admin_flow, admin_off_is_404);

/// Two instances on one Redis: sessions made on A are listed and revoked
/// through B, and the old tokens are refused on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_all_across_two_instances() {
    let redis = redis_server().await;
    let (mut cfg, _dir) = admin_config();
    cfg.store = redis.url();
    let a = spawn_on(cfg.clone(), redis_store(&redis.url(), &cfg).await, None).await;
    let b = spawn_on(cfg.clone(), redis_store(&redis.url(), &cfg).await, None).await;
    let alice = a.phone(ALICE).await;
    let bob = a.phone(BOB).await;
    let (_, s1, t1) = logged_in(&a.base, &alice).await;
    let (_, s2, t2) = logged_in(&a.base, &alice).await;
    let (_, _, tb) = logged_in(&b.base, &bob).await;
    assert_eq!(sids(&alice.at(&b.base)).await, vec![s1, s2]);
    let v = revoke_all(&alice.at(&b.base)).await.ok_json(StatusCode::OK);
    assert_eq!(v["revoked"], 2);
    for base in [&a.base, &b.base] {
        for t in [&t1, &t2] {
            Browser::new(base)
                .whoami_bearer(t)
                .await
                .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        }
        Browser::new(base)
            .whoami_bearer(&tb)
            .await
            .ok_json(StatusCode::OK);
    }
    // And the admin API on A ends a session made on B.
    let (_, _, t3) = logged_in(&b.base, &alice).await;
    let v = admin_revoke_all(&a.base, ALICE_ID, Some(ADMIN_TOKEN))
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(v["revoked"], 1);
    Browser::new(&b.base)
        .whoami_bearer(&t3)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// `--redis-min-replicas 1` on a Redis without replicas: redeem answers a
/// quick 503 `store_unavailable` with no token and no session cookie, and
/// the login stays consumed (a retry does not release one either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_replicas_without_replicas_withholds_the_token() {
    let redis = redis_server().await;
    let mut cfg = config();
    cfg.store = redis.url();
    cfg.redis_min_replicas = 1;
    let store = qrlogin_redis::RedisStore::connect(
        &redis.url(),
        cfg.ttls(),
        std::time::Duration::from_millis(cfg.store_timeout_ms),
    )
    .await
    .expect("connect")
    .with_min_replicas(1);
    let app = spawn_on(cfg, std::sync::Arc::new(store), None).await;
    let alice = app.phone(ALICE).await;
    let browser = app.browser();
    let login = browser.create().await;
    alice.scan_ok(&login.id).await;
    alice.approve_ok(&login.id).await;
    let started = std::time::Instant::now();
    let r = browser.redeem(&login).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(r.set_cookie("qrl_session").is_none());
    assert!(!r.text().contains("token"), "{}", r.text());
    assert_ne!(browser.redeem(&login).await.status, StatusCode::OK);
    browser
        .whoami()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(sids(&alice).await.is_empty(), "no session left behind");
}

/// Start-up refusals: `--redis-min-replicas` with the memory store, and an
/// admin token file that is too short (the error never shows the content).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_session_flags_refuse_to_start() {
    let mut cfg = config();
    cfg.redis_min_replicas = 1;
    let e = qrlogin_server::QrLogin::builder(cfg)
        .build()
        .await
        .err()
        .expect("memory store with --redis-min-replicas must not start");
    assert!(e.to_string().contains("needs a Redis"), "{e:#}");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin-token");
    std::fs::write(&path, "short-secret-xyz\n").expect("write");
    let mut cfg = config();
    cfg.admin_token_file = Some(path);
    let e = qrlogin_server::QrLogin::builder(cfg)
        .build()
        .await
        .err()
        .expect("a short admin token must not start");
    let text = format!("{e:#}");
    assert!(text.contains("at least 32"), "{text}");
    assert!(!text.contains("short-secret-xyz"), "{text}");
}
