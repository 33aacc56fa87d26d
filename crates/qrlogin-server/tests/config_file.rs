//! The config file (`--config`, TOML, keys spelled as the flags), its
//! precedence (flags > environment > file > defaults), `qrlogin
//! check-config`, and the documented example file — all through the real
//! binary.

mod common;

use common::*;
use reqwest::StatusCode;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `qrlogin ARGS…` with no QRLOGIN_* variables but `env`.
fn qrlogin(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qrlogin"));
    for (k, _) in std::env::vars() {
        if k.starts_with("QRLOGIN_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running qrlogin")
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

fn path(f: &tempfile::NamedTempFile) -> &str {
    f.path().to_str().expect("utf-8 path")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The line `check-config` prints for `key`.
fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{out}"))
}

#[test]
fn the_example_file_is_valid_and_every_key_is_taken_from_it() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/qrlogin.toml");
    let example = example.to_str().expect("utf-8 path");
    let o = qrlogin(&["check-config", "--config", example], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("# configuration OK"), "{out}");
    let text = std::fs::read_to_string(example).expect("example");
    let mut keys = 0;
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" = "))
    {
        let key = l.split(" = ").next().expect("key").trim();
        assert!(
            line(&out, key).ends_with("# file"),
            "{key}: {}",
            line(&out, key)
        );
        keys += 1;
    }
    assert!(keys >= 15, "the example sets {keys} keys");
    assert!(line(&out, "mobile-verifier").contains("\"jwt\""));
    assert!(line(&out, "mobile-jwt-algorithms").contains("\"RS256,ES256\""));
}

#[test]
fn flags_beat_environment_beats_file_beats_defaults() {
    let f = toml_file("site-name = \"From file\"\npending-ttl = 90\nmax-wait = 20\n");
    let o = qrlogin(
        &["check-config", "--config", path(&f), "--max-wait", "5"],
        &[("QRLOGIN_PENDING_TTL", "77")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(line(&out, "site-name").contains("\"From file\""), "{out}");
    assert!(line(&out, "site-name").ends_with("# file"));
    assert!(line(&out, "pending-ttl").contains("\"77\""));
    assert!(line(&out, "pending-ttl").ends_with("# environment"));
    assert!(line(&out, "max-wait").contains("\"5\""));
    assert!(line(&out, "max-wait").ends_with("# flag"));
    assert!(line(&out, "final-keep").ends_with("# default"));
    // QRLOGIN_CONFIG names the file as well as --config does.
    let o = qrlogin(&["check-config"], &[("QRLOGIN_CONFIG", path(&f))]);
    assert!(line(&stdout(&o), "site-name").contains("\"From file\""));
}

#[test]
fn unknown_keys_and_bad_files_are_errors_naming_the_key_and_file() {
    let f = toml_file("store = \"memory\"\nmobile_jwt_issuer = \"https://x\"\n");
    let o = qrlogin(&["check-config", "--config", path(&f)], &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("unknown key `mobile_jwt_issuer`"), "{err}");
    assert!(err.contains("`mobile-jwt-issuer`"), "the hint: {err}");
    assert!(err.contains(path(&f)), "names the file: {err}");

    let f = toml_file("store = \n");
    let o = qrlogin(&["check-config", "--config", path(&f)], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(path(&f)), "{}", stderr(&o));

    let o = qrlogin(
        &["check-config", "--config", "/nonexistent/qrlogin.toml"],
        &[],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/qrlogin.toml"));

    // A value clap refuses, from the file.
    let f = toml_file("pending-ttl = \"soon\"\n");
    let o = qrlogin(&["check-config", "--config", path(&f)], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("soon"), "{}", stderr(&o));
}

#[test]
fn check_config_fails_on_what_start_up_would_refuse_and_redacts_secrets() {
    // jwt without an audience.
    let f = toml_file("mobile-verifier = \"jwt\"\nmobile-jwt-issuer = \"https://idp.example\"\n");
    let o = qrlogin(&["check-config", "--config", path(&f)], &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--mobile-jwt-audience"),
        "{}",
        stderr(&o)
    );
    // The demo on a shared store.
    let o = qrlogin(
        &["check-config", "--store", "redis://:hunter2@127.0.0.1:1/0"],
        &[],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--demo-users true"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("hunter2"));
    // An introspection secret file that is missing.
    let o = qrlogin(
        &[
            "check-config",
            "--mobile-verifier",
            "introspection",
            "--mobile-introspection-url",
            "https://idp.example/introspect",
            "--mobile-introspection-client-id",
            "q",
            "--mobile-introspection-client-secret-file",
            "/nonexistent/secret",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/secret"), "{}", stderr(&o));
    // Valid, with a password in the store URL: printed without it.
    let o = qrlogin(
        &[
            "check-config",
            "--store",
            "redis://:hunter2@127.0.0.1:1/0",
            "--demo-users",
            "true",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("hunter2"), "{}", stdout(&o));
    assert!(line(&stdout(&o), "store").contains("127.0.0.1:1"));
}

#[test]
fn help_groups_the_flags_by_topic() {
    let o = qrlogin(&["--help"], &[]);
    let out = stdout(&o);
    for heading in [
        "Service:",
        "Store:",
        "Logins:",
        "Web sessions:",
        "Phone identity:",
        "Limits:",
        "Pages:",
    ] {
        assert!(
            out.contains(heading),
            "{heading} missing from --help:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_with_what_the_file_says() {
    let f = toml_file("site-name = \"Shop from file\"\nmatch-code = \"always\"\n");
    let bin = Proc::start(&["--config", path(&f)]);
    let browser = Browser::new(&bin.base);
    let login = browser.create().await;
    assert!(
        login.created["match_code"].is_string(),
        "match-code always from the file: {}",
        login.created
    );
    let phone = Phone::sign_in(&bin.base, ALICE).await;
    let ctx = phone.scan_ok(&login.id).await;
    assert_eq!(ctx["site"]["name"], "Shop from file", "{ctx}");
    let r = send(raw_client().get(format!("{}/healthz", bin.base))).await;
    assert_eq!(r.status, StatusCode::OK);
}
