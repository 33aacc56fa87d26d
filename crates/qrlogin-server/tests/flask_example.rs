//! The Flask + Authlib example (`examples/flask-authlib`), run for real as
//! its README says: the example's own `clients.json` (the placeholder hash
//! replaced by a real one, and the app's URL by a free loopback port, in a
//! temporary copy), the real `qrlogin` binary with `--oidc-clients`, and
//! `app.py` under the example's virtualenv (`examples/flask-authlib/.venv`,
//! from its pinned `requirements.txt`; `scripts/test` makes it).
//!
//! A cookie-jar HTTP client plays the browser, doing what the pages do:
//! the app's `/login` → qrlogin's `/oauth2/authorize` → what
//! `authorize.js` does (`POST /oauth2/authorize/login`), the phone step
//! over the phone API, the continue URL → the app's `/callback`, where
//! Authlib redeems the code (PKCE, client secret) and validates the ID
//! token → the app's page names the user. Then the app's `/logout` goes
//! through qrlogin's `/oauth2/logout` and back. A missing virtualenv fails
//! the test with the command that makes it.

mod common;

use common::*;
use reqwest::header::LOCATION;
use reqwest::StatusCode;
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "flask-example-secret-31";
const PLACEHOLDER: &str = "REPLACE_WITH_THE_OUTPUT_OF_qrlogin_hash-password";
/// The app's URL in the example's `clients.json` and README.
const EXAMPLE_APP_URL: &str = "http://127.0.0.1:5000";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/flask-authlib")
}

fn python() -> PathBuf {
    let dir = example_dir();
    let python = dir.join(".venv/bin/python");
    let make = "python3 -m venv examples/flask-authlib/.venv && \
                examples/flask-authlib/.venv/bin/pip install -r examples/flask-authlib/requirements.txt \
                (from the repository's root; scripts/test does it; Debian needs `apt-get install -y python3-venv`)";
    assert!(python.exists(), "{} not found: {make}", python.display());
    let ok = Command::new(&python)
        .args(["-c", "import flask, authlib, requests"])
        .status()
        .expect("running the virtualenv's python");
    assert!(ok.success(), "the example's packages are missing: {make}");
    python
}

/// The app under test; killed when dropped.
struct Flask {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Flask {
    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Flask {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Starts `app.py` with the README's settings and waits until `/` answers.
async fn start_flask(qrlogin: &str, app_url: &str) -> Flask {
    let log = tempfile::NamedTempFile::new().expect("log file");
    let child = Command::new(python())
        .arg("-u")
        .arg(example_dir().join("app.py"))
        .env("QRLOGIN_URL", qrlogin)
        .env("QRLOGIN_CLIENT_SECRET", SECRET)
        .env("APP_URL", app_url)
        .env("FLASK_SECRET_KEY", "test-only-flask-secret-key")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.reopen().expect("log")))
        .stderr(Stdio::from(log.reopen().expect("log")))
        .spawn()
        .expect("starting app.py");
    let mut flask = Flask { child, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = raw_client().get(format!("{app_url}/")).send().await {
            if r.status() == StatusCode::OK {
                return flask;
            }
        }
        if let Ok(Some(status)) = flask.child.try_wait() {
            panic!("app.py exited with {status}:\n{}", flask.log());
        }
        assert!(
            Instant::now() < deadline,
            "app.py did not answer within 30 s:\n{}",
            flask.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The example's `clients.json` with the hash of [`SECRET`] and the app at
/// `app_url`: the file the README has you edit, edited the same way.
fn clients_file(app_url: &str) -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(example_dir().join("clients.json")).expect("clients.json");
    assert!(text.contains(PLACEHOLDER), "the README's placeholder");
    assert!(text.contains(EXAMPLE_APP_URL), "the README's app URL");
    let hash = qrlogin_server::identity::hash_password(SECRET).expect("hash");
    let text = text
        .replace(PLACEHOLDER, &hash)
        .replace(EXAMPLE_APP_URL, app_url);
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

fn location(r: &Reply) -> String {
    r.headers
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location; {} {}", r.status, r.text()))
        .to_str()
        .expect("ascii")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flask_authlib_example_signs_alice_in_and_out_through_the_binary() {
    let app_url = format!("http://127.0.0.1:{}", free_port());
    let clients = clients_file(&app_url);
    let op = Proc::start(&[
        "--oidc-clients",
        clients.path().to_str().expect("utf-8 temp path"),
    ]);
    let flask = start_flask(&op.base, &app_url).await;
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let get = |url: String| {
        let rb = browser.get(url);
        async move { send(rb).await }
    };

    let home = get(format!("{app_url}/")).await;
    assert!(
        home.text().contains("You are not signed in"),
        "{}",
        home.text()
    );
    // "Sign in with your phone": the app sends the browser to qrlogin.
    let r = get(format!("{app_url}/login")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}\n{}", r.text(), flask.log());
    let authorize = url::Url::parse(&location(&r)).expect("authorize URL");
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/oauth2/authorize?", op.base)),
        "{authorize}"
    );
    let q: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "flask-demo");
    assert_eq!(q["redirect_uri"], format!("{app_url}/callback"));
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("state") && q.contains_key("nonce"), "{q:?}");
    let page = get(authorize.to_string()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.text().contains("authorize.js"), "the authorize page");
    // What authorize.js does: start the login with the page's query.
    let started = send(
        browser
            .post(format!("{}/oauth2/authorize/login", op.base))
            .json(&json!({"query": format!("?{}", authorize.query().unwrap_or(""))})),
    )
    .await
    .ok_json(StatusCode::CREATED);
    assert_eq!(started["client"]["name"], "Flask demo", "{started}");
    let id = started["login_id"].as_str().expect("login id");
    // The phone: alice signs in, scans, sees the app's name, approves
    // (picking the page's number if it shows one).
    let phone = Phone::sign_in(&op.base, ALICE).await;
    let ctx = phone.scan_ok(id).await;
    assert_eq!(ctx["client"]["name"], "Flask demo", "{ctx}");
    match started["match_code"].as_str() {
        None => phone.approve_ok(id).await,
        Some(code) => {
            send(
                raw_client()
                    .post(format!("{}/v1/mobile/logins/{id}/approve", op.base))
                    .bearer_auth(&phone.token)
                    .json(&json!({ "match_code": code })),
            )
            .await
            .ok_json(StatusCode::OK);
        }
    }
    // The page, told "approved", goes to the continue URL: back to the app.
    let cont = started["continue"].as_str().expect("continue");
    let r = get(format!("{}{cont}", op.base)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let callback = location(&r);
    assert!(
        callback.starts_with(&format!("{app_url}/callback?")),
        "{callback}"
    );
    // Authlib checks state, redeems the code and validates the ID token.
    let r = get(callback).await;
    assert_eq!(
        r.status,
        StatusCode::FOUND,
        "the callback failed: {}\n{}",
        r.text(),
        flask.log()
    );
    assert_eq!(location(&r), "/", "{}", flask.log());
    let home = get(format!("{app_url}/")).await;
    assert!(
        home.text().contains("Logged in as Alice"),
        "{}\n{}",
        home.text(),
        flask.log()
    );
    assert!(home.text().contains("via qr"), "amr: {}", home.text());

    // "Log out": the app ends its own session, then qrlogin's
    // (RP-initiated logout with id_token_hint), which sends the browser back.
    let r = get(format!("{app_url}/logout")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let logout = location(&r);
    assert!(
        logout.starts_with(&format!("{}/oauth2/logout?", op.base)),
        "{logout}"
    );
    let r = get(logout).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let back = location(&r);
    assert!(back.starts_with(&format!("{app_url}/")), "{back}");
    let home = get(back).await;
    assert!(
        home.text().contains("You are not signed in"),
        "{}",
        home.text()
    );
}
