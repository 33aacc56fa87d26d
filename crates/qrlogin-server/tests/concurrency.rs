//! Races over HTTP: many concurrent callers of one transition, exactly one
//! wins (SPEC §2), on both stores.
//!
//! Rate limits are switched off here: these tests are about atomicity, and a
//! 429 would be an answer that proves nothing either way.

#[macro_use]
mod common;

use common::*;
use reqwest::StatusCode;
use std::sync::Arc;
use tokio::sync::Barrier;

per_store!(
    fifty_concurrent_approves_one_wins,
    fifty_concurrent_redeems_one_wins,
    approve_and_deny_race_one_decision,
    redeem_and_cancel_race_one_outcome,
);

const N: usize = 50;

async fn unlimited_app(kind: StoreKind) -> App {
    let mut cfg = config();
    cfg.rate_limits = false;
    app_with(kind, cfg, None).await
}

/// Sends all requests at once (after a barrier) and returns the replies.
async fn race(requests: Vec<reqwest::RequestBuilder>) -> Vec<Reply> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|rb| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                send(rb).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(within("a racing request", t).await.expect("request task"));
    }
    out
}

fn count(replies: &[Reply], status: StatusCode) -> usize {
    replies.iter().filter(|r| r.status == status).count()
}

fn approve_req(phone: &Phone, id: &str, action: &str) -> reqwest::RequestBuilder {
    raw_client()
        .post(format!("{}/v1/mobile/logins/{id}/{action}", phone.base))
        .bearer_auth(&phone.token)
}

fn redeem_req(app: &App, login: &Login) -> reqwest::RequestBuilder {
    raw_client()
        .post(app.url(&format!("/v1/logins/{}/redeem", login.id)))
        .bearer_auth(login.secret.as_deref().expect("header binding"))
}

fn cancel_req(app: &App, login: &Login) -> reqwest::RequestBuilder {
    raw_client()
        .delete(app.url(&format!("/v1/logins/{}", login.id)))
        .bearer_auth(login.secret.as_deref().expect("header binding"))
}

async fn fifty_concurrent_approves_one_wins(kind: StoreKind) {
    let app = unlimited_app(kind).await;
    let browser = app.browser();
    let login = browser.create_header().await;
    let phone = app.phone(ALICE).await;
    phone.scan_ok(&login.id).await;

    let replies = race(
        (0..N)
            .map(|_| approve_req(&phone, &login.id, "approve"))
            .collect(),
    )
    .await;
    let wins = count(&replies, StatusCode::OK);
    let conflicts = count(&replies, StatusCode::CONFLICT);
    assert_eq!(
        (wins, conflicts),
        (1, N - 1),
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in &replies {
        if r.status == StatusCode::OK {
            assert_eq!(r.json()["state"], "approved");
        } else {
            r.assert_error(StatusCode::CONFLICT, "conflict");
        }
    }
    assert_eq!(browser.state(&login).await, "approved");
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], ALICE_ID);
}

async fn fifty_concurrent_redeems_one_wins(kind: StoreKind) {
    let app = unlimited_app(kind).await;
    let browser = app.browser();
    let login = browser.create_header().await;
    let phone = app.phone(ALICE).await;
    phone.scan_ok(&login.id).await;
    phone.approve_ok(&login.id).await;

    let replies = race((0..N).map(|_| redeem_req(&app, &login)).collect()).await;
    let winners: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in &replies {
        if r.status != StatusCode::OK {
            assert!(
                r.status == StatusCode::CONFLICT || r.status == StatusCode::NOT_FOUND,
                "a losing redeem answered {} {}",
                r.status,
                r.text()
            );
            r.assert_json_error();
            assert!(
                r.set_cookie("qrl_session").is_none(),
                "a loser got a session"
            );
        }
    }
    let won = winners[0].json();
    let token = won["token"].as_str().expect("token");
    assert_eq!(won["user"]["id"], ALICE_ID);
    let who = browser.whoami_bearer(token).await.ok_json(StatusCode::OK);
    assert_eq!(who["user"]["id"], ALICE_ID);
    browser
        .status(&login, "")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

async fn approve_and_deny_race_one_decision(kind: StoreKind) {
    let app = unlimited_app(kind).await;
    let browser = app.browser();
    let login = browser.create_header().await;
    let phone = app.phone(ALICE).await;
    phone.scan_ok(&login.id).await;

    let reqs = (0..N)
        .map(|i| {
            approve_req(
                &phone,
                &login.id,
                if i % 2 == 0 { "approve" } else { "deny" },
            )
        })
        .collect();
    let replies = race(reqs).await;
    let winners: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one decision");
    assert_eq!(count(&replies, StatusCode::CONFLICT), N - 1);
    let decided = winners[0].json()["state"].as_str().unwrap().to_string();
    assert_eq!(
        browser.state(&login).await,
        decided,
        "the winner's decision stands"
    );
    let r = browser.redeem(&login).await;
    if decided == "approved" {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    } else {
        assert_eq!(decided, "denied");
        assert!(r.status.is_client_error(), "{}", r.text());
    }
}

async fn redeem_and_cancel_race_one_outcome(kind: StoreKind) {
    let app = unlimited_app(kind).await;
    let browser = app.browser();
    let login = browser.create_header().await;
    let phone = app.phone(ALICE).await;
    phone.scan_ok(&login.id).await;
    phone.approve_ok(&login.id).await;

    let reqs = (0..N)
        .map(|i| {
            if i % 2 == 0 {
                redeem_req(&app, &login)
            } else {
                cancel_req(&app, &login)
            }
        })
        .collect();
    let replies = race(reqs).await;
    let redeemed = count(&replies, StatusCode::OK);
    let cancelled = count(&replies, StatusCode::NO_CONTENT);
    assert_eq!(
        redeemed + cancelled,
        1,
        "exactly one of redeem/cancel wins: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| !r.status.is_success()) {
        assert!(
            r.status == StatusCode::CONFLICT || r.status == StatusCode::NOT_FOUND,
            "{} {}",
            r.status,
            r.text()
        );
    }
    if redeemed == 1 {
        let won = replies.iter().find(|r| r.status == StatusCode::OK).unwrap();
        let token = won.json()["token"].as_str().unwrap().to_string();
        let who = browser.whoami_bearer(&token).await.ok_json(StatusCode::OK);
        assert_eq!(who["user"]["id"], ALICE_ID);
    } else {
        assert_eq!(browser.state(&login).await, "cancelled");
    }
}
