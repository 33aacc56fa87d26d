//! Schemathesis against the real binary: it reads `/openapi.json` and sends
//! what the document allows and what it does not (examples, boundary
//! values, fuzzing, stateful sequences along the links it infers), and
//! every answer must conform: no 5xx, a declared status, the declared
//! content type, headers and body schema; schema-violating requests refused,
//! schema-valid ones not refused as malformed; credentials enforced
//! (`--checks all`).
//!
//! The server: memory store, rate limits off (one client address sends
//! everything), short TTLs so event streams end by themselves within
//! seconds. `schemathesis/hooks.py` points most cases at real logins made
//! with header binding (the browser secret is the bearer) and gives phone
//! and session calls real credentials.
//!
//! A second run does the same for the OpenID Provider face, which exists
//! only with `--oidc-clients`: the hooks then authenticate as its client
//! and run real device flows for codes and tokens.
//!
//! Schemathesis lives in a private virtualenv that `./scripts/test`
//! installs from `schemathesis/requirements.txt` (pinned). A run prints its
//! seed; `QRLOGIN_SCHEMATHESIS_SEED=N` repeats one,
//! `QRLOGIN_SCHEMATHESIS_EXAMPLES=N` sets the examples per operation.

mod common;

use common::*;
use reqwest::StatusCode;
use std::path::PathBuf;
use std::process::Command;

/// The site-backend bearer the run serves `/v1/admin/…` with.
const ADMIN_TOKEN: &str = "schemathesis-admin-0123456789abcdef0123456789";

/// `args` and the run's short TTLs: logins expire within seconds and event
/// streams and long-polls end by themselves, so no request hangs a run.
fn with_short_ttls<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let ttls = [
        "--pending-ttl",
        "5",
        "--scan-extension",
        "1",
        "--final-keep",
        "1",
        "--max-wait",
        "2",
    ];
    args.iter().copied().chain(ttls).collect()
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis")
}

/// Runs Schemathesis (`--checks all`, a negative then a positive pass)
/// against `bin` with `hooks.py` and `env`, `args` added to each run;
/// fails the test on any non-conforming answer. Asserts that every
/// selected operation was tested; returns how many were selected and how
/// many the document has.
async fn conforms(bin: &Proc, args: &[&str], env: &[(&str, &str)]) -> (usize, usize) {
    let dir = dir();
    let st = dir.join(".venv/bin/st");
    assert!(
        st.exists(),
        "Schemathesis is not installed at {st}: ./scripts/test installs it, or by hand:\n  \
         python3 -m venv {venv} && {venv}/bin/pip install -r {req}\n\
         (python3 -m venv needs Debian's python3-venv: apt-get install -y python3-venv)",
        st = st.display(),
        venv = dir.join(".venv").display(),
        req = dir.join("requirements.txt").display(),
    );
    let work = tempfile::tempdir().expect("temp dir");
    let examples = std::env::var("QRLOGIN_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "40".into());
    // One run per mode: in `all` the examples are shared between valid and
    // invalid data, and a run then easily misses a refusal that is absent.
    let mut report = String::new();
    for mode in ["negative", "positive"] {
        let mut cmd = Command::new(&st);
        cmd.args(["run", &format!("{}/openapi.json", bin.base)])
            .args([
                "--mode",
                mode,
                "--checks",
                "all",
                "--max-examples",
                &examples,
            ])
            .args(["--request-timeout", "15", "--no-color"])
            .args(args)
            .env("SCHEMATHESIS_HOOKS", dir.join("hooks.py"))
            .env("QRL_BASE", &bin.base)
            .envs(env.iter().copied())
            // Hypothesis keeps its example database in the working directory.
            .current_dir(work.path());
        if let Ok(seed) = std::env::var("QRLOGIN_SCHEMATHESIS_SEED") {
            cmd.args(["--seed", &seed]);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("joining")
            .expect("running st");
        let this = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "Schemathesis ({mode} data) found answers that do not conform to /openapi.json ({}):\n{this}\nserver log:\n{}",
            out.status,
            bin.log()
        );
        report.push_str(&this);
    }
    // Every selected operation was tested, none left out.
    let summary = report
        .lines()
        .find(|l| l.trim_start().starts_with("Selected:"))
        .unwrap_or_else(|| panic!("no summary in:\n{report}"));
    let counts = summary.split(':').nth(1).unwrap_or("").trim();
    let (selected, total) = counts.split_once('/').unwrap_or(("", ""));
    assert!(
        report.contains(&format!("Tested: {selected}")),
        "not every selected operation was tested:\n{report}"
    );
    let lines: Vec<&str> = report.lines().collect();
    eprintln!("{}", lines[lines.len().saturating_sub(12)..].join("\n"));
    let count = |n: &str| -> usize {
        n.parse()
            .unwrap_or_else(|_| panic!("no operation count in {summary}"))
    };
    (count(selected), count(total))
}

/// Asserts each of `counters` in `/metrics` is above zero: the hooks'
/// real credentials reached the happy paths, not only 400/404.
async fn counted(bin: &Proc, counters: &[&str]) {
    let metrics = send(raw_client().get(format!("{}/metrics", bin.base))).await;
    assert_eq!(metrics.status, StatusCode::OK);
    for counter in counters {
        let line = metrics
            .text()
            .lines()
            .find(|l| l.starts_with(counter))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {counter} in /metrics"));
        assert!(!line.ends_with(" 0"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_conforms_to_its_openapi_document() {
    // A GeoIP database with loopback in it, so the scan answers carry
    // full places and a (low) risk verdict for Schemathesis to check.
    let (_geo, db) = mmdb::world_with_loopback_file();
    let admin = tempfile::tempdir().expect("temp dir");
    let admin_file = admin.path().join("admin-token");
    std::fs::write(&admin_file, ADMIN_TOKEN).expect("writing the admin token");
    let bin = Proc::start(&with_short_ttls(&[
        "--geoip-db",
        db.to_str().expect("utf-8 path"),
        "--admin-token-file",
        admin_file.to_str().expect("utf-8 temp path"),
        "--rate-limits",
        "false",
    ]));
    let phone = Phone::sign_in(&bin.base, ALICE).await;
    let (selected, total) = conforms(
        &bin,
        &[],
        &[
            ("QRL_MOBILE_TOKEN", &phone.token),
            ("QRL_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
    assert_eq!(selected, total, "every documented operation selected");
    counted(
        &bin,
        &[
            "qrlogin_logins_scanned_total",
            "qrlogin_logins_approved_total",
            "qrlogin_logins_redeemed_total",
        ],
    )
    .await;
}

/// The OpenID Provider's client the OIDC run authenticates as
/// (client_secret_basic), and its secret.
const CLIENT_ID: &str = "schemathesis-app";
const CLIENT_SECRET: &str = "schemathesis-client-secret-0123456789";

/// The OpenID Provider face (`--oidc-clients`): only its operations, so
/// the run stays short; the rest is the first test's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openid_provider_conforms_to_its_openapi_document() {
    let hash = qrlogin_server::identity::hash_password(CLIENT_SECRET).expect("hash");
    let clients = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        clients.path(),
        serde_json::json!([
            {"client_id": CLIENT_ID, "name": "Schemathesis App",
             "redirect_uris": ["http://127.0.0.1:9/cb"],
             "client_secret_hash": hash,
             "grant_types": ["authorization_code", "refresh_token",
                             "urn:ietf:params:oauth:grant-type:device_code"],
             "post_logout_redirect_uris": ["http://127.0.0.1:9/bye"]},
            {"client_id": "schemathesis-tv", "name": "Schemathesis TV", "public": true,
             "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]}
        ])
        .to_string(),
    )
    .expect("writing the clients file");
    let bin = Proc::start(&with_short_ttls(&[
        "--oidc-clients",
        clients.path().to_str().expect("utf-8 temp path"),
        "--rate-limits",
        "false",
        "--match-code",
        "off",
        "--device-interval",
        "1",
    ]));
    let phone = Phone::sign_in(&bin.base, ALICE).await;
    let (selected, _) = conforms(
        &bin,
        // The paths `openapi.rs::oidc_path` names.
        &[
            "--include-path-regex",
            r"^/(oauth2/|\.well-known/openid-configuration$|v1/device/|device$|v1/logins/\{id\}/continue$)",
            // Negative data for a form whose fields are all optional
            // strings is mostly what a form cannot carry (numbers, nested
            // objects), which Schemathesis then filters out; that is a
            // limit of form encoding, not of the server.
            "--suppress-health-check",
            "filter_too_much",
        ],
        &[
            ("QRL_MOBILE_TOKEN", &phone.token),
            ("QRL_CLIENT_ID", CLIENT_ID),
            ("QRL_CLIENT_SECRET", CLIENT_SECRET),
        ],
    )
    .await;
    // discovery, authorize, authorize/login, continue, token, userinfo ×2,
    // revoke, logout ×2, device_authorization, device/lookup, /device.
    assert_eq!(selected, 13, "the OIDC operations selected");
    counted(
        &bin,
        &[
            "qrlogin_device_authorizations_total",
            "qrlogin_oidc_tokens_issued_total",
            "qrlogin_logins_approved_total",
        ],
    )
    .await;
}
