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

/// A config file holding the OpenID Provider's client list inline, as
/// `[[oidc-clients]]` tables with the JSON file's fields.
fn inline_clients_file(secret: &str) -> tempfile::NamedTempFile {
    let hash = qrlogin_server::identity::hash_password(secret).expect("hash");
    toml_file(&format!(
        r#"match-code = "off"

[[oidc-clients]]
client_id = "web"
name = "Shop from TOML"
redirect_uris = ["http://127.0.0.1:9/cb"]
client_secret_hash = "{hash}"
grant_types = ["authorization_code", "refresh_token"]

[[oidc-clients]]
client_id = "tv"
name = "TV from TOML"
public = true
grant_types = ["urn:ietf:params:oauth:grant-type:device_code"]
"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_may_hold_the_oidc_client_list_inline() {
    const SECRET: &str = "secret-from-toml-9";
    let f = inline_clients_file(SECRET);
    let o = qrlogin(&["check-config", "--config", path(&f)], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("# oidc-clients = [[oidc-clients]] tables in the file (2 clients)"),
        "{}",
        stdout(&o)
    );
    // A flag naming a file wins over the inline list.
    let o = qrlogin(
        &[
            "check-config",
            "--config",
            path(&f),
            "--oidc-clients",
            "/nonexistent/clients.json",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent/clients.json"),
        "{}",
        stderr(&o)
    );

    let bin = Proc::start(&["--config", path(&f)]);
    let base = bin.base.clone();
    let d = send(raw_client().get(format!("{base}/.well-known/openid-configuration")))
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(d["issuer"], base, "{d}");
    // The confidential client's secret hash came from the file.
    let revoke = |secret: &'static str| {
        let base = base.clone();
        async move {
            send(
                raw_client()
                    .post(format!("{base}/oauth2/revoke"))
                    .form(&[("token", "never-issued")])
                    .basic_auth("web", Some(secret)),
            )
            .await
            .status
        }
    };
    assert_eq!(revoke(SECRET).await, StatusCode::OK);
    assert_eq!(revoke("wrong").await, StatusCode::UNAUTHORIZED);
    // The device client: its name reaches the phone, its login gives tokens.
    let dev = send(
        raw_client()
            .post(format!("{base}/oauth2/device_authorization"))
            .form(&[("client_id", "tv")]),
    )
    .await
    .ok_json(StatusCode::OK);
    let id = dev["verification_uri_complete"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let phone = Phone::sign_in(&base, ALICE).await;
    let ctx = phone.scan_ok(&id).await;
    assert_eq!(ctx["client"]["name"], "TV from TOML", "{ctx}");
    phone.approve_ok(&id).await;
    let t = send(raw_client().post(format!("{base}/oauth2/token")).form(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", dev["device_code"].as_str().unwrap()),
        ("client_id", "tv"),
    ]))
    .await
    .ok_json(StatusCode::OK);
    assert!(t["id_token"].is_string(), "{t}");
}

#[test]
fn a_bad_inline_client_list_is_refused_with_the_reason() {
    let f = toml_file(
        "[[oidc-clients]]\nclient_id = \"web\"\nname = \"Shop\"\n\
         redirect_uris = [\"http://evil.example/cb\"]\npublic = true\n",
    );
    let o = qrlogin(&["check-config", "--config", path(&f)], &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("[[oidc-clients]]")
            && err.contains("client 1 (\"web\")")
            && err.contains("loopback"),
        "{err}"
    );
    // Unknown fields are refused as in the JSON file.
    let f = toml_file(
        "[[oidc-clients]]\nclient_id = \"web\"\nname = \"Shop\"\nredirect_uri = \"x\"\npublic = true\n",
    );
    let o = qrlogin(&["check-config", "--config", path(&f)], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("redirect_uri"), "{}", stderr(&o));
    // A list that is not tables.
    let f = toml_file("oidc-clients = [1, 2]\n");
    let o = qrlogin(&["check-config", "--config", path(&f)], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("key `oidc-clients`"), "{}", stderr(&o));
}

/// `trusted-proxies` with CIDR ranges, IPv4 and IPv6, from a TOML list and
/// from `QRLOGIN_TRUSTED_PROXIES` (comma-separated): read, refused with
/// the bad entry named, and believed by the running service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_ranges_come_from_the_file_and_the_environment() {
    let f = toml_file("trusted-proxies = [\"10.0.0.0/8\", \"127.0.0.0/8\", \"2001:db8::/32\"]\n");
    let o = qrlogin(&["check-config", "--config", path(&f)], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let l = line(&out, "trusted-proxies");
    assert!(
        l.contains("\"10.0.0.0/8,127.0.0.0/8,2001:db8::/32\""),
        "{l}"
    );
    assert!(l.ends_with("# file"), "{l}");
    let o = qrlogin(
        &["check-config"],
        &[("QRLOGIN_TRUSTED_PROXIES", "10.0.0.0/8,fd00::/8")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let l = line(&out, "trusted-proxies");
    assert!(l.contains("\"10.0.0.0/8,fd00::/8\""), "{l}");
    assert!(l.ends_with("# environment"), "{l}");

    // Each entry is parsed, wherever it comes from.
    let bad = toml_file("trusted-proxies = [\"10.0.0.0/8\", \"fd00::/129\"]\n");
    let o = qrlogin(&["check-config", "--config", path(&bad)], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("fd00::/129"), "{}", stderr(&o));
    let o = qrlogin(
        &["check-config"],
        &[("QRLOGIN_TRUSTED_PROXIES", "10.0.0.0/8,10.0.0.0/33")],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("10.0.0.0/33"), "{}", stderr(&o));

    // The service run with the file believes X-Forwarded-For from the test
    // client (127.0.0.1, in 127.0.0.0/8) and skips hops in the ranges.
    let bin = Proc::start(&["--config", path(&f)]);
    let phone = Phone::sign_in(&bin.base, ALICE).await;
    for (xff, want) in [
        ("198.51.100.7, 2001:db8::5, 10.1.2.3", "198.51.100.7"),
        ("198.51.100.7, 2001:db9::1, 10.1.2.3", "2001:db9::1"),
        ("198.51.100.7, 11.0.0.1", "11.0.0.1"),
    ] {
        let v = send(
            raw_client()
                .post(format!("{}/v1/logins", bin.base))
                .header("x-forwarded-for", xff)
                .json(&serde_json::json!({"binding": "header"})),
        )
        .await
        .ok_json(StatusCode::CREATED);
        let id = v["login_id"].as_str().expect("login_id");
        let ctx = phone.scan_ok(id).await;
        assert_eq!(ctx["browser"]["ip"], want, "X-Forwarded-For: {xff}");
    }
}
