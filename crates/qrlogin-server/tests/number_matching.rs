//! Number matching and the client's address over HTTP: the browser shows a
//! 2-digit code, the phone must pick it among three choices; with `on-risk`
//! only when browser and phone are on different networks. The client IP is
//! the socket's, unless the peer is a configured trusted proxy.

#[macro_use]
mod common;

use common::*;
use qrlogin_server::config::MatchMode;
use reqwest::StatusCode;
use serde_json::Value;

per_store!(
    always_right_code_approves,
    always_wrong_code_denies,
    always_missing_code_does_not_approve,
    on_risk_asks_only_across_networks,
);

async fn matching_app(kind: StoreKind, mode: MatchMode) -> App {
    let mut cfg = config();
    cfg.match_code = mode;
    cfg.rate_limits = false;
    app_with(kind, cfg, None).await
}

/// The code the browser shows, and the choices the phone got at scan.
fn code_and_choices(login: &Login, ctx: &Value) -> (String, Vec<String>) {
    let code = login.created["match_code"]
        .as_str()
        .unwrap_or_else(|| panic!("no match_code in {}", login.created))
        .to_string();
    assert_eq!(code.len(), 2, "two digits: {code}");
    assert!(code.chars().all(|c| c.is_ascii_digit()));
    let choices: Vec<String> = ctx["match_choices"]
        .as_array()
        .unwrap_or_else(|| panic!("no match_choices in {ctx}"))
        .iter()
        .map(|c| c.as_str().expect("choice is a string").to_string())
        .collect();
    assert_eq!(choices.len(), 3, "{choices:?}");
    assert_eq!(
        choices.iter().filter(|c| **c == code).count(),
        1,
        "the code is among the choices once: {choices:?} / {code}"
    );
    (code, choices)
}

async fn approve_with(phone: &Phone, id: &str, body: &str) -> Reply {
    send(
        raw_client()
            .post(format!("{}/v1/mobile/logins/{id}/approve", phone.base))
            .bearer_auth(&phone.token)
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

async fn always_right_code_approves(kind: StoreKind) {
    let app = matching_app(kind, MatchMode::Always).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;
    let mut sse = browser.events(&login, None).await;
    assert_eq!(sse.expect().await.state(), "pending");
    let ctx = phone.scan_ok(&login.id).await;
    let (code, choices) = code_and_choices(&login, &ctx);
    // A reloaded phone page shows the same three.
    let again = phone.scan_ok(&login.id).await;
    assert_eq!(code_and_choices(&login, &again).1, choices);
    sse.expect_named("scanned").await;

    let r = approve_with(&phone, &login.id, &format!(r#"{{"match_code":"{code}"}}"#)).await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    sse.expect_named("approved").await;
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], ALICE_ID);
}

async fn always_wrong_code_denies(kind: StoreKind) {
    let app = matching_app(kind, MatchMode::Always).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;
    let mut sse = browser.events(&login, None).await;
    assert_eq!(sse.expect().await.state(), "pending");
    let ctx = phone.scan_ok(&login.id).await;
    let (code, choices) = code_and_choices(&login, &ctx);
    sse.expect_named("scanned").await;
    let decoy = choices.iter().find(|c| **c != code).unwrap();

    let r = approve_with(&phone, &login.id, &format!(r#"{{"match_code":"{decoy}"}}"#)).await;
    r.assert_error(StatusCode::CONFLICT, "wrong_match_code");
    sse.expect_named("denied").await;
    sse.expect_end().await;
    // No second guess.
    let r = approve_with(&phone, &login.id, &format!(r#"{{"match_code":"{code}"}}"#)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(browser.state(&login).await, "denied");
    let r = browser.redeem(&login).await;
    assert!(r.status.is_client_error(), "{}", r.text());
    assert!(r.set_cookie("qrl_session").is_none());
}

async fn always_missing_code_does_not_approve(kind: StoreKind) {
    let app = matching_app(kind, MatchMode::Always).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;
    phone.scan_ok(&login.id).await;
    let r = phone.approve(&login.id).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    r.assert_json_error();
    assert_ne!(browser.state(&login).await, "approved");
    let r = browser.redeem(&login).await;
    assert!(r.status.is_client_error(), "{}", r.text());
}

async fn on_risk_asks_only_across_networks(kind: StoreKind) {
    let mut cfg = config();
    cfg.match_code = MatchMode::OnRisk;
    cfg.rate_limits = false;
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let app = app_with(kind, cfg, None).await;
    let http = raw_client();
    let phone = app.phone(ALICE).await;
    let scan = |id: String, xff: &'static str| {
        let http = http.clone();
        let url = app.url(&format!("/v1/mobile/logins/{id}/scan"));
        let token = phone.token.clone();
        async move {
            send(
                http.post(url)
                    .bearer_auth(token)
                    .header("x-forwarded-for", xff),
            )
            .await
            .ok_json(StatusCode::OK)
        }
    };

    // Same /24: no question asked, approving without a code works.
    let same = create_from(&app, "203.0.113.9").await;
    let browser = app.browser();
    let mut sse = browser.events(&same, None).await;
    assert_eq!(sse.expect().await.state(), "pending");
    let ctx = scan(same.id.clone(), "203.0.113.77").await;
    assert_eq!(
        ctx["browser"]["ip"], "203.0.113.9",
        "the browser's forwarded IP"
    );
    assert_eq!(ctx["browser"]["network"], "203.0.113.0/24");
    assert!(ctx.get("match_choices").is_none(), "{ctx}");
    // The browser is shown no number: the phone will not ask for one.
    assert!(same.created.get("match_code").is_none(), "{}", same.created);
    assert_eq!(shown_code(&app.base, &same).await, None);
    // Nor in the `scanned` event the page is waiting on.
    let ev = sse.expect_named("scanned").await;
    assert!(ev.json().get("match_code").is_none(), "{ev:?}");
    phone.approve_ok(&same.id).await;
    sse.expect_named("approved").await;

    // Another network: the phone must pick the code, and the browser is
    // shown it with the scan (not at create).
    let other = create_from(&app, "203.0.113.9").await;
    assert!(
        other.created.get("match_code").is_none(),
        "{}",
        other.created
    );
    let mut sse = browser.events(&other, None).await;
    let ev = sse.expect().await;
    assert_eq!(ev.state(), "pending");
    assert!(ev.json().get("match_code").is_none(), "{ev:?}");
    let ctx = scan(other.id.clone(), "198.51.100.7").await;
    // The page learns the number from the `scanned` event itself.
    let ev = sse.expect_named("scanned").await;
    let in_event = ev.json()["match_code"]
        .as_str()
        .unwrap_or_else(|| panic!("no match_code in the scanned event {ev:?}"))
        .to_string();
    let mut shown = other.clone();
    shown.created["match_code"] = shown_code(&app.base, &other)
        .await
        .expect("code shown after scan")
        .into();
    let (code, _) = code_and_choices(&shown, &ctx);
    assert_eq!(
        in_event, code,
        "the event's number is the one the phone must pick"
    );
    let r = approve_with(&phone, &other.id, &format!(r#"{{"match_code":"{code}"}}"#)).await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    let ev = sse.expect_named("approved").await;
    assert!(ev.json().get("match_code").is_none(), "{ev:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_and_agent_come_from_the_socket_unless_trusted() {
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
              (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    // No trusted proxy: X-Forwarded-For is ignored.
    let app = app(StoreKind::Memory).await;
    let phone = app.phone(ALICE).await;
    let v = send(
        raw_client()
            .post(app.url("/v1/logins"))
            .header("x-forwarded-for", "203.0.113.9")
            .header("user-agent", ua),
    )
    .await
    .ok_json(StatusCode::CREATED);
    let id = v["login_id"].as_str().unwrap();
    let ctx = phone.scan_ok(id).await;
    assert_eq!(ctx["browser"]["ip"], "127.0.0.1", "{ctx}");
    assert_eq!(ctx["browser"]["network"], "127.0.0.0/24");
    assert_eq!(ctx["browser"]["user_agent"], ua);
    assert!(
        ctx["browser"]["browser"]
            .as_str()
            .unwrap()
            .contains("Chrome"),
        "{ctx}"
    );
    assert!(
        ctx["browser"]["os"].as_str().unwrap().contains("Windows"),
        "{ctx}"
    );

    // 127.0.0.1 trusted: the right-most untrusted hop is the client.
    let mut cfg = config();
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let app = app_with(StoreKind::Memory, cfg, None).await;
    let phone = app.phone(ALICE).await;
    let v = send(
        raw_client()
            .post(app.url("/v1/logins"))
            .header("x-forwarded-for", "192.0.2.1, 203.0.113.9"),
    )
    .await
    .ok_json(StatusCode::CREATED);
    let ctx = phone.scan_ok(v["login_id"].as_str().unwrap()).await;
    assert_eq!(ctx["browser"]["ip"], "203.0.113.9", "{ctx}");
}
