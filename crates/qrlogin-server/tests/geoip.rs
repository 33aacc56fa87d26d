//! `--geoip-db`: places, the risk verdict and "I am at this computer now",
//! over real HTTP against the service, with a real MaxMind-format database
//! written by `mmdb-writer` (tests/common/mmdb.rs). Client addresses come
//! through X-Forwarded-For from the trusted proxy 127.0.0.1.

#[macro_use]
mod common;

use common::*;
use qrlogin_server::config::MatchMode;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;

per_store!(
    same_city_is_low_risk,
    other_country_is_high_risk_and_needs_presence,
    hosting_network_is_high_risk,
    on_risk_matching_follows_the_verdict,
    no_database_means_unknown_place,
    a_live_relay_is_flagged_by_the_risk_signals_not_stopped,
);

fn geo_config(db: Option<&Path>, mode: MatchMode) -> qrlogin_server::ServeConfig {
    let mut cfg = config();
    cfg.match_code = mode;
    cfg.rate_limits = false;
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    cfg.geoip_db = db.map(Path::to_path_buf);
    cfg
}

/// The phone's scan from `xff`, asserting 200.
async fn scan(app: &App, phone: &Phone, id: &str, xff: &str) -> Value {
    send(
        raw_client()
            .post(app.url(&format!("/v1/mobile/logins/{id}/scan")))
            .bearer_auth(&phone.token)
            .header("x-forwarded-for", xff),
    )
    .await
    .ok_json(StatusCode::OK)
}

async fn approve(phone: &Phone, id: &str, body: Option<&str>) -> Reply {
    let mut rb = raw_client()
        .post(format!("{}/v1/mobile/logins/{id}/approve", phone.base))
        .bearer_auth(&phone.token);
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    send(rb).await
}

async fn same_city_is_low_risk(kind: StoreKind) {
    let (_dir, db) = mmdb::world_file();
    let app = app_with(kind, geo_config(Some(&db), MatchMode::Off), None).await;
    let phone = app.phone(ALICE).await;
    let login = create_from(&app, "192.0.2.10").await;
    let ctx = scan(&app, &phone, &login.id, "198.51.100.20").await;
    assert_eq!(ctx["risk"]["level"], "low", "{ctx}");
    assert_eq!(ctx["risk"]["reasons"], serde_json::json!([]));
    assert_eq!(ctx["presence_required"], false);
    let place = &ctx["place"];
    assert_eq!(place["known"], true);
    assert_eq!(place["browser"]["text"], "Berlin, Germany");
    assert_eq!(place["browser"]["region"], "Land Berlin");
    assert_eq!(place["browser"]["country_code"], "DE");
    assert_eq!(place["browser"]["asn"], 64500);
    assert_eq!(place["browser"]["network"], "AS64500 Example Net");
    assert_eq!(place["phone"]["text"], "Berlin, Germany");
    assert_eq!(place["differs"], false);
    assert_eq!(place["network_differs"], false);
    assert_eq!(
        place["summary"],
        "This login is from Berlin, Germany, where you are too."
    );
    let r = approve(&phone, &login.id, None).await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    // The session it becomes shows the browser's place in the phone's list.
    send(
        raw_client()
            .post(app.url(&format!("/v1/logins/{}/redeem", login.id)))
            .bearer_auth(login.secret.as_deref().expect("header binding")),
    )
    .await
    .ok_json(StatusCode::OK);
    let list = send(
        raw_client()
            .get(app.url("/v1/mobile/sessions"))
            .bearer_auth(&phone.token),
    )
    .await
    .ok_json(StatusCode::OK);
    let mine: Vec<&Value> = list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter(|v| v["sid"] == login.id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{list}");
    assert_eq!(mine[0]["place"]["city"], "Berlin", "{list}");
    assert_eq!(mine[0]["place"]["asn"], 64500, "{list}");
}

async fn other_country_is_high_risk_and_needs_presence(kind: StoreKind) {
    let (_dir, db) = mmdb::world_file();
    let app = app_with(kind, geo_config(Some(&db), MatchMode::Off), None).await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = create_from(&app, "203.0.113.10").await;
    let ctx = scan(&app, &phone, &login.id, "192.0.2.20").await;
    assert_eq!(ctx["risk"]["level"], "high", "{ctx}");
    assert_eq!(
        ctx["risk"]["reasons"],
        serde_json::json!(["other_country", "far_away", "other_network"])
    );
    assert_eq!(ctx["presence_required"], true);
    let place = &ctx["place"];
    assert_eq!(place["differs"], true);
    assert_eq!(place["network_differs"], true);
    assert_eq!(place["browser"]["org"], "Voorbeeld BV");
    assert_eq!(
        place["summary"],
        "This login is from Amsterdam, Netherlands; you are in Berlin, Germany. \
         It is on network AS64501 Voorbeeld BV; you are on AS64500 Example Net."
    );
    // A reloaded page: the same verdict.
    let again = scan(&app, &phone, &login.id, "192.0.2.20").await;
    assert_eq!(again["risk"], ctx["risk"]);

    // Without the tick: 409 presence_required, nothing changes.
    for body in [None, Some("{}"), Some(r#"{"confirm_presence": false}"#)] {
        let r = approve(&phone, &login.id, body).await;
        r.assert_error(StatusCode::CONFLICT, "presence_required");
        assert!(r.json()["message"]
            .as_str()
            .unwrap()
            .contains("confirm_presence"));
    }
    let r = approve(&phone, &login.id, Some(r#"{"confirm_presence": "yes"}"#)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    r.assert_json_error();
    let with_secret =
        |rb: reqwest::RequestBuilder| rb.bearer_auth(login.secret.as_deref().unwrap());
    let st = send(with_secret(
        raw_client().get(app.url(&format!("/v1/logins/{}", login.id))),
    ))
    .await
    .ok_json(StatusCode::OK);
    assert_eq!(st["state"], "scanned");

    // With it: approved, and the browser gets its session.
    let r = approve(&phone, &login.id, Some(r#"{"confirm_presence": true}"#)).await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], ALICE_ID);
}

async fn hosting_network_is_high_risk(kind: StoreKind) {
    let (_dir, db) = mmdb::world_file();
    let app = app_with(kind, geo_config(Some(&db), MatchMode::Off), None).await;
    let phone = app.phone(ALICE).await;
    // Berlin both, but the browser is in a data centre.
    let login = create_from(&app, "203.0.113.200").await;
    let ctx = scan(&app, &phone, &login.id, "192.0.2.20").await;
    assert_eq!(
        ctx["risk"]["reasons"],
        serde_json::json!(["hosting_network", "other_network"]),
        "{ctx}"
    );
    assert_eq!(ctx["place"]["browser"]["hosting"], true);
    assert_eq!(ctx["place"]["differs"], false);
    assert!(ctx["place"]["summary"]
        .as_str()
        .unwrap()
        .contains("hosting provider"));
    approve(&phone, &login.id, None)
        .await
        .assert_error(StatusCode::CONFLICT, "presence_required");
}

async fn on_risk_matching_follows_the_verdict(kind: StoreKind) {
    let (_dir, db) = mmdb::world_file();
    let app = app_with(kind, geo_config(Some(&db), MatchMode::OnRisk), None).await;
    let phone = app.phone(ALICE).await;
    // Low (same AS, other /24: without the database this would ask).
    let low = create_from(&app, "192.0.2.10").await;
    let ctx = scan(&app, &phone, &low.id, "198.51.100.20").await;
    assert_eq!(ctx["risk"]["level"], "low");
    assert!(ctx.get("match_choices").is_none(), "{ctx}");
    assert_eq!(shown_code(&app.base, &low).await, None);
    phone.approve_ok(&low.id).await;
    // High: the number, and the presence tick.
    let high = create_from(&app, "203.0.113.10").await;
    let ctx = scan(&app, &phone, &high.id, "192.0.2.20").await;
    assert_eq!(ctx["risk"]["level"], "high");
    let choices = ctx["match_choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3);
    let code = shown_code(&app.base, &high).await.expect("code shown");
    let body = format!(r#"{{"match_code":"{code}"}}"#);
    approve(&phone, &high.id, Some(&body))
        .await
        .assert_error(StatusCode::CONFLICT, "presence_required");
    let body = format!(r#"{{"match_code":"{code}","confirm_presence":true}}"#);
    let r = approve(&phone, &high.id, Some(&body)).await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
}

async fn no_database_means_unknown_place(kind: StoreKind) {
    let app = app_with(kind, geo_config(None, MatchMode::Off), None).await;
    let phone = app.phone(ALICE).await;
    let login = create_from(&app, "203.0.113.10").await;
    let ctx = scan(&app, &phone, &login.id, "192.0.2.20").await;
    assert_eq!(ctx["place"]["known"], false, "{ctx}");
    assert_eq!(
        ctx["place"]["summary"],
        "The place of this login is unknown."
    );
    assert!(ctx["place"].get("browser").is_none());
    assert!(ctx.get("risk").is_none());
    assert_eq!(ctx["presence_required"], false);
    assert_eq!(ctx["browser"]["network"], "203.0.113.0/24");
    let r = approve(&phone, &login.id, None).await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
}

/// Addresses the database does not hold (loopback) are an unknown place,
/// not an error; the verdict then rests on the networks alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_addresses_are_unknown_places() {
    let (_dir, db) = mmdb::world_file();
    let mut cfg = geo_config(Some(&db), MatchMode::Off);
    cfg.trusted_proxies = vec![];
    let app = app_with(StoreKind::Memory, cfg, None).await;
    let phone = app.phone(ALICE).await;
    let login = app.browser().create().await;
    let ctx = phone.scan_ok(&login.id).await;
    assert_eq!(ctx["place"]["known"], true);
    assert!(ctx["place"]["browser"].get("text").is_none(), "{ctx}");
    assert_eq!(ctx["place"]["browser"]["network"], "127.0.0.0/24");
    assert_eq!(
        ctx["place"]["summary"],
        "The place of this login is unknown."
    );
    assert_eq!(ctx["risk"]["level"], "low");
}

/// The real binary: `--geoip-db` from the environment, and the database
/// reloaded on SIGHUP (a new file in place) and on a change of the file.
#[test]
fn the_binary_reloads_the_database_on_sighup_and_on_change() {
    let (dir, db) = mmdb::world_file();
    let db_s = db.to_str().unwrap().to_string();
    let cfg = dir.path().join("qrlogin.toml");
    std::fs::write(
        &cfg,
        format!("geoip-db = {db_s:?}\ntrusted-proxies = \"127.0.0.1\"\nmatch-code = \"off\"\n"),
    )
    .unwrap();
    let proc = Proc::start(&["--config", cfg.to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let place_of = |xff: &'static str| {
        let base = proc.base.clone();
        rt.block_on(async move {
            let app_base = base.clone();
            let phone = Phone::sign_in(&app_base, ALICE).await;
            let v = send(
                raw_client()
                    .post(format!("{base}/v1/logins"))
                    .header("x-forwarded-for", xff)
                    .header("content-type", "application/json")
                    .body(r#"{"binding":"header"}"#),
            )
            .await
            .ok_json(StatusCode::CREATED);
            let id = v["login_id"].as_str().unwrap().to_string();
            let ctx = send(
                raw_client()
                    .post(format!("{base}/v1/mobile/logins/{id}/scan"))
                    .bearer_auth(&phone.token)
                    .header("x-forwarded-for", xff),
            )
            .await
            .ok_json(StatusCode::OK);
            ctx["place"]["browser"]["text"].as_str().map(str::to_owned)
        })
    };
    assert_eq!(place_of("192.0.2.1").as_deref(), Some("Berlin, Germany"));

    // Rewrite with 192.0.2.0/24 in Paris, in place (a new inode by rename,
    // like geoipupdate), then SIGHUP.
    let paris = serde_json::json!([{"cidr": "192.0.2.0/24", "data": mmdb::city("Paris", "Île-de-France", "France", "FR", 48.8566, 2.3522)}]);
    let tmp = dir.path().join("new.mmdb");
    mmdb::write(&tmp, &paris);
    std::fs::rename(&tmp, &db).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &proc.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if place_of("192.0.2.1").as_deref() == Some("Paris, France") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not reloaded; log:\n{}",
            proc.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        place_of("203.0.113.1").is_none(),
        "the old networks are gone"
    );

    // A change of the file alone (no signal): picked up by the poll.
    let rome = serde_json::json!([{"cidr": "192.0.2.0/24", "data": mmdb::city("Rome", "Lazio", "Italy", "IT", 41.9028, 12.4964)}]);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a new mtime
    mmdb::write(&tmp, &rome);
    std::fs::rename(&tmp, &db).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if place_of("192.0.2.1").as_deref() == Some("Rome, Italy") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not reloaded; log:\n{}",
            proc.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A broken file is refused; the old database stays.
    std::fs::write(&db, b"not a database").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(place_of("192.0.2.1").as_deref(), Some("Rome, Italy"));
    assert!(
        proc.log().contains("GeoIP reload failed"),
        "log:\n{}",
        proc.log()
    );
}

/// `check-config` opens the file: a missing one or one that is not a
/// MaxMind database fails with its name; a good one passes and is shown.
#[test]
fn check_config_opens_the_database() {
    let (dir, db) = mmdb::world_file();
    let run = |path: &Path, via_env: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_qrlogin"));
        cmd.arg("check-config").env("QRLOGIN_LOG", "error");
        if via_env {
            cmd.env("QRLOGIN_GEOIP_DB", path);
        } else {
            cmd.arg("--geoip-db").arg(path);
        }
        cmd.output().expect("running qrlogin check-config")
    };
    let ok = run(&db, true);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains("geoip-db ="), "{out}");
    assert!(out.contains("risk-distance-km = \"500\""), "{out}");
    let missing = dir.path().join("nope.mmdb");
    let bad = run(&missing, false);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("nope.mmdb"), "{err}");
    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"GIF89a not a database").unwrap();
    let bad = run(&garbage, false);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("garbage.mmdb") && err.contains("MaxMind"),
        "{err}"
    );
    // Start-up refuses it too, rather than running without the rule.
    let start = std::process::Command::new(env!("CARGO_BIN_EXE_qrlogin"))
        .args(["serve", "--listen", "127.0.0.1:0", "--geoip-db"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!start.status.success());
    // The distance limit is checked.
    let zero = std::process::Command::new(env!("CARGO_BIN_EXE_qrlogin"))
        .args(["check-config", "--risk-distance-km", "0"])
        .output()
        .unwrap();
    assert!(!zero.status.success());
}

/// The live relay (QRLJacking, SECURITY.md) against the risk signals: the
/// attacker's browser opens the real login and relays its QR to the victim.
/// From another country the victim's phone sees the attacker's place, a
/// high verdict, and must tick "I am at this computer now"; a fooled victim
/// who ticks it still logs the attacker in. From the victim's own city the
/// verdict is low and nothing asks. The signals inform; they do not stop a
/// victim who confirms (number matching does not either: the relay shows
/// the real number, security_phishing).
async fn a_live_relay_is_flagged_by_the_risk_signals_not_stopped(kind: StoreKind) {
    const VICTIM_PHONE: &str = "192.0.2.20"; // Berlin, AS64500
    let (_dir, db) = mmdb::world_file();
    let app = app_with(kind, geo_config(Some(&db), MatchMode::Off), None).await;
    let attacker = app.browser();
    let victim = app.phone(ALICE).await;

    // The attacker's browser in Amsterdam.
    let login = create_from(&app, "203.0.113.66").await;
    let ctx = scan(&app, &victim, &login.id, VICTIM_PHONE).await;
    assert_eq!(ctx["risk"]["level"], "high", "{ctx}");
    assert_eq!(ctx["presence_required"], true);
    assert!(
        ctx["place"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("This login is from Amsterdam, Netherlands; you are in Berlin, Germany."),
        "{ctx}"
    );
    approve(&victim, &login.id, None)
        .await
        .assert_error(StatusCode::CONFLICT, "presence_required");
    let r = approve(&victim, &login.id, Some(r#"{"confirm_presence": true}"#)).await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    let v = attacker.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(
        v["user"]["id"], ALICE_ID,
        "a fooled victim who ticks it logs the attacker in"
    );

    // The attacker's browser in the victim's city: low, nothing asks.
    let login = create_from(&app, "198.51.100.66").await;
    let ctx = scan(&app, &victim, &login.id, VICTIM_PHONE).await;
    assert_eq!(ctx["risk"]["level"], "low", "{ctx}");
    assert_eq!(ctx["presence_required"], false);
    let r = approve(&victim, &login.id, None).await;
    assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
    let v = attacker.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], ALICE_ID);
}
