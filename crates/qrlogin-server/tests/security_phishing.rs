//! Adversarial suite, part 5: remote phishing, i.e. QRLJacking (SECURITY.md,
//! property 6). The attacker opens the real login page, relays its QR to a
//! victim (a fake page, a mail) and waits for the victim's phone to approve
//! the attacker's browser. Defences tested here:
//!
//! * The phone always gets the whole context before it can approve: site
//!   name and origin, the browser's IP, network, browser, OS, user agent,
//!   creation and expiry time.
//! * Number matching, `--match-code always`: the phone must pick the code
//!   the (attacker's) browser shows among three; a wrong or missing pick
//!   denies the login, the browser is told `denied`, and there is no second
//!   guess. The right pick approves.
//! * `--match-code on-risk`: matching is required exactly when browser and
//!   phone are on different networks (/24, /64), the tell-tale of a relayed
//!   QR; client addresses come from `X-Forwarded-For` only because the peer
//!   (127.0.0.1) is configured as a trusted proxy.
//! * The code is never shown to anyone but the browser that created the
//!   login; the phone's choices do not give it away on reload.
//! * What matching does *not* stop, told as a test: a live relay page
//!   (QRLJacking done properly) shows the victim the real QR and the real
//!   number, so the victim picks right and the attacker is logged in. What
//!   remains against it is the context the phone shows (the attacker's
//!   address and network, the real origin) and the on-risk signal itself;
//!   a phisher on the victim's own /24 is not even asked for the number.
//!
//! Both stores.

#[macro_use]
mod common;
#[path = "common/security.rs"]
mod sec;

use common::*;
use qrlogin_server::config::MatchMode;
use reqwest::StatusCode;
use sec::*;
use serde_json::Value;

per_store!(
    phone_sees_the_full_context_before_approving,
    match_always_wrong_pick_denies_and_the_browser_sees_denied,
    match_always_right_pick_approves,
    match_on_risk_required_across_networks_only,
    a_relayed_qr_with_a_guessed_code_never_approves_on_a_wrong_guess,
    match_code_is_shown_only_to_the_bound_browser,
    a_live_relay_that_shows_the_real_number_is_not_stopped_by_matching,
);

const FIREFOX: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// The service with `mode`, rate limits off, and 127.0.0.1 a trusted proxy
/// (so each request can say which client address it comes from).
async fn matching(kind: StoreKind, mode: MatchMode) -> App {
    let mut cfg = config();
    cfg.match_code = mode;
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    cfg.site_name = "Example Bank".into();
    unlimited_with(kind, cfg).await
}

/// A browser at `ip` creates a login (header binding).
async fn create_from(app: &App, ip: &str) -> Login {
    let r = send(
        raw_client()
            .post(app.url("/v1/logins"))
            .header("x-forwarded-for", ip)
            .header("user-agent", FIREFOX)
            .json(&serde_json::json!({"binding": "header"})),
    )
    .await;
    let v = r.ok_json(StatusCode::CREATED);
    Login {
        id: v["login_id"].as_str().unwrap().to_string(),
        secret: v["browser_secret"].as_str().map(str::to_owned),
        created: v,
        set_cookie: None,
    }
}

/// A phone call from `ip`.
async fn phone_from(phone: &Phone, ip: &str, id: &str, action: &str, code: Option<&str>) -> Reply {
    let mut rb = phone
        .http
        .post(format!("{}/v1/mobile/logins/{id}/{action}", phone.base))
        .bearer_auth(&phone.token)
        .header("x-forwarded-for", ip);
    if let Some(c) = code {
        rb = rb.json(&serde_json::json!({ "match_code": c }));
    }
    send(rb).await
}

fn choices(ctx: &Value) -> Option<Vec<String>> {
    ctx.get("match_choices").map(|c| {
        c.as_array()
            .unwrap_or_else(|| panic!("match_choices is not a list: {ctx}"))
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    })
}

/// The number the login's browser is shown (at create with `always`,
/// with the scan with `on-risk`).
async fn code_of(app: &App, login: &Login) -> String {
    shown_code(&app.base, login)
        .await
        .unwrap_or_else(|| panic!("no match_code shown for {}", login.created))
}

async fn phone_sees_the_full_context_before_approving(kind: StoreKind) {
    let app = matching(kind, MatchMode::OnRisk).await;
    let phone = app.phone(ALICE).await;
    let login = create_from(&app, "198.51.100.23").await;
    let r = phone_from(&phone, "203.0.113.5", &login.id, "scan", None).await;
    let ctx = r.ok_json(StatusCode::OK);
    assert_eq!(ctx["state"], "scanned");
    assert_eq!(ctx["login_id"], login.id);
    assert_eq!(ctx["site"]["name"], "Example Bank");
    assert_eq!(
        ctx["site"]["origin"], app.base,
        "the origin the QR belongs to"
    );
    assert_eq!(ctx["browser"]["ip"], "198.51.100.23");
    assert_eq!(ctx["browser"]["network"], "198.51.100.0/24");
    assert_eq!(ctx["browser"]["user_agent"], FIREFOX);
    assert!(
        ctx["browser"]["browser"]
            .as_str()
            .unwrap()
            .contains("Firefox"),
        "{ctx}"
    );
    assert!(
        ctx["browser"]["os"].as_str().unwrap().contains("Windows"),
        "{ctx}"
    );
    for f in ["created_at", "expires_at"] {
        let t = ctx[f].as_str().unwrap_or_else(|| panic!("no {f}: {ctx}"));
        assert!(t.len() >= 20 && t.contains('T'), "{f} is RFC 3339: {t}");
    }
    assert!(ctx["expires_in"].as_u64().unwrap() > 0);
    // Different networks: matching is required, so the choices are there.
    assert_eq!(choices(&ctx).map(|c| c.len()), Some(3), "{ctx}");
}

async fn match_always_wrong_pick_denies_and_the_browser_sees_denied(kind: StoreKind) {
    let app = matching(kind, MatchMode::Always).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;

    // Cookie-bound browser watching over SSE.
    let login = browser.create().await;
    let code = code_of(&app, &login).await;
    let mut sse = browser.events(&login, None).await;
    assert_eq!(sse.expect().await.state(), "pending");
    let ctx = phone.scan_ok(&login.id).await;
    let picks = choices(&ctx).expect("choices");
    sse.expect_named("scanned").await;
    let wrong = picks.iter().find(|c| **c != code).unwrap();
    let r = send(
        phone
            .http
            .post(app.url(&format!("/v1/mobile/logins/{}/approve", login.id)))
            .bearer_auth(&phone.token)
            .json(&serde_json::json!({ "match_code": wrong })),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "wrong_match_code");
    sse.expect_named("denied").await;
    sse.expect_end().await;
    assert_eq!(browser.state(&login).await, "denied");
    // No second guess, no session.
    let r = send(
        phone
            .http
            .post(app.url(&format!("/v1/mobile/logins/{}/approve", login.id)))
            .bearer_auth(&phone.token)
            .json(&serde_json::json!({ "match_code": code })),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "conflict");
    let r = browser.redeem(&login).await;
    r.assert_error(StatusCode::CONFLICT, "conflict");
    assert!(r.set_cookie("qrl_session").is_none());

    // A missing code, a code that is not among the choices, a malformed
    // one: none approves.
    for body in [None, Some("00"), Some("7"), Some("100"), Some("ab")] {
        let l = browser.create_header().await;
        phone.scan_ok(&l.id).await;
        let mut rb = phone
            .http
            .post(app.url(&format!("/v1/mobile/logins/{}/approve", l.id)))
            .bearer_auth(&phone.token);
        if let Some(c) = body {
            if c == code_of(&app, &l).await {
                continue;
            }
            rb = rb.json(&serde_json::json!({ "match_code": c }));
        }
        let r = send(rb).await;
        assert!(
            r.status == StatusCode::CONFLICT || r.status == StatusCode::BAD_REQUEST,
            "{body:?}: {} {}",
            r.status,
            r.text()
        );
        assert_ne!(browser.state(&l).await, "approved", "{body:?}");
        assert!(browser.redeem(&l).await.status.is_client_error());
    }
}

async fn match_always_right_pick_approves(kind: StoreKind) {
    let app = matching(kind, MatchMode::Always).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;
    let code = code_of(&app, &login).await;
    assert_eq!(code.len(), 2);
    let ctx = phone.scan_ok(&login.id).await;
    let picks = choices(&ctx).expect("choices");
    assert_eq!(picks.iter().filter(|c| **c == code).count(), 1);
    // A reload shows the very same three: nothing to learn by elimination.
    for _ in 0..3 {
        assert_eq!(
            choices(&phone.scan_ok(&login.id).await),
            Some(picks.clone())
        );
    }
    let r = send(
        phone
            .http
            .post(app.url(&format!("/v1/mobile/logins/{}/approve", login.id)))
            .bearer_auth(&phone.token)
            .json(&serde_json::json!({ "match_code": code })),
    )
    .await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], ALICE_ID);
}

async fn match_on_risk_required_across_networks_only(kind: StoreKind) {
    let app = matching(kind, MatchMode::OnRisk).await;
    let phone = app.phone(ALICE).await;
    let cases = [
        // (browser, phone, matching required)
        ("198.51.100.7", "198.51.100.200", false),
        ("198.51.100.7", "198.51.101.7", true),
        ("198.51.100.7", "203.0.113.9", true),
        ("2001:db8:1:2::5", "2001:db8:1:2:ffff::9", false),
        ("2001:db8:1:2::5", "2001:db8:1:3::5", true),
        ("198.51.100.7", "2001:db8:1:2::5", true),
    ];
    for (b_ip, p_ip, required) in cases {
        // Approving without a code.
        let login = create_from(&app, b_ip).await;
        let ctx = phone_from(&phone, p_ip, &login.id, "scan", None)
            .await
            .ok_json(StatusCode::OK);
        assert_eq!(
            choices(&ctx).is_some(),
            required,
            "{b_ip} / {p_ip}: choices in {ctx}"
        );
        let r = phone_from(&phone, p_ip, &login.id, "approve", None).await;
        if required {
            r.assert_error(StatusCode::CONFLICT, "wrong_match_code");
            let v = Browser::new(&app.base).status(&login, "").await;
            assert_eq!(v.ok_json(StatusCode::OK)["state"], "denied");
        } else {
            assert_eq!(
                r.ok_json(StatusCode::OK)["state"],
                "approved",
                "{b_ip} / {p_ip}"
            );
        }
        // Approving with the right code always works.
        let login = create_from(&app, b_ip).await;
        phone_from(&phone, p_ip, &login.id, "scan", None)
            .await
            .ok_json(StatusCode::OK);
        // The browser is shown the number exactly when the phone is asked.
        assert!(
            login.created.get("match_code").is_none(),
            "{}",
            login.created
        );
        let code = shown_code(&app.base, &login).await;
        assert_eq!(code.is_some(), required, "{b_ip} / {p_ip}: shown {code:?}");
        let r = phone_from(&phone, p_ip, &login.id, "approve", code.as_deref()).await;
        assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    }

    // Without a trusted proxy, X-Forwarded-For is the client's own claim
    // and is ignored: a phone on another network (socket 127.0.1.5, another
    // /24 than the browser's 127.0.0.1) cannot dodge matching by claiming
    // the browser's network.
    let mut cfg = config();
    cfg.match_code = MatchMode::OnRisk;
    let plain = unlimited_with(kind, cfg).await;
    let mut phone = plain.phone(ALICE).await;
    phone.http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 1, 5]))
        .build()
        .unwrap();
    let login = plain.browser().create_header().await; // from 127.0.0.1
    let ctx = phone_from(&phone, "127.0.0.77", &login.id, "scan", None)
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(ctx["browser"]["ip"], "127.0.0.1");
    assert!(
        choices(&ctx).is_some(),
        "a spoofed X-Forwarded-For from an untrusted peer avoided matching: {ctx}"
    );
    phone_from(&phone, "127.0.0.77", &login.id, "approve", None)
        .await
        .assert_error(StatusCode::CONFLICT, "wrong_match_code");
}

async fn a_relayed_qr_with_a_guessed_code_never_approves_on_a_wrong_guess(kind: StoreKind) {
    // The attacker's browser (one network) relays its QR to victims (other
    // networks) who cannot see the attacker's screen and pick at random.
    let app = matching(kind, MatchMode::OnRisk).await;
    let victim = app.phone(ALICE).await;
    let mut approved = 0;
    const TRIES: usize = 24;
    for i in 0..TRIES {
        let login = create_from(&app, "203.0.113.66").await;
        let ctx = phone_from(&victim, "198.51.100.9", &login.id, "scan", None)
            .await
            .ok_json(StatusCode::OK);
        let picks = choices(&ctx).expect("relayed QR must require matching");
        // What the attacker's screen shows (the victim does not see it).
        let code = code_of(&app, &login).await;
        let guess = &picks[i % 3];
        let r = phone_from(&victim, "198.51.100.9", &login.id, "approve", Some(guess)).await;
        let attacker = Browser::new(&app.base);
        if *guess == code {
            assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
            approved += 1;
        } else {
            r.assert_error(StatusCode::CONFLICT, "wrong_match_code");
            attacker
                .redeem(&login)
                .await
                .assert_error(StatusCode::CONFLICT, "conflict");
        }
    }
    // Only right guesses ever approved (about a third, by chance).
    assert!(approved < TRIES, "every blind guess approved");
}

async fn match_code_is_shown_only_to_the_bound_browser(kind: StoreKind) {
    let app = matching(kind, MatchMode::Always).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let eve = Bystander::new(&app.base);
    let login = browser.create().await;
    let code = code_of(&app, &login).await;
    // The QR payload is the confirm URL with the id and nothing else (the
    // two digits themselves may well occur in a port or an id by chance).
    assert_eq!(
        login.created["qr_payload"],
        app.url(&format!("/m/{}", login.id))
    );
    let page = send(raw_client().get(app.url(&format!("/m/{}", login.id)))).await;
    assert_eq!(page.status, StatusCode::OK);
    // Bystanders get the 404 (no code); the phone gets three choices, not
    // the answer: the code is not singled out in its scan answer.
    let reference = unknown_login_404(&app.base).await;
    let answers = eve.try_everything(&login.id, &Cred::attempts(&[])).await;
    assert_all_like_404(&answers, &reference);
    let ctx = phone.scan_ok(&login.id).await;
    let mut rest = ctx.clone();
    rest.as_object_mut().unwrap().remove("match_choices");
    assert!(
        !rest.to_string().contains(&format!("\"{code}\"")),
        "the scan answer singles out the code: {ctx}"
    );
}

async fn a_live_relay_that_shows_the_real_number_is_not_stopped_by_matching(kind: StoreKind) {
    const ATTACKER: &str = "203.0.113.66";
    const VICTIM_PHONE: &str = "198.51.100.9";
    let app = matching(kind, MatchMode::OnRisk).await;
    let victim = app.phone(ALICE).await;

    // The relay: the attacker's browser opens the real login page; the
    // attacker's fake page shows the victim its QR *and* its number, live.
    let login = create_from(&app, ATTACKER).await;
    let ctx = phone_from(&victim, VICTIM_PHONE, &login.id, "scan", None)
        .await
        .ok_json(StatusCode::OK);
    // With on-risk matching the browser learns the number with the scan;
    // the relay page shows it the moment it appears.
    let shown_on_the_relay_page = code_of(&app, &login).await;

    // What the victim's phone is told, which is all that could stop it:
    // the login is the real site's (the origin the relay page is not), and
    // the browser asking is on another network than the phone; on-risk
    // matching fired because of exactly that.
    assert_eq!(ctx["site"]["origin"], app.base, "{ctx}");
    assert_eq!(ctx["browser"]["ip"], ATTACKER, "{ctx}");
    assert_eq!(ctx["browser"]["network"], "203.0.113.0/24", "{ctx}");
    assert_ne!(
        ctx["browser"]["network"],
        qrlogin_core::network_of(VICTIM_PHONE),
        "the phone can see that the browser is elsewhere"
    );
    let picks = choices(&ctx).expect("on-risk matching asks across networks");
    assert!(picks.contains(&shown_on_the_relay_page));

    // The victim picks the number the relay page shows (the right one):
    // matching does not stop a live relay. The attacker is logged in.
    let r = phone_from(
        &victim,
        VICTIM_PHONE,
        &login.id,
        "approve",
        Some(&shown_on_the_relay_page),
    )
    .await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    let attacker = Browser::new(&app.base);
    let session = attacker.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(
        session["user"]["id"], ALICE_ID,
        "the relay got alice's session"
    );

    // What does stop it: the victim reading the context and denying.
    let login = create_from(&app, ATTACKER).await;
    phone_from(&victim, VICTIM_PHONE, &login.id, "scan", None)
        .await
        .ok_json(StatusCode::OK);
    let r = phone_from(&victim, VICTIM_PHONE, &login.id, "deny", None).await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "denied");
    attacker
        .redeem(&login)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");

    // What matching does stop: a QR forwarded without its number (the
    // victim guesses; see the test above) and approve-without-looking
    // (push fatigue): no pick at all denies.
    let login = create_from(&app, ATTACKER).await;
    phone_from(&victim, VICTIM_PHONE, &login.id, "scan", None)
        .await
        .ok_json(StatusCode::OK);
    phone_from(&victim, VICTIM_PHONE, &login.id, "approve", None)
        .await
        .assert_error(StatusCode::CONFLICT, "wrong_match_code");
    attacker
        .redeem(&login)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");

    // And with on-risk, a relay from the victim's own /24 (the same café
    // Wi-Fi, the same carrier NAT) is not asked for a number at all.
    let login = create_from(&app, "198.51.100.77").await;
    let ctx = phone_from(&victim, VICTIM_PHONE, &login.id, "scan", None)
        .await
        .ok_json(StatusCode::OK);
    assert!(choices(&ctx).is_none(), "{ctx}");
    let r = phone_from(&victim, VICTIM_PHONE, &login.id, "approve", None).await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    assert_eq!(
        attacker.redeem(&login).await.ok_json(StatusCode::OK)["user"]["id"],
        ALICE_ID
    );
}
