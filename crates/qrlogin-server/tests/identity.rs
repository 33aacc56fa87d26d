//! Bring your own identity (SPEC §7 "Phone identity"): phone tokens from a
//! real OpenID provider (panva's oidc-provider, started per test by
//! `qrlogin_testkit::OidcProvider`), checked by the `jwt`, `introspection`
//! and `userinfo` verifiers; every refusal a 401, every upstream failure a
//! 503 `verifier_unavailable`; key rotation with one JWKS refetch; the demo
//! users only when meant; a custom verifier through the builder.

mod common;

use base64::Engine as _;
use common::*;
use qrlogin_core::{MobileVerifier, User, VerifyError};
use qrlogin_server::config::VerifierKind;
use qrlogin_server::{QrLogin, ServeConfig};
use qrlogin_testkit::OidcProvider;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const AUD: &str = OidcProvider::AUDIENCE;

async fn provider() -> OidcProvider {
    tokio::task::spawn_blocking(OidcProvider::start)
        .await
        .expect("starting the OpenID provider")
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The service (in-process, real HTTP on loopback, memory store) with the
/// `jwt` verifier pointed at `idp` by OIDC discovery.
fn jwt_config(idp: &OidcProvider) -> ServeConfig {
    let mut cfg = config();
    cfg.demo_users = None;
    cfg.mobile_verifier = VerifierKind::Jwt;
    cfg.mobile_jwt_issuer = Some(idp.issuer());
    cfg.mobile_jwt_audience = Some(AUD.into());
    cfg
}

fn secret_file() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(f, "{}", OidcProvider::CLIENT_SECRET).expect("write");
    f
}

fn introspection_config(idp: &OidcProvider, secret: &tempfile::NamedTempFile) -> ServeConfig {
    let mut cfg = config();
    cfg.demo_users = None;
    cfg.mobile_verifier = VerifierKind::Introspection;
    cfg.mobile_introspection_url = Some(idp.introspection_url());
    cfg.mobile_introspection_client_id = Some(OidcProvider::CLIENT_ID.into());
    cfg.mobile_introspection_client_secret_file = Some(secret.path().to_path_buf());
    cfg
}

fn userinfo_config(url: String) -> ServeConfig {
    let mut cfg = config();
    cfg.demo_users = None;
    cfg.mobile_verifier = VerifierKind::Userinfo;
    cfg.mobile_userinfo_url = Some(url);
    cfg.mobile_verifier_timeout_ms = 500;
    cfg
}

async fn serve(cfg: ServeConfig) -> App {
    app_with(StoreKind::Memory, cfg, None).await
}

/// A whole login through `base` with the phone holding `token`: the browser
/// ends up logged in as `(id, name)`.
async fn login_as(base: &str, token: &str, id: &str, name: &str) {
    let browser = Browser::new(base);
    let login = browser.create().await;
    let mut sse = browser.events(&login, None).await;
    sse.expect_named("pending").await;
    let phone = Phone::with_token(base, token);
    let ctx = phone.scan_ok(&login.id).await;
    assert_eq!(ctx["state"], "scanned", "{ctx}");
    sse.expect_named("scanned").await;
    phone.approve_ok(&login.id).await;
    sse.expect_named("approved").await;
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], id, "{v}");
    assert_eq!(v["user"]["name"], name, "{v}");
    let me = browser.whoami().await.ok_json(StatusCode::OK);
    assert_eq!(me["user"]["id"], id, "{me}");
}

/// Scan with `token` on a fresh login: the answer, and the login's state
/// afterwards as its browser sees it.
async fn scan_with(app: &App, token: &str) -> (Reply, String) {
    let browser = app.browser();
    let login = browser.create().await;
    let r = Phone::with_token(&app.base, token).scan(&login.id).await;
    let state = browser.state(&login).await;
    (r, state)
}

async fn assert_refused(app: &App, token: &str, what: &str) {
    let (r, state) = scan_with(app, token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text());
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(state, "pending", "{what}: a refused scan changes nothing");
    assert!(!r.text().contains(token), "{what}: the token is echoed");
}

async fn assert_unavailable(app: &App, token: &str, what: &str) {
    let (r, state) = scan_with(app, token).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "verifier_unavailable");
    assert!(r.headers.contains_key("retry-after"), "{what}: Retry-After");
    assert_eq!(state, "pending", "{what}");
}

/// A real token's parts, for building forgeries from it.
fn parts(jwt: &str) -> (Value, Value, String) {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut it = jwt.split('.');
    let h = it.next().expect("header");
    let p = it.next().expect("payload");
    let s = it.next().expect("signature").to_string();
    let dec = |x: &str| -> Value {
        serde_json::from_slice(&b64.decode(x).expect("base64url")).expect("json")
    };
    (dec(h), dec(p), s)
}

fn enc(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

// ---------------------------------------------------------------------------
// end to end through the real binary

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_from_the_provider_logs_the_browser_in_as_its_sub() {
    let idp = provider().await;
    let bin = Proc::start(&[
        "--mobile-verifier",
        "jwt",
        "--mobile-jwt-issuer",
        &idp.issuer(),
        "--mobile-jwt-audience",
        AUD,
    ]);
    let token = idp.jwt_token("idp-user-7", "Ida Provider").await;
    login_as(&bin.base, &token, "idp-user-7", "Ida Provider").await;
    // The demo sign-in is off with a real verifier.
    let r = send(
        raw_client()
            .post(format!("{}/v1/mobile/session", bin.base))
            .json(&json!({"username": "alice", "password": "wonderland"})),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert!(
        !bin.log().contains(&token),
        "the phone token reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_introspected_token_logs_the_browser_in_and_revocation_counts_at_once() {
    let idp = provider().await;
    let secret = secret_file();
    let bin = Proc::start(&[
        "--mobile-verifier",
        "introspection",
        "--mobile-introspection-url",
        &idp.introspection_url(),
        "--mobile-introspection-client-id",
        OidcProvider::CLIENT_ID,
        "--mobile-introspection-client-secret-file",
        secret.path().to_str().expect("utf-8 path"),
    ]);
    let token = idp.opaque_token("idp-user-8", "Ina Spect").await;
    login_as(&bin.base, &token, "idp-user-8", "Ina Spect").await;
    // No cache by default: once revoked at the provider, refused here.
    idp.revoke(&token).await;
    let browser = Browser::new(&bin.base);
    let login = browser.create().await;
    Phone::with_token(&bin.base, &token)
        .scan(&login.id)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let log = bin.log();
    assert!(!log.contains(&token), "the phone token reached the log");
    assert!(
        !log.contains(OidcProvider::CLIENT_SECRET),
        "the client secret reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_userinfo_token_logs_the_browser_in() {
    let idp = provider().await;
    let bin = Proc::start(&[
        "--mobile-verifier",
        "userinfo",
        "--mobile-userinfo-url",
        &idp.userinfo_url(),
    ]);
    let token = idp.opaque_token("idp-user-9", "Uma Info").await;
    login_as(&bin.base, &token, "idp-user-9", "Uma Info").await;
    assert!(
        !bin.log().contains(&token),
        "the phone token reached the log"
    );
}

// ---------------------------------------------------------------------------
// refusals: each a 401 that changes nothing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_jwt_is_refused() {
    let idp = provider().await;
    let app = serve(jwt_config(&idp)).await;
    let now = now_s();
    let claims =
        json!({"iss": idp.issuer(), "aud": AUD, "sub": "u", "iat": now - 600, "exp": now - 60});
    assert_refused(
        &app,
        &idp.sign(json!({}), claims).await,
        "expired beyond the leeway",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_not_yet_valid_is_refused() {
    let idp = provider().await;
    let app = serve(jwt_config(&idp)).await;
    let now = now_s();
    let claims =
        json!({"iss": idp.issuer(), "aud": AUD, "sub": "u", "nbf": now + 300, "exp": now + 900});
    assert_refused(
        &app,
        &idp.sign(json!({}), claims).await,
        "nbf in the future",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_from_another_issuer_is_refused() {
    let idp = provider().await;
    let app = serve(jwt_config(&idp)).await;
    let now = now_s();
    let claims = json!({"iss": "https://evil.example", "aud": AUD, "sub": "u", "exp": now + 600});
    assert_refused(&app, &idp.sign(json!({}), claims).await, "wrong issuer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_for_another_audience_is_refused() {
    let idp = provider().await;
    let app = serve(jwt_config(&idp)).await;
    let now = now_s();
    let claims =
        json!({"iss": idp.issuer(), "aud": "https://other.api", "sub": "u", "exp": now + 600});
    assert_refused(&app, &idp.sign(json!({}), claims).await, "wrong audience").await;
    // The provider's own token for its userinfo (no `aud` of ours) too.
    let opaque_is_not_a_jwt = idp.opaque_token("u", "U").await;
    assert_refused(&app, &opaque_is_not_a_jwt, "an opaque token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_refused() {
    let idp = provider().await;
    let app = serve(jwt_config(&idp)).await;
    let real = idp.jwt_token("u", "U").await;
    let (mut h, p, _) = parts(&real);
    h["alg"] = json!("none");
    let unsigned = format!("{}.{}.", enc(&h), enc(&p));
    assert_refused(&app, &unsigned, "alg none, empty signature").await;
    let unsigned = format!("{}.{}", enc(&h), enc(&p));
    assert_refused(&app, &unsigned, "alg none, two parts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_signed_with_the_public_key_is_refused() {
    use hmac::{Mac as _, SimpleHmac};
    let idp = provider().await;
    let app = serve(jwt_config(&idp)).await;
    let real = idp.jwt_token("u", "U").await;
    let (mut h, p, _) = parts(&real);
    h["alg"] = json!("HS256");
    let jwk = idp.public_jwk("RS256").await;
    // The classic confusion: the verifier's public key as the HMAC secret
    // (tried as the JWK text and as the modulus).
    for secret in [
        serde_json::to_vec(&jwk).expect("json"),
        jwk["n"].as_str().expect("n").as_bytes().to_vec(),
    ] {
        let input = format!("{}.{}", enc(&h), enc(&p));
        let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(&secret).expect("any key length");
        mac.update(input.as_bytes());
        let mac = mac.finalize().into_bytes();
        let forged = format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
        );
        assert_refused(&app, &forged, "HS256 with the public key").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_jwks_does_not_have_is_refused() {
    let idp = provider().await;
    let app = serve(jwt_config(&idp)).await;
    let now = now_s();
    let claims = json!({"iss": idp.issuer(), "aud": AUD, "sub": "u", "exp": now + 600});
    let token = idp.sign(json!({"kid": "not-in-the-jwks"}), claims).await;
    assert_refused(&app, &token, "unknown kid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_payload_is_refused() {
    let idp = provider().await;
    let app = serve(jwt_config(&idp)).await;
    let real = idp.jwt_token("mallory", "M").await;
    let (h, mut p, sig) = parts(&real);
    p["sub"] = json!("alice");
    let tampered = format!("{}.{}.{sig}", enc(&h), enc(&p));
    assert_refused(&app, &tampered, "payload changed, signature kept").await;
    // The real one still works: the refusal was the tampering.
    let (r, _) = scan_with(&app, &real).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_8_kib_is_refused_before_anything_else() {
    let idp = provider().await;
    let app = serve(jwt_config(&idp)).await;
    let now = now_s();
    let claims = json!({"iss": idp.issuer(), "aud": AUD, "sub": "u", "exp": now + 600, "pad": "x".repeat(9000)});
    let big = idp.sign(json!({}), claims).await;
    assert!(big.len() > 8 * 1024);
    let before = idp.jwks_requests().await;
    assert_refused(&app, &big, "over 8 KiB").await;
    // A real, small token with the same claims minus the padding verifies,
    // so the size was the reason.
    let ok = idp
        .sign(
            json!({}),
            json!({"iss": idp.issuer(), "aud": AUD, "sub": "u", "exp": now + 600}),
        )
        .await;
    let (r, _) = scan_with(&app, &ok).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(idp.jwks_requests().await <= before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_introspected_token_is_refused() {
    let idp = provider().await;
    let secret = secret_file();
    let app = serve(introspection_config(&idp, &secret)).await;
    let token = idp.opaque_token("u", "U").await;
    idp.revoke(&token).await;
    assert_refused(&app, &token, "revoked, active: false").await;
    assert_refused(&app, "never-issued-by-the-provider", "unknown token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_refusals_are_401() {
    let idp = provider().await;
    let app = serve(userinfo_config(idp.userinfo_url())).await;
    assert_refused(&app, "never-issued-by-the-provider", "unknown token").await;
    let token = idp.opaque_token("u", "U").await;
    idp.revoke(&token).await;
    assert_refused(&app, &token, "revoked").await;
}

// ---------------------------------------------------------------------------
// keys rotate; upstreams fail

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_verify_with_one_jwks_refetch_for_many_phones() {
    let idp = provider().await;
    let mut cfg = jwt_config(&idp);
    cfg.rate_limits = false; // 40 scans from one address at once
    let app = serve(cfg).await;
    let warm = idp.jwt_token("u0", "U0").await;
    assert_eq!(scan_with(&app, &warm).await.0.status, StatusCode::OK);
    let old_key_token = idp.jwt_token("u-old", "Old").await;

    idp.rotate(false).await;
    let before = idp.jwks_requests().await;
    let mut tokens = Vec::new();
    for i in 0..40 {
        tokens.push(idp.jwt_token(&format!("u{i}"), "N").await);
    }
    let (h, _, _) = parts(&tokens[0]);
    let (h_old, _, _) = parts(&warm);
    assert_ne!(h["kid"], h_old["kid"], "the provider signs with a new key");
    // 40 phones with new-key tokens at once: all verify, one refetch.
    let scans = tokens.iter().map(|t| {
        let app = &app;
        async move { scan_with(app, t).await.0.status }
    });
    let statuses = futures_util::future::join_all(scans).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(
        idp.jwks_requests().await - before,
        1,
        "one JWKS fetch for all the phones with the new key"
    );
    // The old key left the JWKS with that refresh: a token it signed (not
    // seen before, so not cached) no longer verifies.
    assert_refused(
        &app,
        &old_key_token,
        "signed by a key removed from the JWKS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_down_is_503_and_recovery_needs_no_restart() {
    let mut idp = provider().await;
    let secret = secret_file();
    let mut cfg = introspection_config(&idp, &secret);
    cfg.mobile_verifier_timeout_ms = 500;
    let app = serve(cfg).await;
    let token = idp.opaque_token("u", "U").await;
    assert_eq!(scan_with(&app, &token).await.0.status, StatusCode::OK);

    idp.stop();
    let t0 = std::time::Instant::now();
    assert_unavailable(&app, &token, "provider stopped").await;
    assert!(t0.elapsed() < Duration::from_secs(5), "503 came fast");

    idp.restart();
    // Tokens lived in the old process; a new one from the restarted provider.
    let token = idp.opaque_token("u", "U").await;
    assert_eq!(scan_with(&app, &token).await.0.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_with_the_provider_down_at_start_is_503_then_recovers() {
    let mut idp = provider().await;
    let token = idp.jwt_token("u", "U").await;
    idp.stop();
    let app = serve(jwt_config(&idp)).await;
    assert_unavailable(&app, &token, "no keys yet").await;
    idp.restart();
    // The background refresh and the next request both retry; within a few
    // seconds the same token (same keys: the provider kept them) verifies.
    let mut last = None;
    for _ in 0..40 {
        let (r, _) = scan_with(&app, &token).await;
        if r.status == StatusCode::OK {
            return;
        }
        last = Some(r.status);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("still {last:?} 10 s after the provider came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_garbled_upstream_is_503_never_401() {
    // Slow: a socket that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let app = serve(userinfo_config(format!(
        "http://{}/userinfo",
        silent.local_addr().expect("addr")
    )))
    .await;
    let t0 = std::time::Instant::now();
    assert_unavailable(&app, "some-token", "upstream silent").await;
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "bounded by the timeout"
    );
    drop(app);

    // Garbled: a real HTTP server answering something that is not userinfo
    // (the provider's 404 page for an unknown path).
    let idp = provider().await;
    let app = serve(userinfo_config(format!(
        "{}/no-such-endpoint",
        idp.issuer()
    )))
    .await;
    assert_unavailable(&app, "some-token", "upstream 404").await;
}

// ---------------------------------------------------------------------------
// demo users only when meant

/// Runs the real binary with `args` and a clean environment for the
/// identity flags; it must exit non-zero, and its stderr is returned.
fn refused(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qrlogin"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("QRLOGIN_DEMO_USERS")
        .env_remove("QRLOGIN_MOBILE_VERIFIER")
        .env("QRLOGIN_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running qrlogin");
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_demo_refuses_a_shared_store_or_an_https_url_by_default() {
    // Not reachable, and never contacted: the refusal comes first.
    for args in [
        &["--store", "redis://127.0.0.1:1"][..],
        &["--public-url", "https://login.example"][..],
        &["--demo-users", "false"][..],
    ] {
        let err = refused(args);
        assert!(err.contains("--mobile-verifier"), "{args:?}: {err}");
        assert!(err.contains("--demo-users true"), "{args:?}: {err}");
    }
    let err = refused(&[
        "--mobile-verifier",
        "jwt",
        "--mobile-jwt-issuer",
        "https://idp.example",
        "--mobile-jwt-audience",
        "a",
        "--demo-users",
        "true",
    ]);
    assert!(
        err.contains("--demo-users true needs --mobile-verifier demo"),
        "{err}"
    );
    let err = refused(&[
        "--mobile-verifier",
        "jwt",
        "--mobile-jwt-issuer",
        "https://idp.example",
    ]);
    assert!(err.contains("--mobile-jwt-audience"), "{err}");
    let err = refused(&[
        "--mobile-verifier",
        "jwt",
        "--mobile-jwt-issuer",
        "https://idp.example",
        "--mobile-jwt-audience",
        "a",
        "--mobile-jwt-algorithms",
        "RS256,HS256",
    ]);
    assert!(err.contains("HS256"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_on_a_shared_store_when_asked() {
    let redis = redis_server().await;
    let mut cfg = config();
    cfg.demo_users = Some(true);
    cfg.store = redis.url();
    let store = redis_store(&redis.url(), &cfg).await;
    let app = spawn_on(cfg, store, None).await;
    app.phone(ALICE).await;
}

// ---------------------------------------------------------------------------
// a custom verifier through the builder

/// A site's own check: tokens `site:<user>` are that user; `down` means the
/// site's auth service is unreachable.
struct SiteTokens;

#[async_trait::async_trait]
impl MobileVerifier for SiteTokens {
    async fn verify(&self, bearer: &str) -> Result<User, VerifyError> {
        if bearer == "down" {
            return Err(VerifyError::Unavailable("auth service unreachable".into()));
        }
        let id = bearer.strip_prefix("site:").ok_or(VerifyError::Invalid)?;
        Ok(User {
            id: id.into(),
            name: format!("Site user {id}"),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_verifier_plugs_in_through_the_builder() {
    let running = QrLogin::builder(config())
        .verifier(Arc::new(SiteTokens))
        .spawn()
        .await
        .expect("spawning with a custom verifier");
    let base = format!("http://{}", running.addr);
    assert!(
        !running.state.demo_on(),
        "a custom verifier switches the demo off"
    );
    login_as(&base, "site:zoe", "zoe", "Site user zoe").await;
    let browser = Browser::new(&base);
    let login = browser.create().await;
    Phone::with_token(&base, "nope")
        .scan(&login.id)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    Phone::with_token(&base, "down")
        .scan(&login.id)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "verifier_unavailable");
}
