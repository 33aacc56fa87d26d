//! JWT web sessions (`--session-format jwt`) over real HTTP on loopback, on
//! both stores: the redeemed JWT verifies with nothing but the keys served
//! at `/.well-known/jwks.json`; `GET /v1/session` accepts it by cookie and by
//! bearer and refuses it after logout (while it stays signature-valid
//! offline: the documented limitation); tampered tokens are 401 JSON; the
//! JWT expires with its session on the service's clock; instances sharing a
//! key file accept each other's JWTs. Opaque mode has no JWKS (404 JSON).

#[macro_use]
mod common;
#[path = "common/security.rs"]
mod sec;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use qrlogin_core::{Clock, ManualClock, SessionRef};
use qrlogin_server::config::SessionFormat;
use qrlogin_server::ServeConfig;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE};
use reqwest::StatusCode;
use sec::Bin;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Arc;

per_store!(
    jwt_full_flow,
    tampered_jwts_are_401_json,
    jwt_expires_with_its_session,
    opaque_mode_has_no_jwks,
);

/// JWT mode with a per-process key (allowed on the shared Redis store only
/// because it is asked for; see `a_shared_store_needs_a_key_file`).
fn jwt_config() -> ServeConfig {
    let mut cfg = config();
    cfg.session_format = SessionFormat::Jwt;
    cfg.jwt_ephemeral_key = true;
    cfg
}

/// A P-256 private key as a PEM file, as `openssl genpkey` would write it.
fn key_file() -> tempfile::NamedTempFile {
    let key = loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("random");
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            break k;
        }
    };
    use p256::pkcs8::EncodePrivateKey;
    let pem = key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).expect("pem");
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(pem.as_bytes()).expect("write key");
    f
}

/// A full login, redeemed: (the redeem answer, the browser holding the
/// session cookie).
async fn logged_in(app: &App) -> (Value, Reply, Browser) {
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;
    phone.scan_ok(&login.id).await;
    phone.approve_ok(&login.id).await;
    let r = browser.redeem(&login).await;
    (r.ok_json(StatusCode::OK), r, browser)
}

/// `GET /.well-known/jwks.json` over HTTP, as a third party would.
async fn fetch_jwks(app: &App) -> JwkSet {
    let r = send(raw_client().get(app.url("/.well-known/jwks.json"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let ct = r.headers[CONTENT_TYPE].to_str().expect("content type");
    assert!(ct.starts_with("application/json"), "{ct}");
    let cc = r.headers[CACHE_CONTROL].to_str().expect("cache control");
    assert!(cc.contains("public") && cc.contains("max-age="), "{cc}");
    assert_eq!(
        r.headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*"),
        "public keys are fetchable cross-origin"
    );
    let raw = r.json();
    for key in raw["keys"].as_array().expect("keys") {
        assert!(key.get("d").is_none(), "private key published: {key}");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "ES256");
    }
    serde_json::from_value(raw).expect("a JWK set")
}

/// Verifies `token` the way an integrator's service would: only the
/// published keys, the algorithm pinned, the issuer checked.
fn verify_offline(jwks: &JwkSet, token: &str, issuer: &str) -> jsonwebtoken::errors::Result<Value> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.expect("the JWT names its key");
    let jwk = jwks.find(&kid).expect("the JWT's key is published");
    let key = DecodingKey::from_jwk(jwk)?;
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iss", "sub"]);
    Ok(jsonwebtoken::decode::<Value>(token, &key, &v)?.claims)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

async fn jwt_full_flow(kind: StoreKind) {
    let app = app_with(kind, jwt_config(), None).await;
    let (v, reply, browser) = logged_in(&app).await;
    let token = v["token"].as_str().expect("token").to_string();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 43_200);
    assert_eq!(v["user"], json!({"id": ALICE_ID, "name": "Alice"}));
    assert_eq!(token.split('.').count(), 3, "a JWS compact token: {token}");
    let sc = reply.set_cookie("qrl_session").expect("session cookie");
    assert!(sc.starts_with(&format!("qrl_session={token};")), "{sc}");
    assert!(
        sc.contains("HttpOnly") && sc.contains("SameSite=Lax"),
        "{sc}"
    );

    // Independently verifiable with only what /.well-known/jwks.json says.
    let jwks = fetch_jwks(&app).await;
    assert_eq!(jwks.keys.len(), 1);
    let claims = verify_offline(&jwks, &token, &app.base).expect("verifies offline");
    assert_eq!(claims["iss"], app.base);
    assert_eq!(claims["sub"], ALICE_ID);
    assert_eq!(claims["name"], "Alice");
    let (iat, exp) = (
        claims["iat"].as_u64().expect("iat"),
        claims["exp"].as_u64().expect("exp"),
    );
    assert!(
        (43_199..=43_200).contains(&(exp - iat)),
        "iat {iat} exp {exp}"
    );
    // `sid` names the store's session record, and holds no secret: it is
    // the login id and a SHA-256, exactly what the record is keyed by.
    let sid = claims["sid"].as_str().expect("sid");
    assert_eq!(claims["jti"], sid);
    let session: SessionRef = sid.parse().expect("sid is a session reference");
    assert!(app
        .store
        .session(&session, app.state().now_ms())
        .await
        .expect("store")
        .is_some());

    // qrlogin's own check, by cookie and by bearer.
    let who = browser.whoami().await.ok_json(StatusCode::OK);
    assert_eq!(who["user"]["id"], ALICE_ID);
    let who = browser.whoami_bearer(&token).await.ok_json(StatusCode::OK);
    assert_eq!(who["user"]["id"], ALICE_ID);
    // A bearer that is not ours does not hide the valid cookie.
    let r = send(
        browser
            .http
            .get(app.url("/v1/session"))
            .bearer_auth("the-site's-own-token"),
    )
    .await;
    r.ok_json(StatusCode::OK);
    // An opaque-looking token is not accepted in JWT mode.
    browser
        .whoami_bearer(&format!("{}.{}", session.login_id(), "A".repeat(43)))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // Logout revokes the record: qrlogin refuses the JWT from then on, by
    // cookie (cleared) and by bearer (the same JWT, kept elsewhere).
    let out = browser.logout().await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out
        .set_cookie("qrl_session")
        .is_some_and(|c| c.contains("Max-Age=0")));
    browser
        .whoami()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    browser
        .whoami_bearer(&token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(app
        .store
        .session(&session, app.state().now_ms())
        .await
        .expect("store")
        .is_none());
    // The documented limitation: offline, the signature is still valid
    // until `exp` (docs/SECURITY.md: keep JWT lifetimes short).
    verify_offline(&jwks, &token, &app.base).expect("still signature-valid offline");
}

async fn tampered_jwts_are_401_json(kind: StoreKind) {
    let app = app_with(kind, jwt_config(), None).await;
    let (v, _, browser) = logged_in(&app).await;
    let token = v["token"].as_str().expect("token");
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");

    let mut forged = Vec::new();
    // Payload changed (another user), signature kept.
    claims["sub"] = BOB_ID.into();
    forged.push(format!("{}.{}.{}", parts[0], b64(&claims), parts[2]));
    // Payload changed (a later expiry), signature kept.
    claims["sub"] = ALICE_ID.into();
    claims["exp"] = (claims["exp"].as_u64().expect("exp") + 86_400).into();
    forged.push(format!("{}.{}.{}", parts[0], b64(&claims), parts[2]));
    // Signature changed.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig");
    sig[0] ^= 0x80;
    forged.push(format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(&sig)
    ));
    // Signature removed, `alg: none`.
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
    let mut none = header.clone();
    none["alg"] = "none".into();
    forged.push(format!("{}.{}.", b64(&none), parts[1]));
    // The header switched to HS256, signature left as is (the real
    // HMAC-with-the-public-key forgery is in jwt.rs's unit tests).
    let mut hs = header.clone();
    hs["alg"] = "HS256".into();
    forged.push(format!("{}.{}.{}", b64(&hs), parts[1], parts[2]));
    // Junk.
    forged.extend(["", "a.b.c", "..", &parts[..2].join(".")].map(String::from));
    forged.push(format!("{token}x"));
    forged.push("e".repeat(3000));

    for bad in &forged {
        browser
            .whoami_bearer(bad)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        // As a cookie too (on a client with no other cookie).
        let r = send(
            raw_client()
                .get(app.url("/v1/session"))
                .header("cookie", format!("qrl_session={bad}")),
        )
        .await;
        r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        // A forged JWT cannot log the real session out.
        let r = send(
            raw_client()
                .post(app.url("/v1/session/logout"))
                .bearer_auth(bad),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    }
    // The real one still works: nothing above revoked it.
    browser.whoami_bearer(token).await.ok_json(StatusCode::OK);
}

async fn jwt_expires_with_its_session(kind: StoreKind) {
    // A whole second, so the JWT's `exp` (seconds) is the record's end.
    let t0 = qrlogin_core::SystemClock.now_ms() / 1000 * 1000;
    let clock = Arc::new(ManualClock::new(t0));
    let mut cfg = jwt_config();
    cfg.session_ttl = 60;
    let app = app_with(kind, cfg, Some(clock.clone() as Arc<dyn Clock>)).await;
    let (v, _, browser) = logged_in(&app).await;
    assert_eq!(v["expires_in"], 60);
    let token = v["token"].as_str().expect("token");
    clock.set_ms(t0 + 59_999);
    browser.whoami_bearer(token).await.ok_json(StatusCode::OK);
    browser.whoami().await.ok_json(StatusCode::OK);
    clock.set_ms(t0 + 60_000);
    browser
        .whoami_bearer(token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    browser
        .whoami()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn opaque_mode_has_no_jwks(kind: StoreKind) {
    let app = app(kind).await;
    let r = send(raw_client().get(app.url("/.well-known/jwks.json"))).await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");
    // The route is in the OpenAPI document all the same (both answers).
    let api = send(raw_client().get(app.url("/openapi.json")))
        .await
        .ok_json(StatusCode::OK);
    let responses = &api["paths"]["/.well-known/jwks.json"]["get"]["responses"];
    assert!(
        responses["200"].is_object() && responses["404"].is_object(),
        "{responses}"
    );
    // And the opaque token is what redeem hands out.
    let (v, _, browser) = logged_in(&app).await;
    let token = v["token"].as_str().expect("token");
    assert!(
        token.parse::<qrlogin_core::SessionToken>().is_ok(),
        "{token}"
    );
    browser.whoami().await.ok_json(StatusCode::OK);
}

/// Two instances on one Redis with one `--jwt-key-file` (and an issuer and
/// audience set): each accepts the other's JWTs, a logout through one is
/// seen by the other, and the JWKS of both is the same key. An instance
/// with its own generated key refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_key_file_accept_each_others_jwts() {
    let key = key_file();
    let mut cfg = jwt_config();
    cfg.jwt_key_file = Some(key.path().to_path_buf());
    cfg.jwt_issuer = Some("https://login.example".into());
    cfg.jwt_audience = Some("shop".into());
    let a = app_with(StoreKind::Redis, cfg.clone(), None).await;
    let mut cfg_b = cfg.clone();
    cfg_b.store = a.redis.as_ref().expect("redis").url();
    let b = spawn_on(cfg_b, a.store.clone(), None).await;
    let mut cfg_c = jwt_config();
    cfg_c.store = a.redis.as_ref().expect("redis").url();
    cfg_c.jwt_issuer = Some("https://login.example".into());
    cfg_c.jwt_audience = Some("shop".into());
    let c = spawn_on(cfg_c, a.store.clone(), None).await;

    let (v, _, _) = logged_in(&a).await;
    let token = v["token"].as_str().expect("token");
    let jwks_a = fetch_jwks(&a).await;
    assert_eq!(jwks_a, fetch_jwks(&b).await);
    assert_ne!(jwks_a, fetch_jwks(&c).await);
    let claims = verify_offline(&jwks_a, token, "https://login.example");
    // The offline verifier above sets no audience: jsonwebtoken then refuses
    // a token that has one, as it should.
    assert!(claims.is_err());
    let header = jsonwebtoken::decode_header(token).expect("header");
    let jwk = jwks_a
        .find(header.kid.as_deref().expect("kid"))
        .expect("key");
    let mut val = Validation::new(Algorithm::ES256);
    val.set_issuer(&["https://login.example"]);
    val.set_audience(&["shop"]);
    let claims =
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).expect("key"), &val)
            .expect("verifies with issuer and audience")
            .claims;
    assert_eq!(claims["aud"], "shop");

    let at_b = b.browser();
    at_b.whoami_bearer(token).await.ok_json(StatusCode::OK);
    c.browser()
        .whoami_bearer(token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let r = send(
        raw_client()
            .post(b.url("/v1/session/logout"))
            .bearer_auth(token),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    a.browser()
        .whoami_bearer(token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// A key file that is not a P-256 key stops start-up with a clear error
/// (and without echoing the file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_file_stops_start_up() {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOKw7/f4BCsLnNiYCDZ6n2Fq+tpEmEi/kO9iZvnjec8b\n-----END PRIVATE KEY-----\n")
        .expect("write");
    let mut cfg = jwt_config();
    cfg.jwt_key_file = Some(f.path().to_path_buf());
    let store = Arc::new(qrlogin_core::MemoryStore::new(cfg.ttls()));
    let err = qrlogin_server::QrLogin::builder(cfg)
        .store(store)
        .spawn()
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("P-256"), "{msg}");
    assert!(!msg.contains("MC4CAQAw"), "{msg}");
}

/// JWT mode on a shared (Redis) store without a key file refuses to start,
/// naming the flag that fixes it: instances behind one load balancer would
/// otherwise each sign with their own key and refuse each other's JWTs.
/// `--jwt-ephemeral-key true` is the explicit way to accept that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_store_needs_a_key_file() {
    let server = redis_server().await;
    let mut cfg = jwt_config();
    cfg.jwt_ephemeral_key = false;
    cfg.store = server.url();
    let store = redis_store(&server.url(), &cfg).await;
    let err = qrlogin_server::QrLogin::builder(cfg.clone())
        .store(store.clone())
        .spawn()
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("--jwt-key-file"), "{msg}");
    assert!(msg.contains("--jwt-ephemeral-key"), "{msg}");

    cfg.jwt_ephemeral_key = true;
    let running = qrlogin_server::QrLogin::builder(cfg)
        .store(store)
        .spawn()
        .await
        .expect("starts when asked for a per-process key");
    drop(running);
}

/// The real binary at `QRLOGIN_LOG=trace`, JWT mode with a key file: a whole
/// login, lookup and logout; neither the private key (PEM text or scalar)
/// nor the JWT (or its signature) appears in the log. Without a key file it
/// warns that the key is per-process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_logs_neither_the_key_nor_the_jwt() {
    let key = key_file();
    let pem = std::fs::read_to_string(key.path()).expect("read key");
    let scalar = {
        use p256::pkcs8::DecodePrivateKey;
        p256::SecretKey::from_pkcs8_pem(&pem)
            .expect("parse")
            .to_bytes()
    };
    let secrets: Vec<String> = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_owned)
        .chain([
            URL_SAFE_NO_PAD.encode(scalar),
            scalar.iter().map(|b| format!("{b:02x}")).collect(),
        ])
        .collect();
    let path = key.path().to_str().expect("utf-8 path").to_string();
    let bin = Bin::start_logging(
        "trace",
        &["--session-format", "jwt", "--jwt-key-file", &path],
    );
    let browser = Browser::new(&bin.base);
    let phone = Phone::sign_in(&bin.base, ALICE).await;
    let login = browser.create().await;
    phone.scan_ok(&login.id).await;
    phone.approve_ok(&login.id).await;
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    let token = v["token"].as_str().expect("token").to_string();
    browser.whoami().await.ok_json(StatusCode::OK);
    browser.whoami_bearer(&token).await.ok_json(StatusCode::OK);
    let jwks = send(raw_client().get(format!("{}/.well-known/jwks.json", bin.base))).await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert_eq!(browser.logout().await.status, StatusCode::NO_CONTENT);
    browser
        .whoami_bearer(&token)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    let log = bin.log();
    assert!(log.contains("JWT web sessions"), "log:\n{log}");
    assert!(
        !log.contains("only this process"),
        "a key file was given:\n{log}"
    );
    let signature = token.rsplit('.').next().expect("signature");
    for (what, needle) in secrets
        .iter()
        .map(|s| ("the private key", s.as_str()))
        .chain([
            ("the JWT", token.as_str()),
            ("the JWT's signature", signature),
        ])
    {
        assert!(!log.contains(needle), "{what} is in the log:\n{log}");
    }
    assert!(
        !jwks.text().contains(&secrets[secrets.len() - 2]),
        "private key in the JWKS"
    );

    let generated = Bin::start_logging("warn", &["--session-format", "jwt"]);
    let log = generated.log();
    assert!(
        log.contains("only this process") && log.contains("--jwt-key-file"),
        "no per-process key warning:\n{log}"
    );
}
