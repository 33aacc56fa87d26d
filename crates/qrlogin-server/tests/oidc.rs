//! qrlogin as an OpenID Provider and device authorization server (SPEC §7,
//! issue 9), driven by a real OIDC relying-party library (the Rust
//! `openidconnect` crate: discovery, PKCE, ID-token validation, the device
//! flow with its polling) and by raw HTTP for the refusals, each its own
//! test. The browser step is the authorize page's own calls (cookie jar,
//! no redirects followed); the phone step the phone API.

mod common;
#[path = "common/security.rs"]
mod sec;

use common::*;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreDeviceAuthorizationResponse, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, DeviceAuthorizationUrl, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse as _,
};
use qrlogin_core::{Clock, ManualClock};
use qrlogin_server::config::MatchMode;
use qrlogin_server::ServeConfig;
use reqwest::header::{AUTHORIZATION, LOCATION, USER_AGENT, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

const WEB_SECRET: &str = "web-secret-42";
const CB: &str = "http://127.0.0.1:9/cb";
const BYE: &str = "http://127.0.0.1:9/bye";

/// The clients every test registers: a confidential web app (code +
/// refresh), a public SPA (code, PKCE required), a public TV (device).
fn clients_file() -> tempfile::NamedTempFile {
    let hash = qrlogin_server::identity::hash_password(WEB_SECRET).expect("hash");
    let doc = json!([
        {"client_id": "web", "name": "Example Shop", "redirect_uris": [CB],
         "client_secret_hash": hash, "grant_types": ["authorization_code", "refresh_token"],
         "post_logout_redirect_uris": [BYE]},
        {"client_id": "spa", "name": "Shop SPA", "public": true, "redirect_uris": [CB]},
        {"client_id": "tv", "name": "Living-room TV", "public": true,
         "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]}
    ]);
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(doc.to_string().as_bytes()).expect("write");
    f
}

struct Op {
    app: App,
    _clients: tempfile::NamedTempFile,
}

fn op_config(clients: &tempfile::NamedTempFile) -> ServeConfig {
    let mut cfg = config();
    cfg.oidc_clients = Some(clients.path().to_path_buf());
    cfg.match_code = MatchMode::Off;
    cfg.device_interval = 1;
    cfg
}

async fn op_with(
    kind: StoreKind,
    f: impl FnOnce(&mut ServeConfig),
    clock: Option<Arc<dyn Clock>>,
) -> Op {
    let clients = clients_file();
    let mut cfg = op_config(&clients);
    f(&mut cfg);
    if kind == StoreKind::Redis {
        cfg.jwt_ephemeral_key = true;
    }
    Op {
        app: app_with(kind, cfg, clock).await,
        _clients: clients,
    }
}

async fn op() -> Op {
    op_with(StoreKind::Memory, |_| {}, None).await
}

/// A user agent that keeps cookies and does not follow redirects.
fn user_agent() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn location(r: &Reply) -> url::Url {
    let l = r
        .headers
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location; {} {}", r.status, r.text()))
        .to_str()
        .expect("ascii");
    url::Url::parse(l).expect("absolute Location")
}

fn param(u: &url::Url, k: &str) -> Option<String> {
    u.query_pairs()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.into_owned())
}

/// The browser's part of a code flow from `authorize_url` (at `base`):
/// the page, its login, the phone approving as `who` (or denying), then
/// the continue redirect, whose Location is returned.
async fn sign_in_at(base: &str, authorize_url: &str, who: (&str, &str), approve: bool) -> url::Url {
    let ua = user_agent();
    let page = send(ua.get(authorize_url)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.text().contains("authorize.js"), "the authorize page");
    let query = url::Url::parse(authorize_url)
        .expect("url")
        .query()
        .unwrap_or("")
        .to_string();
    let started = send(
        ua.post(format!("{base}/oauth2/authorize/login"))
            .json(&json!({"query": format!("?{query}")})),
    )
    .await
    .ok_json(StatusCode::CREATED);
    let id = started["login_id"].as_str().expect("login id").to_string();
    let phone = Phone::sign_in(base, who).await;
    let ctx = phone.scan_ok(&id).await;
    assert_eq!(
        ctx["client"]["name"], started["client"]["name"],
        "the phone names the client: {ctx}"
    );
    if approve {
        phone.approve_ok(&id).await;
    } else {
        phone.deny(&id).await;
    }
    let cont = started["continue"].as_str().expect("continue");
    let r = send(ua.get(format!("{base}{cont}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    location(&r)
}

async fn sign_in(app: &App, authorize_url: &str) -> url::Url {
    sign_in_at(&app.base, authorize_url, ALICE, true).await
}

/// An authorize URL for `client` with PKCE S256; returns it and the verifier.
fn authorize_url(base: &str, client: &str, extra: &[(&str, &str)]) -> (String, String) {
    let verifier = "v".repeat(43) + "-extra-entropy-0123456789";
    use base64::Engine as _;
    use sha2::Digest as _;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut u = url::Url::parse(&format!("{base}/oauth2/authorize")).expect("url");
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client)
            .append_pair("redirect_uri", CB)
            .append_pair("scope", "openid profile")
            .append_pair("state", "st-1")
            .append_pair("nonce", "n-1")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    (u.to_string(), verifier)
}

async fn token(base: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Reply {
    let mut rb = raw_client().post(format!("{base}/oauth2/token")).form(form);
    if let Some((id, secret)) = basic {
        rb = rb.basic_auth(id, Some(secret));
    }
    send(rb).await
}

async fn code_for(app: &App) -> (String, String) {
    let (url, verifier) = authorize_url(&app.base, "web", &[]);
    let back = sign_in(app, &url).await;
    (param(&back, "code").expect("code"), verifier)
}

/// A finished code flow for the `web` client: the token endpoint's answer
/// (ID, access and refresh tokens), asserted 200.
async fn signed_in(app: &App) -> serde_json::Value {
    let (code, verifier) = code_for(app).await;
    redeem_code(app, &code, &verifier)
        .await
        .ok_json(StatusCode::OK)
}

async fn redeem_code(app: &App, code: &str, verifier: &str) -> Reply {
    token(
        &app.base,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CB),
            ("code_verifier", verifier),
        ],
        Some(("web", WEB_SECRET)),
    )
    .await
}

fn oauth_error(r: &Reply, status: StatusCode, error: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["error"], error, "{}", r.text());
    assert_eq!(
        r.headers.get("cache-control").map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
}

async fn userinfo(base: &str, at: &str) -> Reply {
    send(
        raw_client()
            .get(format!("{base}/oauth2/userinfo"))
            .header(AUTHORIZATION, format!("Bearer {at}")),
    )
    .await
}

// ---------------------------------------------------------------------------
// a real relying party library

fn rp_http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openidconnect_crate_runs_the_code_flow_with_pkce() {
    let op = op().await;
    let http = rp_http();
    let issuer = IssuerUrl::new(op.app.base.clone()).expect("issuer");
    let meta = CoreProviderMetadata::discover_async(issuer, &http)
        .await
        .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new("web".into()),
        Some(ClientSecret::new(WEB_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(CB.into()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let back = sign_in(&op.app, url.as_str()).await;
    assert_eq!(
        param(&back, "state").as_deref(),
        Some(csrf.secret().as_str()),
        "state round trip"
    );
    assert_eq!(
        param(&back, "iss").as_deref(),
        Some(op.app.base.as_str()),
        "RFC 9207 iss"
    );
    let code = param(&back, "code").expect("code");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint known")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("the library validates the ID token");
    assert_eq!(claims.subject().as_str(), ALICE_ID);
    assert_eq!(claims.issuer().as_str(), op.app.base);
    assert_eq!(claims.audiences()[0].as_str(), "web");
    assert_eq!(
        claims.nonce().map(|n| n.secret().as_str()),
        Some(nonce.secret().as_str())
    );
    assert!(claims.auth_time().is_some());
    let amr: Vec<String> = claims
        .auth_method_refs()
        .expect("amr")
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(amr, ["qr"]);
    assert_eq!(
        claims.name().and_then(|n| n.get(None)).map(|n| n.as_str()),
        Some("Alice")
    );
    assert!(tokens.refresh_token().is_some(), "web may refresh");
    // userinfo with the access token.
    let info = userinfo(&op.app.base, tokens.access_token().secret())
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(info["sub"], ALICE_ID);
    assert_eq!(info["name"], "Alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openidconnect_crate_runs_the_device_flow_and_honours_slow_down() {
    let op = op().await;
    let base = op.app.base.clone();
    let http = rp_http();
    let meta =
        CoreProviderMetadata::discover_async(IssuerUrl::new(base.clone()).expect("issuer"), &http)
            .await
            .expect("discovery");
    let client = CoreClient::from_provider_metadata(meta, ClientId::new("tv".into()), None)
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(format!("{base}/oauth2/device_authorization"))
                .expect("url"),
        );
    let details: CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("profile".into()))
        .request_async(&http)
        .await
        .expect("device authorization");
    assert_eq!(
        details.verification_uri().as_str(),
        format!("{base}/device")
    );
    let complete = details
        .verification_uri_complete()
        .expect("complete URI")
        .secret()
        .clone();
    assert!(complete.starts_with(&format!("{base}/m/")), "{complete}");
    let code = details.user_code().secret().clone();
    assert_eq!(code.len(), 9);
    // The phone: the typed code resolves to the same login the QR names.
    let looked = send(
        raw_client()
            .post(format!("{base}/v1/device/lookup"))
            .json(&json!({"user_code": code.to_lowercase()})),
    )
    .await
    .ok_json(StatusCode::OK);
    assert_eq!(looked["confirm"], complete);
    let id = looked["login_id"].as_str().expect("id").to_string();
    let phone_base = base.clone();
    let approver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let phone = Phone::sign_in(&phone_base, BOB).await;
        let ctx = phone.scan_ok(&id).await;
        assert_eq!(ctx["client"]["name"], "Living-room TV", "{ctx}");
        phone.approve_ok(&id).await;
    });
    // Another poll of the same device code half a second in puts the two
    // pollers less than the 1 s interval apart: one of the library's polls
    // gets slow_down, and the library must then wait the longer interval
    // (6 s) before its next poll.
    let dc = details.device_code().secret().clone();
    let poll_base = base.clone();
    let early = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token(
            &poll_base,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &dc),
                ("client_id", "tv"),
            ],
            None,
        )
        .await
    });
    let t0 = std::time::Instant::now();
    let tokens = client
        .exchange_device_access_token(&details)
        .expect("token endpoint known")
        .request_async(&http, tokio::time::sleep, Some(Duration::from_secs(30)))
        .await
        .expect("device tokens");
    approver.await.expect("phone");
    let early = early.await.expect("early poll");
    assert!(
        ["authorization_pending", "slow_down"]
            .contains(&early.json()["error"].as_str().unwrap_or("")),
        "{}",
        early.text()
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(6),
        "the library waited the slowed-down interval ({:?})",
        t0.elapsed()
    );
    let id_token = tokens.id_token().expect("ID token");
    let claims = id_token
        .claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .expect("validated");
    assert_eq!(claims.subject().as_str(), BOB_ID);
}

// ---------------------------------------------------------------------------
// refusals, each its own test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_code_fails_and_revokes_what_its_first_use_issued() {
    let op = op().await;
    let (code, verifier) = code_for(&op.app).await;
    let first = redeem_code(&op.app, &code, &verifier)
        .await
        .ok_json(StatusCode::OK);
    let at = first["access_token"].as_str().expect("at");
    let rt = first["refresh_token"].as_str().expect("rt");
    assert_eq!(userinfo(&op.app.base, at).await.status, StatusCode::OK);
    let again = redeem_code(&op.app, &code, &verifier).await;
    oauth_error(&again, StatusCode::BAD_REQUEST, "invalid_grant");
    let r = userinfo(&op.app.base, at).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the first use's access token is revoked"
    );
    assert!(r.headers[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let r = token(
        &op.app.base,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        Some(("web", WEB_SECRET)),
    )
    .await;
    oauth_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pkce_verifier_fails() {
    let op = op().await;
    let (code, _) = code_for(&op.app).await;
    let r = redeem_code(&op.app, &code, &"w".repeat(50)).await;
    oauth_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    // Without a verifier at all, too.
    let (code, _) = code_for(&op.app).await;
    let r = token(
        &op.app.base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
        Some(("web", WEB_SECRET)),
    )
    .await;
    oauth_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_redirect_uri_at_the_token_endpoint_fails() {
    let op = op().await;
    let (code, verifier) = code_for(&op.app).await;
    let r = token(
        &op.app.base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", &verifier),
        ],
        Some(("web", WEB_SECRET)),
    )
    .await;
    oauth_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_is_invalid_client() {
    let op = op().await;
    let (code, verifier) = code_for(&op.app).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", verifier.as_str()),
    ];
    let r = token(&op.app.base, &form, Some(("web", "not-the-secret"))).await;
    oauth_error(&r, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(r.headers.contains_key(WWW_AUTHENTICATE), "Basic challenge");
    // client_secret_post with a wrong secret; and no authentication at all.
    let mut post = form.to_vec();
    post.extend([("client_id", "web"), ("client_secret", "nope")]);
    oauth_error(
        &token(&op.app.base, &post, None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    oauth_error(
        &token(&op.app.base, &form, None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    // The code survived the failed attempts: authentication comes first.
    let mut good = form.to_vec();
    good.extend([("client_id", "web"), ("client_secret", WEB_SECRET)]);
    token(&op.app.base, &good, None)
        .await
        .ok_json(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_expires_after_60_seconds() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let op = op_with(StoreKind::Memory, |_| {}, Some(clock.clone())).await;
    let (code, verifier) = code_for(&op.app).await;
    clock.advance_ms(60_000);
    oauth_error(
        &redeem_code(&op.app, &code, &verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirect_attempts_get_an_error_page_never_a_redirect() {
    let op = op().await;
    for bad in [
        "http://127.0.0.1:9/cb/",
        "http://127.0.0.1:9/cb?x=1",
        "http://127.0.0.1:9/cb#frag",
        "http://evil.example/cb",
        "HTTP://127.0.0.1:9/cb",
        "javascript:alert(1)",
        "",
    ] {
        let mut u = url::Url::parse(&format!("{}/oauth2/authorize", op.app.base)).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", "web")
            .append_pair("redirect_uri", bad)
            .append_pair("scope", "openid");
        let r = send(user_agent().get(u.as_str())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(r.headers.get(LOCATION).is_none(), "{bad:?} redirected");
        assert!(r.text().contains("redirect_uri"), "{bad:?}: {}", r.text());
    }
    // An unknown client: a page too.
    let r = send(user_agent().get(format!(
        "{}/oauth2/authorize?client_id=nobody&redirect_uri={CB}&response_type=code&scope=openid",
        op.app.base
    )))
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.headers.get(LOCATION).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_authorize_errors_redirect_with_error_state_and_iss() {
    let op = op().await;
    let base = op.app.base.clone();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        (
            "spa",
            &[("code_challenge_method", "plain")],
            "invalid_request",
        ),
        ("web", &[("prompt", "none")], "login_required"),
        (
            "web",
            &[("response_type", "token")],
            "unsupported_response_type",
        ),
        ("web", &[("scope", "profile")], "invalid_scope"),
        ("tv", &[], "unauthorized_client"),
    ];
    for (client, extra, error) in cases {
        let (mut url, _) = authorize_url(&base, client, &[]);
        // Replace the named parameters.
        let mut u = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .extend_pairs(extra.iter().copied());
        url = u.to_string();
        if client == "tv" {
            // The TV has no redirect URI registered: an error page.
            let r = send(user_agent().get(&url)).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "tv");
            continue;
        }
        let r = send(user_agent().get(&url)).await;
        assert_eq!(
            r.status,
            StatusCode::SEE_OTHER,
            "{client} {extra:?}: {}",
            r.text()
        );
        let back = location(&r);
        assert_eq!(
            param(&back, "error").as_deref(),
            Some(error),
            "{client} {extra:?}"
        );
        assert_eq!(param(&back, "state").as_deref(), Some("st-1"));
        assert_eq!(param(&back, "iss").as_deref(), Some(base.as_str()));
        assert!(back.as_str().starts_with(CB));
    }
    // A public client without PKCE.
    let r = send(user_agent().get(format!(
        "{base}/oauth2/authorize?response_type=code&client_id=spa&redirect_uri={CB}&scope=openid&state=s2"
    )))
    .await;
    let back = location(&r);
    assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));
    assert_eq!(param(&back, "state").as_deref(), Some("s2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_nonce_round_trip_and_their_absence_too() {
    let op = op().await;
    let (url, verifier) = authorize_url(&op.app.base, "web", &[]);
    let back = sign_in(&op.app, &url).await;
    assert_eq!(param(&back, "state").as_deref(), Some("st-1"));
    let t = redeem_code(&op.app, &param(&back, "code").unwrap(), &verifier)
        .await
        .ok_json(StatusCode::OK);
    let claims = jwt_claims(t["id_token"].as_str().unwrap());
    assert_eq!(claims["nonce"], "n-1");
    assert_eq!(claims["sid"].as_str().map(|s| s.contains('.')), Some(true));
    // Without state and nonce: none comes back, none is invented.
    let mut u = url::Url::parse(&url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != "state" && k != "nonce")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let back = sign_in(&op.app, u.as_str()).await;
    assert_eq!(param(&back, "state"), None);
    let t = redeem_code(&op.app, &param(&back, "code").unwrap(), &verifier)
        .await
        .ok_json(StatusCode::OK);
    assert!(jwt_claims(t["id_token"].as_str().unwrap())
        .get("nonce")
        .is_none());
}

fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let p = jwt.split('.').nth(1).expect("payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .expect("b64"),
    )
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_sign_in_redirects_with_access_denied() {
    let op = op().await;
    let (url, _) = authorize_url(&op.app.base, "web", &[]);
    let back = sign_in_at(&op.app.base, &url, ALICE, false).await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&back, "state").as_deref(), Some("st-1"));
    assert_eq!(param(&back, "code"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_a_replayed_one_ends_the_family() {
    let op = op().await;
    let t = signed_in(&op.app).await;
    let rt1 = t["refresh_token"].as_str().unwrap().to_string();
    let refresh = |rt: String| {
        let base = op.app.base.clone();
        async move {
            token(
                &base,
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
                Some(("web", WEB_SECRET)),
            )
            .await
        }
    };
    let t2 = refresh(rt1.clone()).await.ok_json(StatusCode::OK);
    let rt2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "rotated");
    assert_eq!(
        jwt_claims(t2["id_token"].as_str().unwrap())["sub"],
        ALICE_ID
    );
    oauth_error(
        &refresh(rt1).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    // The replay ended the family: the new one is dead too.
    oauth_error(
        &refresh(rt2).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_eq!(
        userinfo(&op.app.base, t2["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_bound_to_its_client() {
    let op = op().await;
    let (url, verifier) = authorize_url(&op.app.base, "spa", &[]);
    let back = sign_in(&op.app, &url).await;
    let code = param(&back, "code").unwrap();
    // The confidential client cannot use the SPA's code.
    oauth_error(
        &redeem_code(&op.app, &code, &verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_and_redirects_only_where_registered() {
    let op = op().await;
    let t = signed_in(&op.app).await;
    let id_token = t["id_token"].as_str().unwrap();
    let at = t["access_token"].as_str().unwrap();
    let evil = send(user_agent().get(format!(
        "{}/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri=http://evil.example/",
        op.app.base
    )))
    .await;
    assert_eq!(evil.status, StatusCode::BAD_REQUEST);
    assert!(evil.headers.get(LOCATION).is_none());
    let r = send(user_agent().get(format!(
        "{}/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri={BYE}&state=bye-1",
        op.app.base
    )))
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let back = location(&r);
    assert!(back.as_str().starts_with(BYE));
    assert_eq!(param(&back, "state").as_deref(), Some("bye-1"));
    assert_eq!(
        userinfo(&op.app.base, at).await.status,
        StatusCode::UNAUTHORIZED,
        "logged out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_follows_rfc_7009() {
    let op = op().await;
    let t = signed_in(&op.app).await;
    let at = t["access_token"].as_str().unwrap();
    let revoke = |tok: &str, who: (&str, &str)| {
        let rb = raw_client()
            .post(format!("{}/oauth2/revoke", op.app.base))
            .form(&[("token", tok)])
            .basic_auth(who.0, Some(who.1));
        send(rb)
    };
    assert_eq!(
        revoke("never-issued", ("web", WEB_SECRET)).await.status,
        StatusCode::OK
    );
    oauth_error(
        &revoke(at, ("web", "wrong")).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    assert_eq!(userinfo(&op.app.base, at).await.status, StatusCode::OK);
    assert_eq!(revoke(at, ("web", WEB_SECRET)).await.status, StatusCode::OK);
    assert_eq!(
        userinfo(&op.app.base, at).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_codes_polled_too_fast_get_slow_down_and_a_longer_interval() {
    let op = op().await;
    let d = send(
        raw_client()
            .post(format!("{}/oauth2/device_authorization", op.app.base))
            .form(&[("client_id", "tv")]),
    )
    .await
    .ok_json(StatusCode::OK);
    assert_eq!(d["interval"], 1);
    let dc = d["device_code"].as_str().unwrap();
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", dc),
        ("client_id", "tv"),
    ];
    let poll = || token(&op.app.base, &form, None);
    oauth_error(
        &poll().await,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
    );
    let fast = poll().await;
    oauth_error(&fast, StatusCode::BAD_REQUEST, "slow_down");
    assert!(
        fast.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("6 s"),
        "{}",
        fast.text()
    );
    // Another client cannot poll it.
    let other = token(
        &op.app.base,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", dc),
            ("client_id", "spa"),
        ],
        None,
    )
    .await;
    oauth_error(&other, StatusCode::BAD_REQUEST, "unauthorized_client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_expired_device_codes_and_tokens_exactly_once() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let op = op_with(StoreKind::Memory, |_| {}, Some(clock.clone())).await;
    let base = op.app.base.clone();
    let start = || async {
        send(
            raw_client()
                .post(format!("{base}/oauth2/device_authorization"))
                .form(&[("client_id", "tv")]),
        )
        .await
        .ok_json(StatusCode::OK)
    };
    let poll = |dc: String| {
        let base = base.clone();
        async move {
            token(
                &base,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", &dc),
                    ("client_id", "tv"),
                ],
                None,
            )
            .await
        }
    };
    let id_of = |d: &Value| {
        d["verification_uri_complete"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string()
    };
    // Denied.
    let d = start().await;
    let phone = Phone::sign_in(&base, ALICE).await;
    phone.scan_ok(&id_of(&d)).await;
    phone.deny(&id_of(&d)).await;
    oauth_error(
        &poll(d["device_code"].as_str().unwrap().into()).await,
        StatusCode::BAD_REQUEST,
        "access_denied",
    );
    // Approved: tokens once, then invalid_grant.
    let d = start().await;
    phone.scan_ok(&id_of(&d)).await;
    phone.approve_ok(&id_of(&d)).await;
    let dc = d["device_code"].as_str().unwrap().to_string();
    poll(dc.clone()).await.ok_json(StatusCode::OK);
    clock.advance_ms(2_000);
    oauth_error(&poll(dc).await, StatusCode::BAD_REQUEST, "invalid_grant");
    // Expired: past expires_in.
    let d = start().await;
    assert_eq!(d["expires_in"], 600);
    clock.advance_ms(600_000);
    oauth_error(
        &poll(d["device_code"].as_str().unwrap().into()).await,
        StatusCode::BAD_REQUEST,
        "expired_token",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_code_guessing_is_rate_limited() {
    let op = op().await;
    let mut limited = false;
    for i in 0..60 {
        // Distinct guesses from the user-code alphabet.
        const A: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
        let guess = format!(
            "BCDF-GH{}{}",
            A[i / A.len()] as char,
            A[i % A.len()] as char
        );
        let r = send(
            raw_client()
                .post(format!("{}/v1/device/lookup", op.app.base))
                .json(&json!({ "user_code": guess })),
        )
        .await;
        match r.status {
            StatusCode::NOT_FOUND => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(r.headers.contains_key("retry-after"));
                limited = true;
                break;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert!(limited, "60 guesses from one address were never limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_clients_the_provider_is_absent() {
    let app = app(StoreKind::Memory).await;
    for path in [
        "/.well-known/openid-configuration",
        "/oauth2/authorize?client_id=web",
        "/device",
    ] {
        let r = send(raw_client().get(app.url(path))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    // The form endpoints too: a plain 404 before any form parsing, not an
    // RFC 6749 error that would suggest a provider is there.
    for (path, form) in [
        ("/oauth2/token", ("grant_type", "authorization_code")),
        ("/oauth2/device_authorization", ("client_id", "tv")),
        ("/oauth2/revoke", ("token", "x")),
    ] {
        let r = send(raw_client().post(app.url(path)).form(&[form])).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text());
        assert_eq!(r.json()["error"], "not_found", "{path}: {}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_every_endpoint_and_the_jwks_verifies_id_tokens() {
    let op = op().await;
    let d = send(raw_client().get(op.app.url("/.well-known/openid-configuration")))
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(d["issuer"], op.app.base);
    for (k, path) in [
        ("authorization_endpoint", "/oauth2/authorize"),
        ("token_endpoint", "/oauth2/token"),
        ("userinfo_endpoint", "/oauth2/userinfo"),
        ("jwks_uri", "/.well-known/jwks.json"),
        ("revocation_endpoint", "/oauth2/revoke"),
        ("end_session_endpoint", "/oauth2/logout"),
        (
            "device_authorization_endpoint",
            "/oauth2/device_authorization",
        ),
    ] {
        assert_eq!(d[k], format!("{}{path}", op.app.base), "{k}");
    }
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    let api = send(raw_client().get(op.app.url("/openapi.json")))
        .await
        .ok_json(StatusCode::OK);
    for path in [
        "/.well-known/openid-configuration",
        "/oauth2/authorize",
        "/oauth2/authorize/login",
        "/v1/logins/{id}/continue",
        "/oauth2/token",
        "/oauth2/userinfo",
        "/oauth2/revoke",
        "/oauth2/logout",
        "/oauth2/device_authorization",
        "/v1/device/lookup",
        "/device",
    ] {
        assert!(api["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    // The form-encoded POSTs, POST /oauth2/logout (served by the same
    // handler as GET) among them, each declare their form's fields.
    for (path, field) in [
        ("/oauth2/token", "grant_type"),
        ("/oauth2/revoke", "token"),
        ("/oauth2/device_authorization", "scope"),
        ("/oauth2/logout", "post_logout_redirect_uri"),
    ] {
        let form = &api["paths"][path]["post"]["requestBody"]["content"]
            ["application/x-www-form-urlencoded"]["schema"];
        let schema = match form["$ref"].as_str() {
            Some(r) => &api["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
            None => form,
        };
        assert!(
            schema["properties"].get(field).is_some(),
            "POST {path}: no form body with {field}: {form}"
        );
    }
    let logout_form = &api["components"]["schemas"]["LogoutForm"]["properties"];
    for field in [
        "id_token_hint",
        "post_logout_redirect_uri",
        "state",
        "client_id",
    ] {
        assert!(logout_form.get(field).is_some(), "LogoutForm lacks {field}");
    }
    let jwks = send(raw_client().get(op.app.url("/.well-known/jwks.json")))
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_redis_authorize_on_one_token_on_the_other() {
    let two = two_on_redis(None).await;
    let (a, b) = (&two.a, &two.b);
    // The issuer is each instance's own URL here; ask each for its own.
    let (url, verifier) = authorize_url(&a.base, "web", &[]);
    let back = sign_in_at(&a.base, &url, ALICE, true).await;
    let code = param(&back, "code").unwrap();
    let t = token(
        &b.base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", &verifier),
        ],
        Some(("web", WEB_SECRET)),
    )
    .await
    .ok_json(StatusCode::OK);
    assert_eq!(
        userinfo(&a.base, t["access_token"].as_str().unwrap())
            .await
            .json()["sub"],
        ALICE_ID
    );
    // The device flow across them too.
    let d = send(
        raw_client()
            .post(format!("{}/oauth2/device_authorization", a.base))
            .form(&[("client_id", "tv")]),
    )
    .await
    .ok_json(StatusCode::OK);
    let id = d["verification_uri_complete"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let phone = Phone::sign_in(&b.base, BOB).await;
    phone.scan_ok(&id).await;
    phone.approve_ok(&id).await;
    let t = token(
        &b.base,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", d["device_code"].as_str().unwrap()),
            ("client_id", "tv"),
        ],
        None,
    )
    .await
    .ok_json(StatusCode::OK);
    assert_eq!(jwt_claims(t["id_token"].as_str().unwrap())["sub"], BOB_ID);
}

#[test]
fn a_bad_clients_file_stops_start_up_with_the_line() {
    let mut f = tempfile::NamedTempFile::new().expect("temp");
    // The bad client is the second, whose object starts on line 3.
    f.write_all(b"[{\"client_id\": \"tv\", \"name\": \"TV\", \"public\": true,\n  \"grant_types\": [\"urn:ietf:params:oauth:grant-type:device_code\"]},\n {\"client_id\": \"web\",\n  \"name\": \"Shop\",\n  \"redirect_uris\": [\"http://evil.example/cb\"], \"public\": true}]").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qrlogin"))
        .args(["check-config", "--oidc-clients"])
        .arg(f.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3: client 2 (\"web\")") && err.contains("loopback"),
        "{err}"
    );
    f = tempfile::NamedTempFile::new().expect("temp");
    f.write_all(b"[{\"client_id\": \"web\",\n  \"name\": }]")
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qrlogin"))
        .args(["check-config", "--oidc-clients"])
        .arg(f.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// issue 9 audit gaps: number matching, the /device page, issuer and acr,
// the device's context, what Redis holds, pacing, prompt=login

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn device_start(base: &str, ua: &str) -> Value {
    send(
        raw_client()
            .post(format!("{base}/oauth2/device_authorization"))
            .header(USER_AGENT, ua)
            .form(&[("client_id", "tv"), ("scope", "openid profile")]),
    )
    .await
    .ok_json(StatusCode::OK)
}

async fn device_poll(base: &str, dc: &str) -> Reply {
    token(
        base,
        &[
            ("grant_type", DEVICE_GRANT),
            ("device_code", dc),
            ("client_id", "tv"),
        ],
        None,
    )
    .await
}

fn login_of(d: &Value) -> String {
    d["verification_uri_complete"]
        .as_str()
        .expect("complete URI")
        .rsplit('/')
        .next()
        .expect("id")
        .to_string()
}

async fn approve_picking(phone: &Phone, id: &str, pick: &str) -> Reply {
    send(
        raw_client()
            .post(format!("{}/v1/mobile/logins/{id}/approve", phone.base))
            .bearer_auth(&phone.token)
            .json(&json!({ "match_code": pick })),
    )
    .await
}

/// The number the other side shows, and a decoy among the phone's choices.
fn shown_and_decoy(shown: &Value, ctx: &Value) -> (String, String) {
    let code = shown
        .as_str()
        .unwrap_or_else(|| panic!("no match_code shown; phone got {ctx}"))
        .to_string();
    let choices: Vec<&str> = ctx["match_choices"]
        .as_array()
        .unwrap_or_else(|| panic!("no match_choices in {ctx}"))
        .iter()
        .map(|c| c.as_str().expect("string"))
        .collect();
    assert_eq!(choices.len(), 3, "{ctx}");
    assert!(choices.contains(&code.as_str()), "{code} in {choices:?}");
    let decoy = choices
        .iter()
        .find(|c| **c != code)
        .expect("a decoy")
        .to_string();
    (code, decoy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_matching_guards_the_authorize_page_and_the_device_flow() {
    let op = op_with(
        StoreKind::Memory,
        |c| {
            c.match_code = MatchMode::Always;
            c.rate_limits = false;
        },
        None,
    )
    .await;
    let base = op.app.base.clone();
    let phone = Phone::sign_in(&base, ALICE).await;
    // The authorize page's login: the page is given the number, the phone
    // three choices; a wrong pick denies and the client gets access_denied.
    for right in [false, true] {
        let ua = user_agent();
        let (url, verifier) = authorize_url(&base, "web", &[]);
        let query = url::Url::parse(&url).unwrap().query().unwrap().to_string();
        let started = send(
            ua.post(format!("{base}/oauth2/authorize/login"))
                .json(&json!({"query": format!("?{query}")})),
        )
        .await
        .ok_json(StatusCode::CREATED);
        let id = started["login_id"].as_str().unwrap().to_string();
        let ctx = phone.scan_ok(&id).await;
        let (code, decoy) = shown_and_decoy(&started["match_code"], &ctx);
        let r = approve_picking(&phone, &id, if right { &code } else { &decoy }).await;
        let cont = started["continue"].as_str().unwrap();
        let back = send(ua.get(format!("{base}{cont}"))).await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.text());
        let back = location(&back);
        if right {
            assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
            let code = param(&back, "code").expect("a code after the right pick");
            redeem_code(&op.app, &code, &verifier)
                .await
                .ok_json(StatusCode::OK);
        } else {
            r.assert_error(StatusCode::CONFLICT, "wrong_match_code");
            assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
            assert_eq!(param(&back, "code"), None);
        }
    }
    // The device flow: the device is given the number to show beside its QR.
    for right in [false, true] {
        let d = device_start(&base, "TV").await;
        let id = login_of(&d);
        let ctx = phone.scan_ok(&id).await;
        let (code, decoy) = shown_and_decoy(&d["match_code"], &ctx);
        let r = approve_picking(&phone, &id, if right { &code } else { &decoy }).await;
        let dc = d["device_code"].as_str().unwrap();
        if right {
            assert_eq!(r.ok_json(StatusCode::OK)["state"], "approved");
            let t = device_poll(&base, dc).await.ok_json(StatusCode::OK);
            assert_eq!(jwt_claims(t["id_token"].as_str().unwrap())["sub"], ALICE_ID);
        } else {
            r.assert_error(StatusCode::CONFLICT, "wrong_match_code");
            oauth_error(
                &device_poll(&base, dc).await,
                StatusCode::BAD_REQUEST,
                "access_denied",
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_page_is_served_with_clients() {
    let op = op().await;
    let r = send(raw_client().get(op.app.url("/device"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let ct = r.headers["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/html"), "{ct}");
    let html = r.text();
    for needle in ["device.js", "id=\"device-form\"", "id=\"user-code\""] {
        assert!(html.contains(needle), "/device lacks {needle}: {html}");
    }
    // The script the page names is served, and it is the lookup form's.
    let src = html
        .split("<script src=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or(""))
        .find(|src| src.ends_with("/device.js"))
        .unwrap_or_else(|| panic!("no device.js script in {html}"))
        .to_string();
    let js = send(raw_client().get(op.app.url(&src))).await;
    assert_eq!(js.status, StatusCode::OK, "{src}");
    assert!(js.text().contains("/v1/device/lookup"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_issuer_and_acr_reach_discovery_the_redirect_and_the_id_token() {
    const ISS: &str = "https://issuer.example";
    let op_iss = op_with(
        StoreKind::Memory,
        |c| {
            c.oidc_issuer = Some(format!("{ISS}/"));
            c.oidc_acr = Some("urn:qrlogin:qr".into());
        },
        None,
    )
    .await;
    let d = send(raw_client().get(op_iss.app.url("/.well-known/openid-configuration")))
        .await
        .ok_json(StatusCode::OK);
    assert_eq!(d["issuer"], ISS, "the trailing slash is dropped: {d}");
    assert_eq!(d["acr_values_supported"], json!(["urn:qrlogin:qr"]), "{d}");
    let (url, verifier) = authorize_url(&op_iss.app.base, "web", &[]);
    let back = sign_in(&op_iss.app, &url).await;
    assert_eq!(param(&back, "iss").as_deref(), Some(ISS), "RFC 9207 iss");
    let t = redeem_code(&op_iss.app, &param(&back, "code").unwrap(), &verifier)
        .await
        .ok_json(StatusCode::OK);
    let claims = jwt_claims(t["id_token"].as_str().unwrap());
    assert_eq!(claims["iss"], ISS, "{claims}");
    assert_eq!(claims["acr"], "urn:qrlogin:qr", "{claims}");
    // Without --oidc-acr there is no acr at all.
    let plain = op().await;
    let d = send(raw_client().get(plain.app.url("/.well-known/openid-configuration")))
        .await
        .ok_json(StatusCode::OK);
    assert!(d.get("acr_values_supported").is_none(), "{d}");
    let (code, verifier) = code_for(&plain.app).await;
    let t = redeem_code(&plain.app, &code, &verifier)
        .await
        .ok_json(StatusCode::OK);
    assert!(jwt_claims(t["id_token"].as_str().unwrap())
        .get("acr")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_sees_the_devices_context_and_the_device_gets_no_refresh_token() {
    let op = op().await;
    let base = op.app.base.clone();
    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 LivingRoomTV/1";
    let d = device_start(&base, UA).await;
    let id = login_of(&d);
    let phone = Phone::sign_in(&base, ALICE).await;
    let ctx = phone.scan_ok(&id).await;
    assert_eq!(ctx["client"]["name"], "Living-room TV", "{ctx}");
    // The device is the login's "browser": its address and agent.
    assert_eq!(ctx["browser"]["ip"], "127.0.0.1", "{ctx}");
    assert_eq!(ctx["browser"]["network"], "127.0.0.0/24", "{ctx}");
    assert_eq!(ctx["browser"]["user_agent"], UA, "{ctx}");
    assert!(
        ctx["browser"]["browser"]
            .as_str()
            .unwrap()
            .contains("Chrome"),
        "{ctx}"
    );
    assert_eq!(ctx["browser"]["os"], "Linux", "{ctx}");
    phone.approve_ok(&id).await;
    let t = device_poll(&base, d["device_code"].as_str().unwrap())
        .await
        .ok_json(StatusCode::OK);
    assert!(t["access_token"].as_str().is_some(), "{t}");
    assert!(
        t.get("refresh_token").is_none(),
        "the TV may not refresh: {t}"
    );
    // Nor the SPA, whose grant types are the default (authorization_code).
    let (url, verifier) = authorize_url(&base, "spa", &[]);
    let back = sign_in(&op.app, &url).await;
    let t = token(
        &base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &param(&back, "code").unwrap()),
            ("redirect_uri", CB),
            ("code_verifier", &verifier),
            ("client_id", "spa"),
        ],
        None,
    )
    .await
    .ok_json(StatusCode::OK);
    assert!(
        t.get("refresh_token").is_none(),
        "the SPA may not refresh: {t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_only_the_hash_of_a_256_bit_device_code() {
    let op = op_with(StoreKind::Redis, |_| {}, None).await;
    let d = device_start(&op.app.base, "TV").await;
    let dc = d["device_code"].as_str().unwrap();
    let id = login_of(&d);
    let (dc_id, secret) = dc.split_once('.').expect("<login id>.<secret>");
    assert_eq!(dc_id, id);
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(secret)
            .expect("base64url")
            .len(),
        32,
        "256 bits"
    );
    let dump = sec::redis_dump(op.app.redis.as_ref().unwrap());
    // The check has teeth: the login is there, found by the secret's hash.
    assert!(dump.contains(&id), "{dump}");
    let hash = secret
        .parse::<qrlogin_core::BrowserSecret>()
        .unwrap()
        .hash()
        .to_hex();
    assert!(dump.contains(&hash), "{dump}");
    assert!(
        !dump.contains(secret),
        "the device code's secret is stored:\n{dump}"
    );
    // And it still works: the phone approves, the device gets its tokens.
    let phone = Phone::sign_in(&op.app.base, BOB).await;
    phone.scan_ok(&id).await;
    phone.approve_ok(&id).await;
    device_poll(&op.app.base, dc).await.ok_json(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_is_remembered_per_device_code() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let op = op_with(StoreKind::Memory, |_| {}, Some(clock.clone())).await;
    let base = op.app.base.clone();
    let d = device_start(&base, "TV").await;
    assert_eq!(d["interval"], 1);
    let dc = d["device_code"].as_str().unwrap();
    let other = device_start(&base, "TV").await;
    let other_dc = other["device_code"].as_str().unwrap();
    let pending = |r: &Reply| oauth_error(r, StatusCode::BAD_REQUEST, "authorization_pending");
    let slow = |r: &Reply, secs: &str| {
        oauth_error(r, StatusCode::BAD_REQUEST, "slow_down");
        let text = r.json()["error_description"].as_str().unwrap().to_string();
        assert!(text.contains(secs), "{text} / {secs}");
    };
    pending(&device_poll(&base, dc).await);
    pending(&device_poll(&base, other_dc).await);
    slow(&device_poll(&base, dc).await, "every 6 s");
    // 2 s on: past the original 1 s interval, inside the new 6 s one.
    clock.advance_ms(2_000);
    slow(&device_poll(&base, dc).await, "every 11 s");
    // The other device code kept its own 1 s interval.
    pending(&device_poll(&base, other_dc).await);
    // Waiting the slowed-down interval is enough.
    clock.advance_ms(11_000);
    pending(&device_poll(&base, dc).await);
    clock.advance_ms(5_000);
    slow(&device_poll(&base, dc).await, "every 16 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_login_always_asks_the_phone() {
    let op = op().await;
    let base = op.app.base.clone();
    // A first sign-in in this user agent.
    let (url, _) = authorize_url(&base, "web", &[]);
    let back = sign_in(&op.app, &url).await;
    assert!(param(&back, "code").is_some());
    // prompt=login: the page again, a fresh login, no code before the phone.
    let ua = user_agent();
    let (url, verifier) = authorize_url(&base, "web", &[("prompt", "login")]);
    let page = send(ua.get(&url)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.text().contains("authorize.js"));
    let query = url::Url::parse(&url).unwrap().query().unwrap().to_string();
    let started = send(
        ua.post(format!("{base}/oauth2/authorize/login"))
            .json(&json!({"query": format!("?{query}")})),
    )
    .await
    .ok_json(StatusCode::CREATED);
    let id = started["login_id"].as_str().unwrap().to_string();
    let cont = started["continue"].as_str().unwrap().to_string();
    let early = send(ua.get(format!("{base}{cont}"))).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.text());
    assert!(early.headers.get(LOCATION).is_none());
    let phone = Phone::sign_in(&base, ALICE).await;
    phone.scan_ok(&id).await;
    let early = send(ua.get(format!("{base}{cont}"))).await;
    assert_eq!(
        early.status,
        StatusCode::CONFLICT,
        "scanned is not approved"
    );
    phone.approve_ok(&id).await;
    let r = send(ua.get(format!("{base}{cont}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let code = param(&location(&r), "code").expect("code");
    redeem_code(&op.app, &code, &verifier)
        .await
        .ok_json(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_pkce_is_refused() {
    let op = op().await;
    for client in ["spa", "web"] {
        let (url, _) = authorize_url(&op.app.base, client, &[]);
        let mut u = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != "code_challenge_method" && k != "code_challenge")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("code_challenge", &"p".repeat(43))
            .append_pair("code_challenge_method", "plain");
        let r = send(user_agent().get(u.as_str())).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{client}: {}", r.text());
        let back = location(&r);
        assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));
        assert_eq!(param(&back, "state").as_deref(), Some("st-1"));
        assert_eq!(param(&back, "code"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_answers_post_too() {
    let op = op().await;
    let t = signed_in(&op.app).await;
    let at = t["access_token"].as_str().unwrap();
    let r = send(
        raw_client()
            .post(op.app.url("/oauth2/userinfo"))
            .bearer_auth(at),
    )
    .await
    .ok_json(StatusCode::OK);
    assert_eq!(r["sub"], ALICE_ID);
    assert_eq!(r["name"], "Alice");
    let r = send(
        raw_client()
            .post(op.app.url("/oauth2/userinfo"))
            .bearer_auth("not-a-token"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let api = send(raw_client().get(op.app.url("/openapi.json")))
        .await
        .ok_json(StatusCode::OK);
    for m in ["get", "post"] {
        assert!(
            api["paths"]["/oauth2/userinfo"].get(m).is_some(),
            "openapi lacks {m} /oauth2/userinfo"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_refresh_token_ends_the_sign_in() {
    let op = op().await;
    let t = signed_in(&op.app).await;
    let at = t["access_token"].as_str().unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    let r = send(
        raw_client()
            .post(op.app.url("/oauth2/revoke"))
            .form(&[("token", rt), ("token_type_hint", "refresh_token")])
            .basic_auth("web", Some(WEB_SECRET)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    oauth_error(
        &token(
            &op.app.base,
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            Some(("web", WEB_SECRET)),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_eq!(
        userinfo(&op.app.base, at).await.status,
        StatusCode::UNAUTHORIZED,
        "the access token of that sign-in ends with it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_by_post_form_ends_the_session_too() {
    let op = op().await;
    let t = signed_in(&op.app).await;
    let id_token = t["id_token"].as_str().unwrap();
    let at = t["access_token"].as_str().unwrap();
    let post = |redirect: &str| {
        send(user_agent().post(op.app.url("/oauth2/logout")).form(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", redirect),
            ("state", "bye-2"),
        ]))
    };
    let evil = post("http://evil.example/").await;
    assert_eq!(evil.status, StatusCode::BAD_REQUEST);
    assert!(evil.headers.get(LOCATION).is_none());
    let r = post(BYE).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let back = location(&r);
    assert!(back.as_str().starts_with(BYE));
    assert_eq!(param(&back, "state").as_deref(), Some("bye-2"));
    assert_eq!(
        userinfo(&op.app.base, at).await.status,
        StatusCode::UNAUTHORIZED,
        "logged out"
    );
}

// ---- Redis / negatives (oidcredis)
// Replay, slow_down pacing and refresh rotation across two instances on one
// real redis-server; PKCE downgrade, PKCE-less confidential clients, the
// device grant's defaults and its pending state after a scan.

/// Two instances on one private redis-server, signing with one key file
/// (an ID token from either verifies on both), sharing `clock` if given.
/// Fields drop in order: the instances, then the store's server.
struct TwoOnRedis {
    a: App,
    b: App,
    _redis: qrlogin_testkit::RedisServer,
    _key_dir: tempfile::TempDir,
    _clients: tempfile::NamedTempFile,
}

async fn two_on_redis(clock: Option<Arc<dyn Clock>>) -> TwoOnRedis {
    let clients = clients_file();
    let redis = redis_server().await;
    let key_dir = tempfile::tempdir().expect("dir");
    let key_path = key_dir.path().join("jwt.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key_path)
        .status()
        .expect("openssl");
    assert!(status.success());
    let mk = || {
        let mut cfg = op_config(&clients);
        cfg.store = redis.url();
        cfg.jwt_key_file = Some(key_path.clone());
        cfg
    };
    let store_a = redis_store(&redis.url(), &mk()).await;
    let store_b = redis_store(&redis.url(), &mk()).await;
    let a = spawn_on(mk(), store_a, clock.clone()).await;
    let b = spawn_on(mk(), store_b, clock).await;
    TwoOnRedis {
        a,
        b,
        _redis: redis,
        _key_dir: key_dir,
        _clients: clients,
    }
}

async fn refresh_at(base: &str, rt: &str) -> Reply {
    token(
        base,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        Some(("web", WEB_SECRET)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_code_replayed_on_another_instance_revokes_the_first_use_everywhere() {
    let two = two_on_redis(None).await;
    let (a, b) = (&two.a, &two.b);
    let (code, verifier) = code_for(a).await;
    let first = redeem_code(a, &code, &verifier)
        .await
        .ok_json(StatusCode::OK);
    let at = first["access_token"].as_str().expect("access token");
    let rt = first["refresh_token"].as_str().expect("refresh token");
    // Before the replay the first use's access token works on both.
    for app in [a, b] {
        assert_eq!(userinfo(&app.base, at).await.status, StatusCode::OK);
    }
    let again = redeem_code(b, &code, &verifier).await;
    oauth_error(&again, StatusCode::BAD_REQUEST, "invalid_grant");
    for app in [a, b] {
        let r = userinfo(&app.base, at).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{}: the first use's access token is revoked: {}",
            app.base,
            r.text()
        );
        assert!(r.headers[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token"));
    }
    oauth_error(
        &refresh_at(&a.base, rt).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    oauth_error(
        &refresh_at(&b.base, rt).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_slow_down_paces_a_device_code_across_instances() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let two = two_on_redis(Some(clock.clone())).await;
    let (a, b) = (&two.a, &two.b);
    let d = device_start(&a.base, "TV").await;
    assert_eq!(d["interval"], 1);
    let dc = d["device_code"].as_str().unwrap();
    let slow = |r: &Reply, secs: &str| {
        oauth_error(r, StatusCode::BAD_REQUEST, "slow_down");
        let text = r.json()["error_description"].as_str().unwrap().to_string();
        assert!(text.contains(secs), "{text} / {secs}");
    };
    oauth_error(
        &device_poll(&a.base, dc).await,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
    );
    // B sees A's poll (the last poll time is in the store): too fast.
    slow(&device_poll(&b.base, dc).await, "every 6 s");
    // 2 s on: past the original 1 s interval, inside B's raised 6 s one,
    // which A reads from the store too.
    clock.advance_ms(2_000);
    slow(&device_poll(&a.base, dc).await, "every 11 s");
    // A poll that waits the raised interval is answered on either instance.
    clock.advance_ms(11_000);
    oauth_error(
        &device_poll(&b.base, dc).await,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
    );
    // And the grant still completes: approved through A, tokens from B.
    let id = login_of(&d);
    let phone = Phone::sign_in(&a.base, BOB).await;
    phone.scan_ok(&id).await;
    phone.approve_ok(&id).await;
    clock.advance_ms(11_000);
    let t = device_poll(&b.base, dc).await.ok_json(StatusCode::OK);
    assert_eq!(jwt_claims(t["id_token"].as_str().unwrap())["sub"], BOB_ID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_refresh_token_rotated_on_one_instance_is_refused_on_the_other() {
    let two = two_on_redis(None).await;
    let (a, b) = (&two.a, &two.b);
    let t1 = signed_in(a).await;
    let rt1 = t1["refresh_token"].as_str().unwrap();
    let t2 = refresh_at(&b.base, rt1).await.ok_json(StatusCode::OK);
    let rt2 = t2["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2, "rotated");
    assert_eq!(
        userinfo(&a.base, t2["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK,
        "the rotated access token works on the other instance"
    );
    // The old one, replayed on the other instance: refused, and the replay
    // ends the family (RFC 9700 §4.14.2) on both instances.
    oauth_error(
        &refresh_at(&a.base, rt1).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    oauth_error(
        &refresh_at(&b.base, rt2).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    for app in [a, b] {
        assert_eq!(
            userinfo(&app.base, t2["access_token"].as_str().unwrap())
                .await
                .status,
            StatusCode::UNAUTHORIZED,
            "{}",
            app.base
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_logout_on_one_instance_ends_the_tokens_on_the_other() {
    let two = two_on_redis(None).await;
    let (a, b) = (&two.a, &two.b);
    let t = signed_in(a).await;
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&b.base, at).await.status, StatusCode::OK);
    let r = send(user_agent().get(format!(
        "{}/oauth2/logout?id_token_hint={}&post_logout_redirect_uri={BYE}",
        a.base,
        t["id_token"].as_str().unwrap()
    )))
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(
        userinfo(&b.base, at).await.status,
        StatusCode::UNAUTHORIZED,
        "logged out on A, so dead on B"
    );
    oauth_error(
        &refresh_at(&b.base, t["refresh_token"].as_str().unwrap()).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

/// `authorize_url` without its `code_challenge` and `code_challenge_method`.
fn without_pkce(url: &str) -> String {
    let mut u = url::Url::parse(url).expect("url");
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut().clear().extend_pairs(kept);
    assert!(!u.as_str().contains("code_challenge"), "{u}");
    u.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_for_a_code_issued_without_a_challenge_is_refused() {
    let op = op().await;
    let (url, verifier) = authorize_url(&op.app.base, "web", &[]);
    let back = sign_in(&op.app, &without_pkce(&url)).await;
    let code = param(&back, "code").expect("a confidential client may skip PKCE");
    // RFC 9700 §2.1.1 / §4.8: a verifier where no challenge was sent is a
    // PKCE downgrade (an injected code): refused.
    let r = redeem_code(&op.app, &code, &verifier).await;
    oauth_error(&r, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap_or("")
            .contains("no code_challenge"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confidential_clients_code_flow_without_pkce_succeeds() {
    let op = op().await;
    let (url, _) = authorize_url(&op.app.base, "web", &[]);
    let back = sign_in(&op.app, &without_pkce(&url)).await;
    let code = param(&back, "code").expect("code");
    let t = token(
        &op.app.base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
        Some(("web", WEB_SECRET)),
    )
    .await
    .ok_json(StatusCode::OK);
    assert_eq!(jwt_claims(t["id_token"].as_str().unwrap())["sub"], ALICE_ID);
    assert_eq!(
        userinfo(&op.app.base, t["access_token"].as_str().unwrap())
            .await
            .json()["sub"],
        ALICE_ID
    );
    // The public client may not skip it (RFC 9700 §2.1.1).
    let (url, _) = authorize_url(&op.app.base, "spa", &[]);
    let r = send(user_agent().get(without_pkce(&url))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(
        param(&location(&r), "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_grant_defaults_to_interval_5_and_expires_in_600() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let defaults = ServeConfig::defaults();
    let op = op_with(
        StoreKind::Memory,
        |cfg| {
            cfg.device_interval = defaults.device_interval;
            cfg.device_code_ttl = defaults.device_code_ttl;
        },
        Some(clock.clone()),
    )
    .await;
    let d = device_start(&op.app.base, "TV").await;
    assert_eq!(d["interval"], 5, "{d}");
    assert_eq!(d["expires_in"], 600, "{d}");
    let dc = d["device_code"].as_str().unwrap();
    oauth_error(
        &device_poll(&op.app.base, dc).await,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
    );
    // The 5 s are enforced: 4 s on is too soon, then 10 s (the raised
    // interval) on is not.
    clock.advance_ms(4_000);
    oauth_error(
        &device_poll(&op.app.base, dc).await,
        StatusCode::BAD_REQUEST,
        "slow_down",
    );
    clock.advance_ms(10_000);
    oauth_error(
        &device_poll(&op.app.base, dc).await,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_code_is_pending_after_the_scan_until_the_phone_approves() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let op = op_with(StoreKind::Memory, |_| {}, Some(clock.clone())).await;
    let base = op.app.base.clone();
    let d = device_start(&base, "TV").await;
    let dc = d["device_code"].as_str().unwrap();
    let id = login_of(&d);
    let phone = Phone::sign_in(&base, ALICE).await;
    phone.scan_ok(&id).await;
    oauth_error(
        &device_poll(&base, dc).await,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
    );
    clock.advance_ms(2_000);
    oauth_error(
        &device_poll(&base, dc).await,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
    );
    phone.approve_ok(&id).await;
    clock.advance_ms(2_000);
    let t = device_poll(&base, dc).await.ok_json(StatusCode::OK);
    assert_eq!(jwt_claims(t["id_token"].as_str().unwrap())["sub"], ALICE_ID);
}

// ---- OpenAPI/limits (oidcdoc)

/// The schema `$ref` points at, or the schema itself.
fn resolve<'a>(api: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &api["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => schema,
    }
}

/// `/openapi.json` declares the OAuth answers as the code gives them: the
/// error codes as an enum, the token endpoint's 500, userinfo's 401 with
/// its challenge header (and a real 401 has that shape).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_declares_the_oauth_errors() {
    let op = op().await;
    let api = send(raw_client().get(op.app.url("/openapi.json")))
        .await
        .ok_json(StatusCode::OK);
    let body = &api["components"]["schemas"]["OAuthErrorBody"];
    let codes: Vec<&str> = resolve(&api, &body["properties"]["error"])["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("OAuthErrorBody.error is not an enum: {body}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for code in [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "authorization_pending",
        "slow_down",
        "access_denied",
        "expired_token",
        "temporarily_unavailable",
        "server_error",
    ] {
        assert!(codes.contains(&code), "{code} not in {codes:?}");
    }
    // A real refusal's code is one of them.
    let r = token(
        &op.app.base,
        &[("grant_type", "password")],
        Some(("web", WEB_SECRET)),
    )
    .await;
    oauth_error(&r, StatusCode::BAD_REQUEST, "unsupported_grant_type");
    let server_error = &api["paths"]["/oauth2/token"]["post"]["responses"]["500"];
    assert_eq!(
        server_error["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/OAuthErrorBody",
        "token's 500: {server_error}"
    );
    for m in ["get", "post"] {
        let u = &api["paths"]["/oauth2/userinfo"][m]["responses"]["401"];
        assert!(
            u["headers"].get("WWW-Authenticate").is_some(),
            "{m} userinfo 401 without its challenge: {u}"
        );
        let schema = resolve(&api, &u["content"]["application/json"]["schema"]);
        let allowed = &resolve(&api, &schema["properties"]["error"])["enum"];
        assert_eq!(allowed, &json!(["invalid_request", "invalid_token"]), "{u}");
    }
    // Client authentication: HTTP Basic, or none in the header (a public
    // client, or client_secret_post in the form).
    assert_eq!(
        api["components"]["securitySchemes"]["client_basic"]["scheme"],
        "basic"
    );
    for path in [
        "/oauth2/token",
        "/oauth2/revoke",
        "/oauth2/device_authorization",
    ] {
        assert_eq!(
            api["paths"][path]["post"]["security"],
            json!([{}, {"client_basic": []}]),
            "{path}"
        );
    }
    let none = send(raw_client().get(op.app.url("/oauth2/userinfo"))).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok()),
        Some("Bearer"),
        "no token: a challenge without an error code (RFC 6750 §3.1)"
    );
    assert_eq!(none.json()["error"], "invalid_request");
    let bad = userinfo(&op.app.base, "not-a-token").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.json()["error"], "invalid_token");
}

/// The address limits at the OAuth endpoints refuse like every limit does
/// (429, Retry-After, JSON), not as RFC 8628's per-device-code `slow_down`
/// 400 (issue 11: "429 always with Retry-After").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_endpoints_answer_429_with_retry_after_past_an_address_limit() {
    let op = op_with(
        StoreKind::Memory,
        |cfg| {
            cfg.rate_limit = vec!["create=1/min,burst=1,poll=1/min,burst=1"
                .parse()
                .expect("rate-limit spec")]
        },
        None,
    )
    .await;
    let start = || {
        send(
            raw_client()
                .post(op.app.url("/oauth2/device_authorization"))
                .form(&[("client_id", "tv"), ("scope", "openid")]),
        )
    };
    let first = start().await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_rate_limited(&start().await, "rate_limited");
    // The token endpoint's poll budget: one call, then the refusal.
    let poll = || {
        token(
            &op.app.base,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", "not-a-device-code"),
                ("client_id", "tv"),
            ],
            None,
        )
    };
    oauth_error(&poll().await, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_rate_limited(&poll().await, "slow_down");
}

/// A device authorization's scope must have RFC 6749 §3.3's syntax (what
/// `/openapi.json` declares): a malformed one is `invalid_scope`; unknown
/// but well-formed tokens are only left out of the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_device_scope_is_invalid_scope() {
    let op = op().await;
    let start = |scope: &'static str| {
        send(
            raw_client()
                .post(op.app.url("/oauth2/device_authorization"))
                .form(&[("client_id", "tv"), ("scope", scope)]),
        )
    };
    for bad in ["", "openid  profile", "openid\"", "openid é"] {
        oauth_error(&start(bad).await, StatusCode::BAD_REQUEST, "invalid_scope");
    }
    let ok = start("openid unknown-scope").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}
