//! Adversarial suite, part 4: the TTL edge over HTTP (SECURITY.md,
//! property 3). With a manual clock: 1 ms before the expiry every call is
//! still accepted, at the expiry every call is refused (browser: the same
//! 404 as an unknown login; phone: 410 so the app can say so), for scan,
//! approve, deny, redeem, cancel, status and events. Both stores.

#[macro_use]
mod common;
#[path = "common/security.rs"]
mod sec;

use common::*;
use reqwest::StatusCode;
use sec::*;

per_store!(every_call_is_accepted_1ms_before_the_ttl_and_refused_at_it);

async fn every_call_is_accepted_1ms_before_the_ttl_and_refused_at_it(kind: StoreKind) {
    let (app, clock) = clocked(kind, config()).await;
    let t0 = {
        use qrlogin_core::Clock as _;
        clock.now_ms()
    };
    let reference = unknown_login_404(&app.base).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let pending_edge = t0 + 120_000; // created at t0
    let scanned_edge = pending_edge + 60_000; // + the scan extension

    // Logins created at t0.
    let mk = || browser.create_header();
    let (p_ok, p_late, scan_ok, scan_late) = (mk().await, mk().await, mk().await, mk().await);
    // Scanned at t0 + 1 (so they expire at scanned_edge).
    let mut scanned = Vec::new();
    for _ in 0..8 {
        let l = mk().await;
        scanned.push(l);
    }
    clock.set_ms(t0 + 1);
    for l in &scanned {
        phone.scan_ok(&l.id).await;
    }
    let [approve_ok, deny_ok, redeem_ok, cancel_ok, approve_late, deny_late, redeem_late, cancel_late] =
        <[Login; 8]>::try_from(scanned).unwrap();
    for l in [&redeem_ok, &redeem_late] {
        phone.approve_ok(&l.id).await;
    }

    // --- pending logins: 1 ms before the TTL.
    clock.set_ms(pending_edge - 1);
    let v = browser.status(&p_ok, "").await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "pending");
    assert_eq!(v["expires_in"], 1);
    let mut sse = browser.events(&p_ok, None).await;
    assert_eq!(sse.expect().await.state(), "pending");
    drop(sse);
    let ctx = phone.scan_ok(&scan_ok.id).await;
    assert_eq!(ctx["expires_in"], 61, "extended once by 60 s: {ctx}");

    // --- pending logins: at the TTL.
    clock.set_ms(pending_edge);
    let answers = vec![
        ("status".to_string(), browser.status(&p_ok, "").await),
        (
            "long-poll".to_string(),
            browser.status(&p_ok, "?wait=1").await,
        ),
        ("events".to_string(), browser.events_reply(&p_ok).await),
        ("cancel".to_string(), browser.cancel(&p_late).await),
        ("redeem".to_string(), browser.redeem(&p_late).await),
    ];
    assert_all_like_404(&answers, &reference);
    phone
        .scan(&scan_late.id)
        .await
        .assert_error(StatusCode::GONE, "gone");
    // The login scanned 1 ms before its TTL lives on.
    assert_eq!(browser.state(&scan_ok).await, "scanned");

    // --- scanned logins: 1 ms before the extended TTL.
    clock.set_ms(scanned_edge - 1);
    phone.approve_ok(&approve_ok.id).await;
    let v = phone.deny(&deny_ok.id).await.ok_json(StatusCode::OK);
    assert_eq!(v["state"], "denied");
    let v = browser.redeem(&redeem_ok).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], ALICE_ID);
    let r = browser.cancel(&cancel_ok).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let v = browser
        .status(&approve_late, "")
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(v["state"], "scanned");
    assert_eq!(v["expires_in"], 1);

    // --- scanned logins: at the extended TTL.
    clock.set_ms(scanned_edge);
    phone
        .approve(&approve_late.id)
        .await
        .assert_error(StatusCode::GONE, "gone");
    phone
        .deny(&deny_late.id)
        .await
        .assert_error(StatusCode::GONE, "gone");
    phone
        .scan(&approve_late.id)
        .await
        .assert_error(StatusCode::GONE, "gone");
    let answers = vec![
        (
            "redeem approved".to_string(),
            browser.redeem(&redeem_late).await,
        ),
        (
            "cancel scanned".to_string(),
            browser.cancel(&cancel_late).await,
        ),
        (
            "status scanned".to_string(),
            browser.status(&approve_late, "").await,
        ),
        (
            "events scanned".to_string(),
            browser.events_reply(&deny_late).await,
        ),
        (
            "status approved".to_string(),
            browser.status(&redeem_late, "").await,
        ),
    ];
    assert_all_like_404(&answers, &reference);
    // Approved 1 ms before the edge but not redeemed: useless after it
    // (approved is not final, so it expires like any other open login).
    browser
        .redeem(&approve_ok)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    // What was decided before the edge stays decided (final states do not
    // expire).
    assert_eq!(browser.state(&deny_ok).await, "denied");
    assert_eq!(browser.state(&cancel_ok).await, "cancelled");
}
