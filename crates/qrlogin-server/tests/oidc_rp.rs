//! qrlogin as an OpenID Provider for a real relying party in another
//! language: panva's `openid-client` (v6, Node) runs the whole code flow
//! against the real `qrlogin` binary, the browser step in headless Debian
//! Chromium (playwright-core), the phone step over the phone API. The
//! script is `tests/rp/rp.mjs`; its packages are pinned by
//! `tests/rp/package-lock.json` (`npm ci --prefix crates/qrlogin-server/tests/rp`).
//!
//! Number matching is on (`--match-code always`): the page must show the
//! code and the phone picks it. Then the device flow: openid-client starts
//! it for a public TV client, Chromium opens `/device`, types the user code
//! and must land on that login's `/m/{id}`; the phone approves and
//! openid-client polls to validated tokens.
//!
//! openid-client itself validates the RFC 9207 `iss` and `state` of the
//! authorization response and the ID token (ES256 on the JWKS, iss, aud,
//! nonce, exp); the test then checks the claims it printed.
//! Node, the packages and Chromium are required: without them the test
//! fails loudly (it does not skip).

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WEB_SECRET: &str = "web-secret-rp-7";
const CB: &str = "http://127.0.0.1:9/cb";
const CHROMIUM: &str = "/usr/bin/chromium";
/// rp.mjs bounds itself to 30 s; this only catches a script that hangs anyway.
const NODE_LIMIT: Duration = Duration::from_secs(60);

const NODE_NOT_FOUND: &str =
    "node not found: install Node.js with `apt-get install -y nodejs npm`, \
     then the relying party's packages with `npm ci --prefix crates/qrlogin-server/tests/rp` \
     (scripts/test does both)";

fn rp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("rp")
}

/// The clients of this test: a confidential web app and a public TV.
fn clients_file() -> tempfile::NamedTempFile {
    let hash = qrlogin_server::identity::hash_password(WEB_SECRET).expect("hash");
    let doc = json!([
        {"client_id": "web", "name": "Example Shop", "redirect_uris": [CB],
         "client_secret_hash": hash, "grant_types": ["authorization_code", "refresh_token"]},
        {"client_id": "tv", "name": "Living-room TV", "public": true,
         "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]}
    ]);
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(doc.to_string().as_bytes()).expect("write");
    f
}

/// Runs `node rp.mjs ARGS…` to its end (or kills it after [`NODE_LIMIT`]);
/// returns its exit status, stdout and stderr.
fn run_rp(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let dir = rp_dir();
    assert!(
        dir.join("node_modules").join("openid-client").is_dir()
            && dir.join("node_modules").join("playwright-core").is_dir(),
        "{} is missing its packages: run `npm ci --prefix crates/qrlogin-server/tests/rp` \
         (it needs `apt-get install -y nodejs npm`; scripts/test does both)",
        dir.join("node_modules").display()
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} not found: apt-get install -y chromium"
    );
    let out = tempfile::NamedTempFile::new().expect("stdout file");
    let err = tempfile::NamedTempFile::new().expect("stderr file");
    let mut child = match Command::new("node")
        .current_dir(&dir)
        .arg(dir.join("rp.mjs"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.reopen().expect("stdout file")))
        .stderr(Stdio::from(err.reopen().expect("stderr file")))
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!("{NODE_NOT_FOUND}"),
        Err(e) => panic!("could not start node: {e}"),
    };
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for node") {
            break s;
        }
        if started.elapsed() > NODE_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "node rp.mjs did not end within {NODE_LIMIT:?}; stderr:\n{}",
                std::fs::read_to_string(err.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |f: &tempfile::NamedTempFile| std::fs::read_to_string(f.path()).unwrap_or_default();
    (status, read(&out), read(&err))
}

#[test]
fn openid_client_runs_the_code_and_device_flows_through_the_binary_with_chromium() {
    let clients = clients_file();
    let clients_path = clients.path().to_str().expect("utf-8 temp path");
    // Number matching on every login: the page shows the code, the phone
    // (rp.mjs) must pick it. The device polls every second.
    let op = Proc::start(&[
        "--oidc-clients",
        clients_path,
        "--match-code",
        "always",
        "--device-interval",
        "1",
    ]);
    let (status, stdout, stderr) = run_rp(&[
        "--issuer",
        &op.base,
        "--client-id",
        "web",
        "--client-secret",
        WEB_SECRET,
        "--redirect-uri",
        CB,
        "--client-name",
        "Example Shop",
        "--match",
        "--device-client-id",
        "tv",
    ]);
    assert!(
        status.success(),
        "node rp.mjs failed ({status}); stderr:\n{stderr}\nstdout:\n{stdout}\nqrlogin log:\n{}",
        op.log()
    );
    let line = stdout
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("rp.mjs printed nothing; stderr:\n{stderr}"));
    let out: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("rp.mjs printed no JSON ({e}): {line}\nstderr:\n{stderr}"));
    let claims = &out["claims"];
    assert_eq!(claims["sub"], ALICE_ID, "{out}");
    assert_eq!(claims["aud"], "web", "{out}");
    assert_eq!(claims["iss"], op.base.as_str(), "{out}");
    assert_eq!(claims["amr"], json!(["qr"]), "{out}");
    assert_eq!(claims["name"], "Alice", "{out}");
    assert!(
        claims["nonce"].as_str().is_some_and(|n| !n.is_empty()),
        "a nonce: {out}"
    );
    assert_eq!(out["userinfo"]["sub"], ALICE_ID, "{out}");
    assert_eq!(out["title"], "Sign in to Example Shop", "{out}");
    assert!(
        out["match_code"]
            .as_str()
            .is_some_and(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_digit())),
        "the page showed the number: {out}"
    );
    // The device flow: the user code typed on /device in Chromium led to
    // the device login's confirm page; openid-client validated the tokens.
    let device = &out["device"];
    assert!(
        device["landed"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("{}/m/", op.base))),
        "{out}"
    );
    assert_eq!(device["client_name"], "Living-room TV", "{out}");
    assert!(device["match_code"].is_string(), "{out}");
    assert_eq!(device["claims"]["sub"], ALICE_ID, "{out}");
    assert_eq!(device["claims"]["aud"], "tv", "{out}");
    assert_eq!(device["claims"]["iss"], op.base.as_str(), "{out}");
    assert_eq!(device["refresh_token"], Value::Null, "{out}");
    assert_eq!(
        out["console_errors"],
        json!([]),
        "the authorize page logged errors: {out}"
    );
}
