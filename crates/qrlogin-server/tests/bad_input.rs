//! Bad input gets a 4xx JSON error, never a 5xx (SPEC §5): malformed ids,
//! bodies, content types, oversized bodies, credentials, queries, routes and
//! methods; plus a property test over random path segments, bodies and
//! header values.

#[macro_use]
mod common;

use common::*;
use proptest::prelude::*;
use qrlogin_core::{BrowserSecret, LoginId, MobileToken};
use reqwest::{Method, StatusCode};

per_store!(
    malformed_ids_are_400,
    malformed_json_bodies_are_400,
    oversized_bodies_are_413,
    bad_or_missing_credentials_are_401,
    bad_queries_are_400,
    unknown_routes_are_404_json,
);

/// The service with rate limits off, so every answer is about the input.
async fn unlimited(kind: StoreKind) -> App {
    let mut cfg = config();
    cfg.rate_limits = false;
    app_with(kind, cfg, None).await
}

/// Ids that are not ids, as they appear in a URL path.
fn malformed_ids() -> Vec<String> {
    vec![
        "abc".into(),
        "A".repeat(21),
        "A".repeat(23),
        "!".repeat(22),
        format!("{}+", "A".repeat(21)),
        format!("{}/", "A".repeat(21)).replace('/', "%2F"),
        // 22 base64url chars whose last one has non-zero trailing bits:
        // not the canonical text of any id.
        format!("{}B", "A".repeat(21)),
        "a".repeat(1000),
        "%00%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13%14%15".into(),
        "%FF%FE%FD%FC%FB%FA%F9%F8%F7%F6%F5%F4%F3%F2%F1%F0%EF%EE%ED%EC%EB%EA".into(),
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(),
        "%E2%98%83".repeat(22),
        "%20".repeat(22),
        "%zz%zz%zz".into(),
    ]
}

async fn malformed_ids_are_400(kind: StoreKind) {
    let app = unlimited(kind).await;
    let browser = app.browser();
    let live = browser.create().await;
    let phone = app.phone(ALICE).await;
    let http = raw_client();
    for id in malformed_ids() {
        let calls: Vec<(Method, String, bool)> = vec![
            (Method::GET, format!("/v1/logins/{id}"), false),
            (Method::GET, format!("/v1/logins/{id}?wait=1"), false),
            (Method::GET, format!("/v1/logins/{id}/events"), false),
            (Method::GET, format!("/v1/logins/{id}/qr.svg"), false),
            (Method::GET, format!("/v1/logins/{id}/qr.png"), false),
            (Method::POST, format!("/v1/logins/{id}/redeem"), false),
            (Method::DELETE, format!("/v1/logins/{id}"), false),
            (Method::POST, format!("/v1/mobile/logins/{id}/scan"), true),
            (
                Method::POST,
                format!("/v1/mobile/logins/{id}/approve"),
                true,
            ),
            (Method::POST, format!("/v1/mobile/logins/{id}/deny"), true),
        ];
        for (method, path, phone_call) in calls {
            let mut rb = http.request(method.clone(), app.url(&path));
            if phone_call {
                rb = rb.bearer_auth(&phone.token);
            }
            let r = send(rb).await;
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{method} {}: {}",
                &path[..path.len().min(80)],
                r.text()
            );
            r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
        }
    }
    // Nothing of that touched a real login.
    assert_eq!(browser.state(&live).await, "pending");
}

async fn malformed_json_bodies_are_400(kind: StoreKind) {
    let app = unlimited(kind).await;
    let http = raw_client();
    let sign_in = app.url("/v1/mobile/session");
    let bodies: &[&[u8]] = &[
        b"{\"username\":",
        b"[]",
        b"null",
        b"\"alice\"",
        b"{}",
        b"{\"username\":1,\"password\":2}",
        b"{\"username\":\"alice\"}",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"{\"username\":\"alice\",\"password\":\"wonderland\"",
        // The right fields as an array: serde would read them by position;
        // the document says object (found by Schemathesis).
        b"[\"alice\",\"wonderland\"]",
    ];
    for body in bodies {
        let r = send(
            http.post(&sign_in)
                .header("content-type", "application/json")
                .body(body.to_vec()),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "sign-in body {:?}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    // A valid body with the wrong content type, or none: 415.
    let good = r#"{"username":"alice","password":"wonderland"}"#;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut rb = http.post(&sign_in).body(good);
        if let Some(ct) = ct {
            rb = rb.header("content-type", ct);
        }
        send(rb)
            .await
            .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }

    // Create: the optional body must be a valid one when present.
    let create = app.url("/v1/logins");
    for body in [
        "{\"binding\":\"pigeon\"}",
        "{\"binding\":",
        "\"header\"",
        "null",
        "[1,2]",
        "{\"binding\":7}",
        // An array, and blanks, are not "no body" (found by Schemathesis).
        "[]",
        "[\"header\"]",
        " ",
        "\n",
    ] {
        let r = send(
            http.post(&create)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "create body {body}: {}",
            r.text()
        );
        r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(r.set_cookie("qrl_bs").is_none(), "no login for a bad body");
    }
    for ok in ["", "{}", "{\"binding\":\"cookie\"}"] {
        let r = send(
            http.post(&create)
                .header("content-type", "application/json")
                .body(ok),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "create body {ok:?}: {}",
            r.text()
        );
    }

    // Approve: a malformed decision changes nothing.
    let browser = app.browser();
    let login = browser.create().await;
    let phone = app.phone(ALICE).await;
    phone.scan_ok(&login.id).await;
    for body in ["{\"match_code\":", "[", "{\"match_code\":12}"] {
        let r = send(
            http.post(app.url(&format!("/v1/mobile/logins/{}/approve", login.id)))
                .bearer_auth(&phone.token)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(browser.state(&login).await, "scanned");
}

async fn oversized_bodies_are_413(kind: StoreKind) {
    let mut cfg = config();
    cfg.rate_limits = false;
    cfg.max_body = 1024;
    let app = app_with(kind, cfg, None).await;
    let http = raw_client();
    let big = format!(
        r#"{{"username":"alice","password":"{}"}}"#,
        "x".repeat(4096)
    );

    // Known length and chunked (no Content-Length) alike.
    let sign_in = app.url("/v1/mobile/session");
    let r = send(
        http.post(&sign_in)
            .header("content-type", "application/json")
            .body(big.clone()),
    )
    .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(256)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let r = send(
        http.post(&sign_in)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            ))),
    )
    .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Just under the limit it is read (and the password is simply wrong).
    let under = format!(r#"{{"username":"alice","password":"{}"}}"#, "x".repeat(900));
    assert!(under.len() < 1024);
    send(
        http.post(&sign_in)
            .header("content-type", "application/json")
            .body(under),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    let r = send(
        http.post(app.url("/v1/logins"))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"binding":"header","pad":"{}"}}"#,
                "p".repeat(4096)
            )),
    )
    .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let browser = app.browser();
    let login = browser.create().await;
    let phone = app.phone(ALICE).await;
    phone.scan_ok(&login.id).await;
    let r = send(
        http.post(app.url(&format!("/v1/mobile/logins/{}/approve", login.id)))
            .bearer_auth(&phone.token)
            .header("content-type", "application/json")
            .body(format!(r#"{{"match_code":"{}"}}"#, "1".repeat(4096))),
    )
    .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(
        browser.state(&login).await,
        "scanned",
        "an oversized approve approves nothing"
    );
}

async fn bad_or_missing_credentials_are_401(kind: StoreKind) {
    let app = unlimited(kind).await;
    let http = raw_client();
    let browser = app.browser();
    let login = browser.create_header().await;
    let scan = app.url(&format!("/v1/mobile/logins/{}/scan", login.id));
    let approve = app.url(&format!("/v1/mobile/logins/{}/approve", login.id));

    let bad_auth: Vec<Option<Vec<u8>>> = vec![
        None,
        Some(b"Bearer garbage".to_vec()),
        Some(b"Bearer ".to_vec()),
        Some(b"Basic YWxpY2U6d29uZGVybGFuZA==".to_vec()),
        Some(format!("Bearer {}", MobileToken::random().expose()).into_bytes()),
        // A browser secret is not a phone credential.
        Some(format!("Bearer {}", login.secret.clone().unwrap()).into_bytes()),
        Some(format!("Bearer {}", BrowserSecret::random().expose()).into_bytes()),
        Some(b"Bearer \xff\xfe\xfd".to_vec()),
        Some(format!("Bearer {}", "A".repeat(5000)).into_bytes()),
    ];
    for auth in &bad_auth {
        for url in [&scan, &approve] {
            let mut rb = http.post(url);
            if let Some(a) = auth {
                rb = rb.header(
                    "authorization",
                    reqwest::header::HeaderValue::from_bytes(a).unwrap(),
                );
            }
            let r = send(rb).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "auth {:?}: {}",
                auth.as_ref()
                    .map(|a| String::from_utf8_lossy(&a[..a.len().min(40)]).into_owned()),
                r.text()
            );
            r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    assert_eq!(
        browser.state(&login).await,
        "pending",
        "no bad token scanned it"
    );

    // Wrong passwords and unknown users.
    for (u, p) in [
        ("alice", "builder"),
        ("bob", "wonderland"),
        ("mallory", "x"),
        ("", ""),
    ] {
        send(
            http.post(app.url("/v1/mobile/session"))
                .json(&serde_json::json!({"username": u, "password": p})),
        )
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }

    // Web session: none, garbage, and a phone token (a different credential).
    let phone = app.phone(ALICE).await;
    send(http.get(app.url("/v1/session")))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    for token in [
        "garbage".to_string(),
        phone.token.clone(),
        login.secret.clone().unwrap(),
        LoginId::random().to_string(),
    ] {
        send(http.get(app.url("/v1/session")).bearer_auth(&token))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        send(
            http.get(app.url("/v1/session"))
                .header("cookie", format!("qrl_session={token}")),
        )
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

async fn bad_queries_are_400(kind: StoreKind) {
    let app = unlimited(kind).await;
    let browser = app.browser();
    let login = browser.create().await;
    for q in [
        "?wait=abc",
        "?wait=-1",
        "?wait=1.5",
        "?wait=",
        "?wait=99999999999999999999999",
        "?wait=1&wait=2",
        "?since=bogus",
        "?since=",
        "?since=PENDING",
        "?wait=5&since=%00",
        "?wait=%FF",
    ] {
        let r = browser.status(&login, q).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "query {q}: {}", r.text());
        r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    // Unknown parameters are ignored; valid ones work.
    let v = browser
        .status(&login, "?wait=0&since=scanned&x=1")
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(v["state"], "pending");
}

async fn unknown_routes_are_404_json(kind: StoreKind) {
    let app = unlimited(kind).await;
    let http = raw_client();
    let id = LoginId::random();
    for path in [
        "/nope".to_string(),
        "/v1".into(),
        "/v1/".into(),
        "/v1/nope".into(),
        "/v2/logins".into(),
        format!("/v1/logins/{id}/nope"),
        format!("/v1/logins/{id}/qr.gif"),
        format!("/v1/logins/{id}/events/extra"),
        format!("/v1/mobile/logins/{id}/nope"),
        "/assets/nope.js".into(),
        "/assets/../Cargo.toml".into(),
        "/assets/%2e%2e/%2e%2e/Cargo.toml".into(),
    ] {
        let r = send(http.get(app.url(&path))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "GET {path}: {}", r.text());
        r.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

/// A known route with a method it does not have: still a JSON error
/// (SPEC §3: errors are `{"error","message"}`), 405 with `Allow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_are_405_json() {
    let app = unlimited(StoreKind::Memory).await;
    let http = raw_client();
    let id = LoginId::random();
    for (method, path) in [
        (Method::PUT, "/v1/logins".to_string()),
        (Method::GET, "/v1/logins".into()),
        (Method::GET, format!("/v1/logins/{id}/redeem")),
        (Method::PATCH, "/v1/session".into()),
        (Method::GET, "/v1/mobile/session".into()),
        (Method::POST, "/healthz".into()),
    ] {
        let r = send(http.request(method.clone(), app.url(&path))).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(r.headers.contains_key("allow"), "{method} {path}: no Allow");
        r.assert_json_error();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_flood_is_429_with_retry_after() {
    let app = app(StoreKind::Memory).await; // rate limits on (the default)
    let http = raw_client();
    let mut limited = None;
    for i in 0..40 {
        let r = send(
            http.post(app.url("/v1/mobile/session"))
                .json(&serde_json::json!({"username": "alice", "password": format!("guess{i}")})),
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let r = limited.expect("40 wrong passwords in a row from one IP were never rate limited");
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = r.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    assert!(retry >= 1);
    // Even the right password is refused while limited.
    let r = send(
        http.post(app.url("/v1/mobile/session"))
            .json(&serde_json::json!({"username": "alice", "password": "wonderland"})),
    )
    .await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_poll_flood_is_429_slow_down() {
    // Rate limits on, the poll bucket set tight (its default burst is 600).
    let mut cfg = config();
    cfg.rate_limit = vec!["poll=300/min,burst=60".parse().expect("rate-limit spec")];
    let app = app_with(StoreKind::Memory, cfg, None).await;
    let browser = app.browser();
    let login = browser.create().await;
    let mut slowed = None;
    for _ in 0..200 {
        let r = browser.status(&login, "").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            slowed = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let r = slowed.expect("200 back-to-back polls from one IP were never slowed down");
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "slow_down");
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_guessing_is_429_per_ip_and_phone_calls_per_user() {
    let app = app(StoreKind::Memory).await; // rate limits on
    let alice = app.phone(ALICE).await;
    let bob = app.phone(BOB).await;
    // Guessing ids by scanning: limited per IP.
    let mut limited = false;
    for _ in 0..100 {
        let r = alice.scan(&LoginId::random().to_string()).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
            assert!(r.headers.contains_key("retry-after"));
            limited = true;
            break;
        }
        r.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    assert!(limited, "100 scans of random ids were never rate limited");

    // Deny is not an IP-limited call, but every phone call counts per user.
    let mut limited = false;
    for _ in 0..200 {
        let r = alice.deny(&LoginId::random().to_string()).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
            limited = true;
            break;
        }
        r.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    assert!(
        limited,
        "200 phone calls by one user were never rate limited"
    );
    // Counted under its own metrics label, not the catch-all IP bucket's.
    let metrics = send(raw_client().get(app.url("/metrics"))).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("qrlogin_rate_limited_total")
                && l.contains(r#"bucket="PhoneUser""#)),
        "no PhoneUser refusal in /metrics:\n{metrics}"
    );
    // Another user from the same address is not affected.
    bob.deny(&LoginId::random().to_string())
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

// ---------------------------------------------------------------------------
// property test

/// Percent-encodes every byte that is not unreserved.
fn encode_segment(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    app: App,
    http: reqwest::Client,
    phone_token: String,
    scanned: String,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, phone_token, scanned) = rt.block_on(async {
        let app = unlimited(StoreKind::Memory).await;
        let phone = app.phone(ALICE).await;
        let login = app.browser().create().await;
        phone.scan_ok(&login.id).await;
        let token = phone.token.clone();
        (app, token, login.id)
    });
    Fixture {
        rt,
        app,
        http: raw_client(),
        phone_token,
        scanned,
    }
}

impl Fixture {
    /// Sends, asserting < 500 and a JSON error body for every 4xx.
    fn check(&self, rb: reqwest::RequestBuilder, what: &str) -> Result<Reply, TestCaseError> {
        let r = self.rt.block_on(send(rb));
        prop_assert!(r.status.as_u16() < 500, "{what}: {} {}", r.status, r.text());
        if r.status.is_client_error() {
            let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| {
                TestCaseError::fail(format!(
                    "{what}: {} non-JSON body ({e}): {:?}",
                    r.status,
                    r.text()
                ))
            })?;
            prop_assert!(v["error"].is_string(), "{what}: {v}");
            prop_assert!(v["message"].is_string(), "{what}: {v}");
        }
        Ok(r)
    }
}

fn config_cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn random_path_segments_never_5xx() {
    let f = fixture();
    proptest!(config_cases(96), |(seg in proptest::collection::vec(any::<u8>(), 0..64))| {
        let seg = encode_segment(&seg);
        let base = &f.app.base;
        f.check(f.http.get(format!("{base}/v1/logins/{seg}")), "status")?;
        f.check(f.http.get(format!("{base}/v1/logins/{seg}?wait=0")), "status")?;
        f.check(f.http.get(format!("{base}/v1/logins/{seg}/events")), "events")?;
        f.check(f.http.get(format!("{base}/v1/logins/{seg}/qr.svg")), "qr")?;
        f.check(f.http.post(format!("{base}/v1/logins/{seg}/redeem")), "redeem")?;
        f.check(f.http.delete(format!("{base}/v1/logins/{seg}")), "cancel")?;
        f.check(f.http.post(format!("{base}/v1/mobile/logins/{seg}/scan")).bearer_auth(&f.phone_token), "scan")?;
        f.check(f.http.get(format!("{base}/v1/{seg}")), "route")?;
    });
    // The scanned login survived the noise.
    let r = f.rt.block_on(send(
        f.http
            .post(format!(
                "{}/v1/mobile/logins/{}/scan",
                f.app.base, f.scanned
            ))
            .bearer_auth(&f.phone_token),
    ));
    assert_eq!(r.json()["state"], "scanned");
}

#[test]
fn random_bodies_never_5xx() {
    let f = fixture();
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3000),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        r#"\{("[a-z_]{0,10}": ?("[ -~]{0,20}"|[0-9]{1,5}|null|true|\[\]),?){0,4}\}"#
            .prop_map(String::into_bytes),
    ];
    let content_type = prop_oneof![
        Just(Some("application/json".to_string())),
        Just(Some("text/plain".to_string())),
        Just(None),
        "[ -~]{0,30}".prop_map(Some),
    ];
    proptest!(config_cases(96), |(body in body, ct in content_type)| {
        let base = &f.app.base;
        let with = |rb: reqwest::RequestBuilder| {
            let rb = rb.body(body.clone());
            match ct.as_deref().and_then(|c| reqwest::header::HeaderValue::from_str(c).ok()) {
                Some(v) => rb.header("content-type", v),
                None => rb,
            }
        };
        f.check(with(f.http.post(format!("{base}/v1/logins"))), "create")?;
        f.check(with(f.http.post(format!("{base}/v1/mobile/session"))), "sign-in")?;
        f.check(
            with(f.http.post(format!("{base}/v1/mobile/logins/{}/deny", LoginId::random())).bearer_auth(&f.phone_token)),
            "deny",
        )?;
        f.check(with(f.http.post(format!("{base}/v1/session/logout"))), "logout")?;
    });
}

#[test]
fn random_credentials_never_5xx() {
    let f = fixture();
    let value = proptest::collection::vec(
        prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')],
        0..200,
    );
    proptest!(config_cases(96), |(auth in value.clone(), cookie in value)| {
        let base = &f.app.base;
        let (Ok(auth), Ok(cookie)) = (
            reqwest::header::HeaderValue::from_bytes(&auth),
            reqwest::header::HeaderValue::from_bytes(&cookie),
        ) else {
            return Ok(());
        };
        let id = LoginId::random();
        let r = f.check(
            f.http.get(format!("{base}/v1/logins/{id}")).header("authorization", auth.clone()).header("cookie", cookie.clone()),
            "status",
        )?;
        prop_assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = f.check(
            f.http.get(format!("{base}/v1/session")).header("authorization", auth.clone()).header("cookie", cookie.clone()),
            "session",
        )?;
        prop_assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = f.check(
            f.http.post(format!("{base}/v1/mobile/logins/{}/approve", f.scanned)).header("authorization", auth),
            "approve",
        )?;
        prop_assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    });
}

/// One HTTP/1.1 exchange on a raw keep-alive connection: writes `request`,
/// reads one reply head and its `Content-Length` body. Returns the head
/// (lower-cased) and the body; the head is empty when the server closed.
async fn exchange(conn: &mut tokio::net::TcpStream, request: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A write may fail once the server has closed; the read then says so.
    let _ = conn.write_all(request).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match within("a reply head", conn.read(&mut chunk)).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return (String::new(), String::new()),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("a numeric content-length"))
        .expect("a reply with content-length");
    while buf.len() < head_end + len {
        let n = within("a reply body", conn.read(&mut chunk))
            .await
            .expect("reading a reply body");
        assert!(n > 0, "the connection closed inside a reply body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    (head, body)
}

/// A refused body leaves its keep-alive connection usable: the server reads
/// the rest of it before the 413, so the next request on the same connection
/// is answered. Chunked bodies (no `Content-Length`) were refused with the
/// rest unread, and a client that reused the connection lost its next
/// request. Over the drain limit the server closes, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bodies_leave_the_connection_usable() {
    let mut cfg = config();
    cfg.rate_limits = false;
    cfg.max_body = 1024;
    let app = app_with(StoreKind::Memory, cfg, None).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connecting");
    let health = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n");

    let password = "x".repeat(4096);
    let big = format!(r#"{{"username":"alice","password":"{password}"}}"#);
    let mut chunked = format!(
        "POST /v1/mobile/session HTTP/1.1\r\nhost: {addr}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    for part in big.as_bytes().chunks(256) {
        chunked.push_str(&format!(
            "{:x}\r\n{}\r\n",
            part.len(),
            String::from_utf8_lossy(part)
        ));
    }
    chunked.push_str("0\r\n\r\n");
    let declared = format!(
        "POST /v1/mobile/session HTTP/1.1\r\nhost: {addr}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{big}",
        big.len()
    );

    for (what, request) in [("chunked", &chunked), ("declared", &declared)] {
        let (head, body) = exchange(&mut conn, request.as_bytes()).await;
        assert!(head.starts_with("http/1.1 413"), "{what}: {head}");
        assert!(body.contains("payload_too_large"), "{what}: {body}");
        assert!(!head.contains("connection: close"), "{what}: {head}");
        let (head, body) = exchange(&mut conn, health.as_bytes()).await;
        assert!(
            head.starts_with("http/1.1 200"),
            "after a {what} 413 the same connection must still answer, got {head:?} {body:?}"
        );
    }

    // Chunked and under the limit: read, and handed to the handler.
    let small = r#"{"username":"alice","password":"not-her-password"}"#;
    let chunked_small = format!(
        "POST /v1/mobile/session HTTP/1.1\r\nhost: {addr}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
         {:x}\r\n{small}\r\n0\r\n\r\n",
        small.len()
    );
    let (head, body) = exchange(&mut conn, chunked_small.as_bytes()).await;
    assert!(head.starts_with("http/1.1 401"), "{head} {body}");
    assert!(body.contains("unauthorized"), "{body}");

    // Declared far over the drain limit: refused unread, and closed.
    let huge = format!(
        "POST /v1/mobile/session HTTP/1.1\r\nhost: {addr}\r\n\
         content-type: application/json\r\ncontent-length: 50000000\r\n\r\n"
    );
    let (head, _) = exchange(&mut conn, huge.as_bytes()).await;
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
}

/// A body that trickles in (chunked, never finished) is cut off with a 408
/// JSON error and `Connection: close` after the front door's 10 s deadline,
/// so it cannot hold its connection and task for as long as it likes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_408() {
    let mut cfg = config();
    cfg.rate_limits = false;
    let app = app_with(StoreKind::Memory, cfg, None).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connecting");
    let stalled = format!(
        "POST /v1/mobile/session HTTP/1.1\r\nhost: {addr}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
         5\r\n{{\"use\r\n"
    );
    let (head, body) = exchange(&mut conn, stalled.as_bytes()).await;
    assert!(head.starts_with("http/1.1 408"), "{head} {body}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(body.contains("request_timeout"), "{body}");
}
