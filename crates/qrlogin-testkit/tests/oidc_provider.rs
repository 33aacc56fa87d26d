//! The OpenID provider harness against the real provider: what the spawner
//! reports is what the provider's discovery says, the tokens it mints are
//! accepted (and refused) by the provider's own JWKS, introspection and
//! userinfo as a production provider's would be, and rotation, the JWKS
//! counter, stop and restart do what verifier tests will rely on.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use qrlogin_testkit::OidcProvider;
use serde_json::{json, Value};

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

async fn jwks(op: &OidcProvider) -> JwkSet {
    serde_json::from_value(get_json(&op.jwks_url()).await).unwrap()
}

fn kids(set: &JwkSet) -> Vec<String> {
    set.keys
        .iter()
        .map(|k| k.common.key_id.clone().expect("a JWKS key without kid"))
        .collect()
}

fn kid_of(token: &str) -> String {
    decode_header(token)
        .unwrap()
        .kid
        .expect("a token without kid")
}

/// Verifies `token` as a resource server of [`OidcProvider::AUDIENCE`]
/// would: the key named by its kid in the JWKS fetched over HTTP, the
/// algorithm, the issuer, the audience, expiry.
async fn verify(op: &OidcProvider, token: &str, alg: Algorithm) -> Result<Value, String> {
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let set = jwks(op).await;
    let jwk = set.find(&kid).ok_or(format!("kid {kid} not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[op.issuer()]);
    validation.set_audience(&[OidcProvider::AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

async fn introspect_basic(op: &OidcProvider, token: &str) -> Value {
    let response = reqwest::Client::new()
        .post(op.introspection_url())
        .basic_auth(OidcProvider::CLIENT_ID, Some(OidcProvider::CLIENT_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn audiences(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
        other => panic!("aud is {other}"),
    }
}

#[tokio::test]
async fn discovery_names_the_endpoints_the_harness_reports() {
    let op = OidcProvider::start();
    let doc = get_json(&format!("{}/.well-known/openid-configuration", op.issuer())).await;
    assert_eq!(op.issuer(), format!("http://127.0.0.1:{}", op.port()));
    assert_eq!(doc["issuer"], op.issuer());
    assert_eq!(doc["jwks_uri"], op.jwks_url());
    assert_eq!(doc["introspection_endpoint"], op.introspection_url());
    assert_eq!(doc["userinfo_endpoint"], op.userinfo_url());
    for url in [op.jwks_url(), op.introspection_url(), op.userinfo_url()] {
        assert!(url.starts_with(&op.issuer()), "{url}");
    }
    let algs = doc["id_token_signing_alg_values_supported"].to_string();
    assert!(algs.contains("RS256") && algs.contains("ES256"), "{algs}");

    let set = jwks(&op).await;
    let algs: Vec<_> = set.keys.iter().map(|k| k.common.key_algorithm).collect();
    assert_eq!(set.keys.len(), 2, "one RS256 and one ES256 key: {algs:?}");
    for key in &set.keys {
        let json = serde_json::to_value(key).unwrap();
        assert!(json.get("d").is_none(), "a private key in the JWKS: {json}");
    }
}

#[tokio::test]
async fn a_jwt_token_is_an_rfc9068_token_verifiable_with_the_jwks() {
    let op = OidcProvider::start();
    let token = op.jwt_token("alice", "Alice Liddell").await;

    let header = decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert!(kids(&jwks(&op).await).contains(&kid_of(&token)));

    let claims = verify(&op, &token, Algorithm::RS256).await.unwrap();
    assert_eq!(claims["iss"], op.issuer());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], OidcProvider::CLIENT_ID);
    assert_eq!(claims["scope"], "openid profile");
    assert!(audiences(&claims).contains(&OidcProvider::AUDIENCE.to_owned()));
    assert!(claims["jti"].is_string() && claims["iat"].is_u64());
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 3600);

    // The check can fail: another audience, another issuer, another
    // algorithm are refused.
    let key = DecodingKey::from_jwk(jwks(&op).await.find(&kid_of(&token)).unwrap()).unwrap();
    let mut other_aud = Validation::new(Algorithm::RS256);
    other_aud.set_audience(&["https://elsewhere.test/api"]);
    assert!(decode::<Value>(&token, &key, &other_aud).is_err());
    let mut other_iss = Validation::new(Algorithm::RS256);
    other_iss.set_audience(&[OidcProvider::AUDIENCE]);
    other_iss.set_issuer(&["http://127.0.0.1:1"]);
    assert!(decode::<Value>(&token, &key, &other_iss).is_err());
    assert!(verify(&op, &token, Algorithm::ES256).await.is_err());
}

#[tokio::test]
async fn mint_gives_es256_tokens_and_the_asked_scope_and_lifetime() {
    let op = OidcProvider::start();
    let token = op
        .mint(json!({"sub": "carol", "format": "jwt", "alg": "ES256", "scope": "openid", "expires_in": 120}))
        .await;
    let header = decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let claims = verify(&op, &token, Algorithm::ES256).await.unwrap();
    assert_eq!(claims["sub"], "carol");
    assert_eq!(claims["scope"], "openid");
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 120);
}

#[tokio::test]
async fn introspection_says_active_for_an_opaque_token_until_it_is_revoked() {
    let op = OidcProvider::start();
    let token = op.opaque_token("bob", "Bob Dylan").await;
    assert!(decode_header(&token).is_err(), "not a JWT: {token}");

    let answer = introspect_basic(&op, &token).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["sub"], "bob");
    assert_eq!(answer["client_id"], OidcProvider::CLIENT_ID);
    assert_eq!(answer["iss"], op.issuer());
    assert_eq!(answer["token_type"], "Bearer");

    // client_secret_post is accepted as well.
    let post: Value = reqwest::Client::new()
        .post(op.introspection_url())
        .form(&[
            ("token", token.as_str()),
            ("client_id", OidcProvider::CLIENT_ID),
            ("client_secret", OidcProvider::CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(post["active"], true, "{post}");
    assert_eq!(post["sub"], "bob");

    // A wrong secret is refused, not answered.
    let wrong = reqwest::Client::new()
        .post(op.introspection_url())
        .basic_auth(OidcProvider::CLIENT_ID, Some("not-the-secret"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // Tokens it never issued are inactive.
    let unknown = introspect_basic(&op, "no-such-token-at-all-0123456789abcdef").await;
    assert_eq!(unknown, json!({"active": false}));

    op.revoke(&token).await;
    let answer = introspect_basic(&op, &token).await;
    assert_eq!(answer, json!({"active": false}));
}

#[tokio::test]
async fn userinfo_answers_the_registered_name_for_an_opaque_token() {
    let op = OidcProvider::start();
    let token = op.opaque_token("bob", "Bob Dylan").await;
    let client = reqwest::Client::new();
    let info: Value = client
        .get(op.userinfo_url())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], "bob", "{info}");
    assert_eq!(info["name"], "Bob Dylan");
    assert_eq!(info["preferred_username"], "bob");

    // Without a name the name is the account id; preferred_username as given.
    let plain = op
        .mint(json!({"sub": "dave", "format": "opaque", "preferred_username": "d"}))
        .await;
    let info: Value = client
        .get(op.userinfo_url())
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info,
        json!({"sub": "dave", "name": "dave", "preferred_username": "d"})
    );

    // A JWT for the resource server has an audience: userinfo refuses it, as
    // it does a token it does not know.
    let jwt = op.jwt_token("bob", "Bob Dylan").await;
    for bad in [jwt.as_str(), "no-such-token"] {
        let response = client
            .get(op.userinfo_url())
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{bad}");
    }

    // After a revocation, userinfo refuses the token too.
    op.revoke(&token).await;
    let response = client
        .get(op.userinfo_url())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn sign_uses_the_current_key_and_the_claims_verbatim() {
    let op = OidcProvider::start();
    let current = kid_of(&op.jwt_token("alice", "Alice").await);
    let claims = json!({
        "iss": "https://wrong-issuer.test",
        "sub": "alice",
        "aud": OidcProvider::AUDIENCE,
        "exp": 1,
    });
    let jwt = op.sign(json!({}), claims.clone()).await;
    let header = decode_header(&jwt).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), Some(current.as_str()));

    // Signed by the provider's key, but refused: expired, foreign issuer.
    let err = verify(&op, &jwt, Algorithm::RS256).await.unwrap_err();
    assert!(err.contains("Expired"), "{err}");
    let key = DecodingKey::from_jwk(jwks(&op).await.find(&current).unwrap()).unwrap();
    let mut signature_checked = Validation::new(Algorithm::RS256);
    signature_checked.validate_exp = false;
    signature_checked.validate_aud = false;
    signature_checked.required_spec_claims.clear();
    let decoded = decode::<Value>(&jwt, &key, &signature_checked).unwrap();
    assert_eq!(decoded.claims, claims, "nothing added to the claims");

    // ES256, a given kid, and a header member left out with null.
    let es = op
        .sign(
            json!({"alg": "ES256", "kid": "chosen", "typ": null}),
            json!({"sub": "x"}),
        )
        .await;
    let header = decode_header(&es).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some("chosen"));
    assert_eq!(header.typ, None);
}

#[tokio::test]
async fn public_jwk_is_the_current_jwks_entry_without_private_parts() {
    let op = OidcProvider::start();
    let set = get_json(&op.jwks_url()).await;
    for alg in ["RS256", "ES256"] {
        let jwk = op.public_jwk(alg).await;
        assert_eq!(jwk["alg"], alg);
        assert!(jwk.get("d").is_none(), "{jwk}");
        let listed = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == jwk["kid"])
            .unwrap_or_else(|| panic!("{jwk} not in {set}"));
        assert_eq!(listed, &jwk);
    }
}

#[tokio::test]
async fn rotate_replaces_the_keys_in_place() {
    let op = OidcProvider::start();
    let old_kids = kids(&jwks(&op).await);
    let old_token = op.jwt_token("alice", "Alice").await;
    let old_kid = kid_of(&old_token);
    let opaque = op.opaque_token("bob", "Bob").await;
    let port = op.port();

    op.rotate(true).await;
    let kept = kids(&jwks(&op).await);
    assert_eq!(kept.len(), 4, "{kept:?}");
    assert_eq!(&kept[2..], &old_kids[..], "new keys first, then the old");
    let new_token = op.jwt_token("alice", "Alice").await;
    assert_eq!(kid_of(&new_token), kept[0]);
    verify(&op, &old_token, Algorithm::RS256).await.unwrap();
    verify(&op, &new_token, Algorithm::RS256).await.unwrap();

    op.rotate(false).await;
    let fresh = kids(&jwks(&op).await);
    assert_eq!(fresh.len(), 2, "{fresh:?}");
    assert!(!fresh.contains(&old_kid), "the old kid is gone: {fresh:?}");
    assert!(
        !fresh.iter().any(|k| kept.contains(k)),
        "{fresh:?} {kept:?}"
    );
    let newest = op.jwt_token("alice", "Alice").await;
    assert!(fresh.contains(&kid_of(&newest)));
    assert!(verify(&op, &old_token, Algorithm::RS256).await.is_err());
    verify(&op, &newest, Algorithm::RS256).await.unwrap();
    let es = op
        .mint(json!({"sub": "alice", "format": "jwt", "alg": "ES256"}))
        .await;
    assert!(fresh.contains(&kid_of(&es)));
    assert_eq!(op.public_jwk("RS256").await["kid"], kid_of(&newest));

    // Same process, same port; tokens issued before still introspect.
    assert_eq!(op.port(), port);
    assert_eq!(op.issuer(), format!("http://127.0.0.1:{port}"));
    assert_eq!(introspect_basic(&op, &opaque).await["active"], true);
}

#[tokio::test]
async fn jwks_requests_counts_jwks_fetches_only() {
    let op = OidcProvider::start();
    let before = op.jwks_requests().await;
    get_json(&format!("{}/.well-known/openid-configuration", op.issuer())).await;
    op.jwt_token("alice", "Alice").await;
    assert_eq!(op.jwks_requests().await, before);
    get_json(&op.jwks_url()).await;
    get_json(&op.jwks_url()).await;
    assert_eq!(op.jwks_requests().await, before + 2);
}

#[tokio::test]
async fn client_credentials_at_the_token_endpoint_give_a_resource_jwt() {
    let op = OidcProvider::start();
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/token", op.issuer()))
        .basic_auth(OidcProvider::CLIENT_ID, Some(OidcProvider::CLIENT_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", OidcProvider::AUDIENCE),
            ("scope", "api"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    let claims = verify(&op, token, Algorithm::RS256).await.unwrap();
    assert_eq!(claims["sub"], OidcProvider::CLIENT_ID);
    assert_eq!(claims["scope"], "api");
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_serves_the_same_keys() {
    let mut op = OidcProvider::start();
    op.rotate(false).await; // the rotated keys are the persisted ones
    let issuer = op.issuer();
    let keys = get_json(&op.jwks_url()).await;
    let token = op.jwt_token("alice", "Alice").await;

    op.stop();
    assert!(!op.is_running());
    let err = reqwest::get(op.jwks_url()).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    op.stop(); // idempotent

    op.restart();
    assert!(op.is_running());
    assert_eq!(op.issuer(), issuer);
    assert_eq!(op.jwks_requests().await, 0, "counted since the restart");
    assert_eq!(get_json(&op.jwks_url()).await, keys);
    verify(&op, &token, Algorithm::RS256).await.unwrap();
    assert_eq!(op.jwks_requests().await, 2);

    // restart() also works on a running provider.
    op.restart();
    assert_eq!(get_json(&op.jwks_url()).await, keys);
}

#[tokio::test]
async fn drop_kills_the_provider_and_removes_its_state() {
    let op = OidcProvider::start();
    let dir = op.dir().to_path_buf();
    let jwks_url = op.jwks_url();
    assert!(dir.join("keys.json").is_file());
    drop(op);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let err = reqwest::get(jwks_url).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn two_providers_are_independent() {
    let a = OidcProvider::start();
    let b = OidcProvider::start();
    assert_ne!(a.issuer(), b.issuer());
    let ka = kids(&jwks(&a).await);
    let kb = kids(&jwks(&b).await);
    assert!(!ka.iter().any(|k| kb.contains(k)), "{ka:?} {kb:?}");
    let token = a.jwt_token("alice", "Alice").await;
    assert!(verify(&b, &token, Algorithm::RS256).await.is_err());
}
