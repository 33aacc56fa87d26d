//! Adversarial suite, part 8: leakage (SECURITY.md, property 5).
//!
//! A whole run against the REAL binary (`qrlogin serve`, logging at
//! `QRLOGIN_LOG=debug`, stderr captured), on each store: two users sign in,
//! two browsers (cookie and header binding) log in, a bystander probes
//! everything before and after approval, the owners watch, redeem, look
//! themselves up, replay, log out; metrics, QR images and pages are
//! fetched. Every response (status, headers, body, SSE stream) is kept and
//! searched, and so is the log:
//!
//! * a browser secret appears only in its create response (the Set-Cookie,
//!   or the body with header binding);
//! * a session token (or its secret part) only in its redeem response (body
//!   and Set-Cookie);
//! * a mobile token only in its sign-in response;
//! * the password nowhere at all;
//! * none of them in the log;
//! * nothing a bystander gets mentions the user.
//!
//! The users come from a users file with random passwords, so a password
//! found anywhere is a leak (the demo pages print the seeded demo ones).

#[macro_use]
mod common;
#[path = "common/security.rs"]
mod sec;

use common::*;
use qrlogin_core::BrowserSecret;
use reqwest::StatusCode;
use sec::*;
use std::io::Write as _;

per_store!(no_secret_token_or_password_leaks_into_responses_or_logs);

/// One response as seen on the wire.
struct Seen {
    label: String,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Default)]
struct Recorder {
    seen: Vec<Seen>,
}

impl Recorder {
    fn add(&mut self, label: &str, r: &Reply) {
        self.seen.push(Seen {
            label: label.to_string(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: r.text(),
        });
    }

    /// Where `needle` occurs: `"<label> body"` or `"<label> <header>"`.
    fn find(&self, needle: &str) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.seen {
            if s.body.contains(needle) {
                out.push(format!("{} body", s.label));
            }
            for (k, v) in &s.headers {
                if v.contains(needle) {
                    out.push(format!("{} {k}", s.label));
                }
            }
        }
        out
    }

    /// Keeps a bystander's answers, which must all be 404.
    fn probe(&mut self, label: &str, answers: Vec<(String, Reply)>) {
        for (what, r) in &answers {
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{label} {what}");
            self.add(&format!("bystander {label}"), r);
        }
    }

    fn assert_only_in(&self, what: &str, needle: &str, allowed: &[&str]) {
        let found = self.find(needle);
        assert!(
            !found.is_empty(),
            "{what} not found at all: the scan has no teeth"
        );
        for f in &found {
            assert!(
                allowed.contains(&f.as_str()),
                "{what} leaked into {f} (allowed only in {allowed:?})"
            );
        }
    }
}

fn random_password() -> String {
    // Long and random, so any occurrence is a leak, not a coincidence.
    format!("pw-{}", BrowserSecret::random().expose())
}

/// A users file for carol and dave with random passwords.
fn users_file() -> (tempfile::NamedTempFile, String, String) {
    let (pc, pd) = (random_password(), random_password());
    let users = serde_json::json!([
        {"id": "u-carol", "name": "Carol", "username": "carol",
         "password_hash": qrlogin_server::identity::hash_password(&pc).unwrap()},
        {"id": "u-dave", "name": "Dave", "username": "dave",
         "password_hash": qrlogin_server::identity::hash_password(&pd).unwrap()},
    ]);
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(users.to_string().as_bytes()).unwrap();
    (f, pc, pd)
}

fn cookie_value(r: &Reply, name: &str) -> String {
    let c = r
        .set_cookie(name)
        .unwrap_or_else(|| panic!("no {name} cookie: {:?}", r.set_cookies()));
    c.split(';').next().unwrap()[name.len() + 1..].to_string()
}

/// Reads an SSE stream until `until` (or its end), returning its raw text.
async fn sse_text(resp: reqwest::Response, until: &str) -> String {
    let mut s = SseStream::new(resp);
    let mut text = String::new();
    while let Some(ev) = within("SSE", s.next()).await {
        text.push_str(&format!(
            "event: {}\nid: {:?}\ndata: {}\n\n",
            ev.event, ev.id, ev.data
        ));
        if ev.state() == until {
            break;
        }
    }
    text
}

async fn no_secret_token_or_password_leaks_into_responses_or_logs(kind: StoreKind) {
    // debug as operators would turn it on; trace, which adds every
    // library's chatter, as the worst case.
    for level in ["debug", "trace"] {
        full_run_leaks_nothing(kind, level).await;
    }
}

async fn full_run_leaks_nothing(kind: StoreKind, level: &str) {
    let redis = match kind {
        StoreKind::Memory => None,
        StoreKind::Redis => Some(redis_server().await),
    };
    let (users, pw_carol, pw_dave) = users_file();
    let users_path = users.path().to_str().unwrap().to_string();
    let store = redis.as_ref().map_or("memory".to_string(), |r| r.url());
    let bin = Bin::start_logging(
        level,
        &[
            "--store",
            &store,
            "--users-file",
            &users_path,
            "--rate-limits",
            "false",
        ],
    );
    let base = bin.base.clone();
    let url = |p: &str| format!("{base}{p}");
    let http = raw_client();
    let mut rec = Recorder::default();

    // Phones sign in; one bad password and one malformed body first.
    let r = send(
        http.post(url("/v1/mobile/session"))
            .json(&serde_json::json!({"username": "carol", "password": format!("{pw_carol}x")})),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    rec.add("bad sign-in", &r);
    let r = send(
        http.post(url("/v1/mobile/session"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"username":"carol","password":"{pw_carol}","#)),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    rec.add("malformed sign-in", &r);
    let r = send(
        http.post(url("/v1/mobile/session"))
            .json(&serde_json::json!({"username": "carol", "password": pw_carol})),
    )
    .await;
    let carol = r.ok_json(StatusCode::OK)["token"]
        .as_str()
        .unwrap()
        .to_string();
    rec.add("sign-in carol", &r);
    let r = send(
        http.post(url("/v1/mobile/session"))
            .json(&serde_json::json!({"username": "dave", "password": pw_dave})),
    )
    .await;
    let dave = r.ok_json(StatusCode::OK)["token"]
        .as_str()
        .unwrap()
        .to_string();
    rec.add("sign-in dave", &r);

    // Browser 1: cookie binding. Browser 2: header binding.
    let r = send(http.post(url("/v1/logins"))).await;
    let id1 = r.ok_json(StatusCode::CREATED)["login_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s1 = cookie_value(&r, "qrl_bs");
    rec.add("create cookie", &r);
    let r = send(
        http.post(url("/v1/logins"))
            .json(&serde_json::json!({"binding": "header"})),
    )
    .await;
    let v = r.ok_json(StatusCode::CREATED);
    let id2 = v["login_id"].as_str().unwrap().to_string();
    let s2 = v["browser_secret"].as_str().unwrap().to_string();
    rec.add("create header", &r);
    let c1 = format!("qrl_bs={s1}");

    // Public things about login 1.
    for (label, p) in [
        ("qr svg", format!("/v1/logins/{id1}/qr.svg")),
        ("qr png", format!("/v1/logins/{id1}/qr.png")),
        ("confirm page", format!("/m/{id1}")),
    ] {
        let r = send(http.get(url(&p))).await;
        assert_eq!(r.status, StatusCode::OK, "{label}");
        rec.add(label, &r);
    }

    // The owner watches login 1.
    let sse = within(
        "SSE",
        http.get(url(&format!("/v1/logins/{id1}/events")))
            .header("cookie", &c1)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(sse.status(), StatusCode::OK);
    let sse_task = tokio::spawn(sse_text(sse, "approved"));

    let bystander = Bystander::new(&base);
    let creds = Cred::attempts(std::slice::from_ref(&s2));
    rec.probe("pending", bystander.try_everything(&id1, &creds).await);

    // Carol scans and approves login 1; dave login 2.
    let phone_call = |token: &str, id: &str, action: &str| {
        http.post(url(&format!("/v1/mobile/logins/{id}/{action}")))
            .bearer_auth(token)
    };
    let r = send(phone_call(&carol, &id1, "scan")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    rec.add("scan", &r);
    rec.probe("scanned", bystander.try_everything(&id1, &creds).await);
    let r = send(phone_call(&carol, &id1, "approve")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    rec.add("approve", &r);
    rec.probe("approved", bystander.try_everything(&id1, &creds).await);
    let text = sse_task.await.unwrap();
    assert!(text.contains("approved"), "{text}");
    rec.seen.push(Seen {
        label: "owner sse".into(),
        headers: Vec::new(),
        body: text,
    });
    let r = send(
        http.get(url(&format!("/v1/logins/{id1}")))
            .header("cookie", &c1),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    rec.add("owner status", &r);

    // Redeem 1 (cookie) and 2 (bearer).
    let r = send(
        http.post(url(&format!("/v1/logins/{id1}/redeem")))
            .header("cookie", &c1),
    )
    .await;
    let t1 = r.ok_json(StatusCode::OK)["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cookie_value(&r, "qrl_session"), t1);
    rec.add("redeem 1", &r);
    send(phone_call(&dave, &id2, "scan")).await;
    send(phone_call(&dave, &id2, "approve")).await;
    let r = send(
        http.post(url(&format!("/v1/logins/{id2}/redeem")))
            .bearer_auth(&s2),
    )
    .await;
    let t2 = r.ok_json(StatusCode::OK)["token"]
        .as_str()
        .unwrap()
        .to_string();
    rec.add("redeem 2", &r);
    rec.probe("consumed", bystander.try_everything(&id1, &creds).await);

    // Replays and the session.
    let r = send(
        http.post(url(&format!("/v1/logins/{id1}/redeem")))
            .header("cookie", &c1),
    )
    .await;
    assert!(r.status.is_client_error());
    rec.add("replayed redeem", &r);
    let r = send(phone_call(&carol, &id1, "approve")).await;
    rec.add("replayed approve", &r);
    let r = send(
        http.get(url("/v1/session"))
            .header("cookie", format!("qrl_session={t1}")),
    )
    .await;
    assert_eq!(r.ok_json(StatusCode::OK)["user"]["id"], "u-carol");
    rec.add("whoami cookie", &r);
    let r = send(http.get(url("/v1/session")).bearer_auth(&t2)).await;
    assert_eq!(r.ok_json(StatusCode::OK)["user"]["id"], "u-dave");
    rec.add("whoami bearer", &r);
    let r = send(
        http.post(url("/v1/session/logout"))
            .header("cookie", format!("qrl_session={t1}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    rec.add("logout", &r);
    for p in ["/metrics", "/readyz", "/healthz"] {
        let r = send(http.get(url(p))).await;
        rec.add(p, &r);
    }

    // --- responses
    rec.assert_only_in(
        "browser secret (cookie)",
        &s1,
        &["create cookie set-cookie"],
    );
    rec.assert_only_in("browser secret (header)", &s2, &["create header body"]);
    for (what, t, label) in [
        ("session token 1", &t1, "redeem 1"),
        ("session token 2", &t2, "redeem 2"),
    ] {
        let body = format!("{label} body");
        let cookie = format!("{label} set-cookie");
        rec.assert_only_in(what, t, &[&body, &cookie]);
        rec.assert_only_in(&format!("{what}, secret part"), &t[23..], &[&body, &cookie]);
    }
    rec.assert_only_in("carol's mobile token", &carol, &["sign-in carol body"]);
    rec.assert_only_in("dave's mobile token", &dave, &["sign-in dave body"]);
    for (who, pw) in [("carol", &pw_carol), ("dave", &pw_dave)] {
        assert_eq!(
            rec.find(pw),
            Vec::<String>::new(),
            "{who}'s password in a response"
        );
    }
    // Bystanders: nothing about the user.
    for s in rec.seen.iter().filter(|s| s.label.starts_with("bystander")) {
        let all = format!("{} {:?}", s.body, s.headers);
        for needle in ["carol", "Carol", "dave", "Dave", "u-"] {
            assert!(
                !all.contains(needle),
                "{}: mentions {needle}: {all}",
                s.label
            );
        }
    }

    // --- the log
    let log = bin.log();
    // The capture works (the start-up line is there), at the level asked.
    assert!(
        log.contains("qrlogin serving"),
        "the log was not captured:\n{log}"
    );
    if level == "trace" {
        assert!(log.contains("TRACE"), "nothing at trace level:\n{log}");
    }
    for (what, secret) in [
        ("browser secret 1", s1.as_str()),
        ("browser secret 2", s2.as_str()),
        ("session token 1", t1.as_str()),
        ("session token 1, secret part", &t1[23..]),
        ("session token 2", t2.as_str()),
        ("session token 2, secret part", &t2[23..]),
        ("carol's mobile token", carol.as_str()),
        ("dave's mobile token", dave.as_str()),
        ("carol's password", pw_carol.as_str()),
        ("dave's password", pw_dave.as_str()),
    ] {
        assert!(
            !log.contains(secret),
            "{what} in the log ({} bytes):\n{}",
            log.len(),
            log.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!(
        "{kind:?}, QRLOGIN_LOG={level}: {} responses and {} log lines scanned",
        rec.seen.len(),
        log.lines().count()
    );
    drop(bin);
    drop(redis);
}
