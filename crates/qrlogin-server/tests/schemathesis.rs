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

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_conforms_to_its_openapi_document() {
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
    // A GeoIP database with loopback in it, so the scan answers carry
    // full places and a (low) risk verdict for Schemathesis to check.
    let (_geo, db) = mmdb::world_with_loopback_file();
    let admin = tempfile::tempdir().expect("temp dir");
    let admin_file = admin.path().join("admin-token");
    std::fs::write(&admin_file, ADMIN_TOKEN).expect("writing the admin token");
    let bin = Proc::start(&[
        "--geoip-db",
        db.to_str().expect("utf-8 path"),
        "--admin-token-file",
        admin_file.to_str().expect("utf-8 temp path"),
        "--rate-limits",
        "false",
        "--pending-ttl",
        "5",
        "--scan-extension",
        "1",
        "--final-keep",
        "1",
        "--max-wait",
        "2",
    ]);
    let phone = Phone::sign_in(&bin.base, ALICE).await;
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
            .env("SCHEMATHESIS_HOOKS", dir.join("hooks.py"))
            .env("QRL_BASE", &bin.base)
            .env("QRL_MOBILE_TOKEN", &phone.token)
            .env("QRL_ADMIN_TOKEN", ADMIN_TOKEN)
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
    // Every documented operation was tested, none left out.
    let summary = report
        .lines()
        .find(|l| l.trim_start().starts_with("Selected:"))
        .unwrap_or_else(|| panic!("no summary in:\n{report}"));
    let selected = summary.split(':').nth(1).unwrap_or("").trim();
    let (tested_of, total) = selected.split_once('/').unwrap_or(("", ""));
    assert_eq!(tested_of, total, "{summary}");
    assert!(
        report.contains(&format!("Tested: {total}")),
        "not every operation was tested:\n{report}"
    );
    // The hooks' real logins reached the happy paths, not only 400/404.
    let metrics = send(raw_client().get(format!("{}/metrics", bin.base))).await;
    assert_eq!(metrics.status, StatusCode::OK);
    for counter in [
        "qrlogin_logins_scanned_total",
        "qrlogin_logins_approved_total",
        "qrlogin_logins_redeemed_total",
    ] {
        let line = metrics
            .text()
            .lines()
            .find(|l| l.starts_with(counter))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {counter} in /metrics"));
        assert!(!line.ends_with(" 0"), "{line}");
    }
    let lines: Vec<&str> = report.lines().collect();
    eprintln!("{}", lines[lines.len().saturating_sub(12)..].join("\n"));
}
