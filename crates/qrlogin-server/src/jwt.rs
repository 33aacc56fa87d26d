//! JWT web sessions (`--session-format jwt`): the browser gets a signed JWT
//! instead of the opaque session token, and `/.well-known/jwks.json`
//! publishes the public key so other services can verify it offline.
//!
//! One algorithm, pinned: ES256 (ECDSA P-256, SHA-256). It is the asymmetric
//! JWT algorithm with the widest support among verifiers (API gateways,
//! browsers' WebCrypto, every JOSE library), its keys are small, and an
//! asymmetric key means integrators only ever hold the public half. A token
//! whose header names any other algorithm (`none`, `HS256` with our public
//! key as the "secret", …) is refused before its signature is looked at.
//!
//! A JWT still names a server-side session record (`sid`): redeem creates
//! the record exactly as in opaque mode, and `GET /v1/session` checks it, so
//! logout revokes the JWT for qrlogin itself. Verifiers that only check the
//! signature cannot see a logout (docs/SECURITY.md).

pub use crate::keys::{KeyError, SigningKey, ALGORITHM};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::Validation;
use qrlogin_core::{SessionRef, User};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The longest token [`JwtSessions::verify`] looks at.
const MAX_TOKEN_LEN: usize = 4096;

/// The claims of a qrlogin session JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Who issued it: `--jwt-issuer`, by default the public URL.
    pub iss: String,
    /// The user's id, as the phone's verified credential gave it.
    pub sub: String,
    /// The user's display name.
    pub name: String,
    /// `--jwt-audience`, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds: the server-side session's end (rounded down).
    pub exp: u64,
    /// The server-side session record this JWT belongs to
    /// ([`SessionRef`] text: `<login id>.<sha256 hex of the opaque token>`);
    /// logout deletes that record. Holds no secret.
    pub sid: String,
    /// The token's unique id (the same value as `sid`: one JWT per session),
    /// for verifiers that keep deny-lists by `jti`.
    pub jti: String,
}

/// A verified session JWT: its claims and the session record it names.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: SessionClaims,
    pub session: SessionRef,
}

/// Any reason a presented JWT is not accepted. Deliberately one value: the
/// caller answers 401 whatever it was, and nothing about the token is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid session JWT")]
pub struct Invalid;

/// The signing key (shared with the OpenID Provider's ID tokens), and the
/// pinned verification rules of session JWTs.
pub struct JwtSessions {
    key: Arc<SigningKey>,
    issuer: String,
    audience: Option<String>,
    validation: Validation,
}

impl fmt::Debug for JwtSessions {
    /// Never prints the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSessions")
            .field("alg", &ALGORITHM)
            .field("kid", &self.key.kid())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl JwtSessions {
    /// Session JWTs signed with the key in a PEM file (see [`SigningKey::from_file`]).
    pub fn from_file(
        path: &Path,
        issuer: String,
        audience: Option<String>,
    ) -> Result<Self, KeyError> {
        Ok(Self::new(
            Arc::new(SigningKey::from_file(path)?),
            issuer,
            audience,
        ))
    }

    /// Session JWTs signed with a PEM key (see [`SigningKey::from_pem`]).
    pub fn from_pem(pem: &str, issuer: String, audience: Option<String>) -> Result<Self, KeyError> {
        Ok(Self::new(
            Arc::new(SigningKey::from_pem(pem)?),
            issuer,
            audience,
        ))
    }

    /// Session JWTs signed with a fresh key (see [`SigningKey::generate`]).
    pub fn generate(issuer: String, audience: Option<String>) -> Result<Self, KeyError> {
        Ok(Self::new(
            Arc::new(SigningKey::generate()?),
            issuer,
            audience,
        ))
    }

    /// Session JWTs signed with `key`, issued by `issuer`.
    pub fn new(key: Arc<SigningKey>, issuer: String, audience: Option<String>) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        // Expiry is checked against the service's clock (DECISIONS §1), in
        // `verify`, not against the library's own reading of the system time.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_issuer(&[&issuer]);
        // jsonwebtoken enforces only these spec claims; `iat`, `sid` and
        // `name` are required by the typed `SessionClaims` instead.
        let mut required = vec!["exp", "iss", "sub"];
        match &audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Self {
            key,
            issuer,
            audience,
            validation,
        }
    }

    /// The signing key.
    pub fn key(&self) -> &Arc<SigningKey> {
        &self.key
    }

    /// The key id (RFC 7638 SHA-256 thumbprint of the public key).
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key as a JWK set, what `/.well-known/jwks.json` serves.
    pub fn jwks(&self) -> &JwkSet {
        self.key.jwks()
    }

    /// Signs the JWT for a session just created by redeem. `now_ms` is the
    /// time the store was given, `expires_at_ms` the record's end, so the JWT
    /// never outlives its record.
    pub fn issue(
        &self,
        session: &SessionRef,
        user: &User,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<String, KeyError> {
        let sid = session.to_string();
        let claims = SessionClaims {
            iss: self.issuer.clone(),
            sub: user.id.clone(),
            name: user.name.clone(),
            aud: self.audience.clone(),
            iat: now_ms / 1000,
            exp: expires_at_ms / 1000,
            jti: sid.clone(),
            sid,
        };
        self.key.sign(&claims, "JWT")
    }

    /// Checks a presented JWT: the header's `alg` is ES256 and its `kid` is
    /// ours, the signature verifies with our key, `iss` (and `aud` when
    /// configured) match, `exp` is after `now_ms`, and `sid` names a session
    /// record. Whether that record still exists (logout) is the caller's
    /// store lookup.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Verified, Invalid> {
        // Ours are ~600 bytes; anything far longer is refused before any
        // decoding or signature check is spent on it.
        if token.len() > MAX_TOKEN_LEN {
            return Err(Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Invalid)?;
        if header.alg != ALGORITHM || header.kid.as_deref() != Some(self.key.kid()) {
            return Err(Invalid);
        }
        let data =
            jsonwebtoken::decode::<SessionClaims>(token, self.key.decoding(), &self.validation)
                .map_err(|_| Invalid)?;
        let claims = data.claims;
        if claims.exp.saturating_mul(1000) <= now_ms {
            return Err(Invalid);
        }
        let session = claims.sid.parse::<SessionRef>().map_err(|_| Invalid)?;
        Ok(Verified { claims, session })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use p256::pkcs8::EncodePrivateKey as _;
    use qrlogin_core::{LoginId, SessionToken};

    const ISS: &str = "https://login.example";
    const NOW: u64 = 1_800_000_000_000;
    const HOUR: u64 = 3_600_000;

    // A P-256 key in SEC1 PEM, as `openssl ecparam -name prime256v1
    // -genkey -noout` writes it; test-only, signs nothing real. The test
    // re-encodes it as PKCS#8 (what `openssl genpkey` writes).
    const SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIJCE/Tl2bD7J+hsI/C6TEdIo78X96ZK8yPGqfRuz/QNboAoGCCqGSM49
AwEHoUQDQgAEzm2JykctIBVlWrsAmzBBjUz5euUUWD/W0NNI1S+u5D59naOsrj7S
KnRGssNo5umAD3RJnaArVH8x2/W57E0hgQ==
-----END EC PRIVATE KEY-----
";

    fn user() -> User {
        User {
            id: "u-alice".into(),
            name: "Alice".into(),
        }
    }

    fn keys() -> JwtSessions {
        JwtSessions::generate(ISS.into(), None).expect("key")
    }

    fn session() -> SessionRef {
        SessionToken::new_for(LoginId::random()).session_ref()
    }

    fn b64json(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_claims() {
        let k = keys();
        let s = session();
        let jwt = k.issue(&s, &user(), NOW, NOW + HOUR).expect("sign");
        let v = k.verify(&jwt, NOW + 1000).expect("valid");
        assert_eq!(v.session, s);
        assert_eq!(v.claims.iss, ISS);
        assert_eq!(v.claims.sub, "u-alice");
        assert_eq!(v.claims.name, "Alice");
        assert_eq!(v.claims.iat, NOW / 1000);
        assert_eq!(v.claims.exp, (NOW + HOUR) / 1000);
        assert_eq!(v.claims.sid, s.to_string());
        assert_eq!(v.claims.jti, v.claims.sid);
        assert_eq!(v.claims.aud, None);
        let header = jsonwebtoken::decode_header(&jwt).expect("header");
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(k.kid()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
    }

    #[test]
    fn pem_keys_load_in_both_encodings_with_the_same_kid() {
        let sec1 = JwtSessions::from_pem(SEC1_PEM, ISS.into(), None).expect("sec1");
        let key = p256::SecretKey::from_sec1_pem(SEC1_PEM).expect("parse");
        let pkcs8 = key
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .expect("pkcs8");
        let from_pkcs8 = JwtSessions::from_pem(&pkcs8, ISS.into(), None).expect("pkcs8");
        assert_eq!(sec1.kid(), from_pkcs8.kid());
        // A token of one verifies with the other: same key.
        let s = session();
        let jwt = sec1.issue(&s, &user(), NOW, NOW + HOUR).expect("sign");
        assert!(from_pkcs8.verify(&jwt, NOW).is_ok());
        // The kid is the RFC 7638 thumbprint: SHA-256 of the canonical
        // {"crv","kty","x","y"} member set, computed here by hand.
        let jwk = serde_json::to_value(&sec1.jwks().keys[0]).expect("json");
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().expect("x"),
            jwk["y"].as_str().expect("y")
        );
        use sha2_hash::digest;
        assert_eq!(
            sec1.kid(),
            URL_SAFE_NO_PAD.encode(digest(canonical.as_bytes()))
        );
    }

    /// SHA-256 through qrlogin-core's hash type (no extra dev-dependency).
    mod sha2_hash {
        pub fn digest(b: &[u8]) -> [u8; 32] {
            *qrlogin_core::SecretHash::of(b).as_bytes()
        }
    }

    #[test]
    fn the_jwk_set_is_public_only_and_complete() {
        let k = JwtSessions::from_pem(SEC1_PEM, ISS.into(), None).expect("key");
        let set = serde_json::to_value(k.jwks()).expect("json");
        let keys = set["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 1);
        let jwk = keys[0].as_object().expect("object");
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], k.kid());
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().expect("x"))
                .expect("b64")
                .len(),
            32
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["y"].as_str().expect("y"))
                .expect("b64")
                .len(),
            32
        );
        assert!(!jwk.contains_key("d"), "private key published");
        let debug = format!("{k:?}");
        assert!(debug.contains("redacted"));
        let d = p256::SecretKey::from_sec1_pem(SEC1_PEM)
            .expect("parse")
            .to_bytes();
        assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(d)));
    }

    #[test]
    fn bad_key_files_are_refused_without_echoing_them() {
        for bad in [
            "",
            "not a key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            // An Ed25519 key (PKCS#8): right format, wrong algorithm.
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOKw7/f4BCsLnNiYCDZ6n2Fq+tpEmEi/kO9iZvnjec8b\n-----END PRIVATE KEY-----\n",
        ] {
            let e = JwtSessions::from_pem(bad, ISS.into(), None).expect_err("accepted");
            assert!(matches!(e, KeyError::Format), "{bad:?}: {e}");
        }
        let missing = JwtSessions::from_file(Path::new("/nonexistent/jwt.pem"), ISS.into(), None)
            .expect_err("missing file");
        assert!(missing.to_string().contains("/nonexistent/jwt.pem"));
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(keys().kid(), keys().kid());
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let ours = keys();
        let theirs = keys();
        let jwt = theirs
            .issue(&session(), &user(), NOW, NOW + HOUR)
            .expect("sign");
        assert_eq!(ours.verify(&jwt, NOW).err(), Some(Invalid));
        // Even when it claims our kid.
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(ours.kid().into());
        let claims = ours
            .verify(
                &ours
                    .issue(&session(), &user(), NOW, NOW + HOUR)
                    .expect("sign"),
                NOW,
            )
            .expect("valid")
            .claims;
        let forged = jsonwebtoken::encode(&header, &claims, theirs.key().encoding()).expect("sign");
        assert_eq!(ours.verify(&forged, NOW).err(), Some(Invalid));
    }

    #[test]
    fn alg_none_and_alg_confusion_are_refused() {
        let k = keys();
        let jwt = k.issue(&session(), &user(), NOW, NOW + HOUR).expect("sign");
        let payload = jwt.split('.').nth(1).expect("payload");
        // `alg: none`, with and without a signature.
        let none = b64json(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": k.kid()}));
        assert_eq!(
            k.verify(&format!("{none}.{payload}."), NOW).err(),
            Some(Invalid)
        );
        assert_eq!(
            k.verify(&format!("{none}.{payload}"), NOW).err(),
            Some(Invalid)
        );
        // HS256 keyed with our public JWK's bytes: the classic confusion.
        let public = serde_json::to_vec(k.jwks()).expect("json");
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(k.kid().into());
        let claims = k.verify(&jwt, NOW).expect("valid").claims;
        let hs = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&public))
            .expect("sign");
        assert_eq!(k.verify(&hs, NOW).err(), Some(Invalid));
        // Our own signature under a header that names another algorithm.
        let sig = jwt.split('.').nth(2).expect("sig");
        let es384 = b64json(&serde_json::json!({"alg": "ES384", "typ": "JWT", "kid": k.kid()}));
        assert_eq!(
            k.verify(&format!("{es384}.{payload}.{sig}"), NOW).err(),
            Some(Invalid)
        );
    }

    #[test]
    fn expired_tokens_are_refused_at_the_edge() {
        let k = keys();
        let jwt = k.issue(&session(), &user(), NOW, NOW + HOUR).expect("sign");
        assert!(k.verify(&jwt, NOW + HOUR - 1).is_ok());
        assert_eq!(k.verify(&jwt, NOW + HOUR).err(), Some(Invalid));
        assert_eq!(k.verify(&jwt, NOW + 10 * HOUR).err(), Some(Invalid));
    }

    #[test]
    fn wrong_issuer_or_audience_is_refused() {
        let other =
            JwtSessions::from_pem(SEC1_PEM, "https://evil.example".into(), None).expect("key");
        let ours = JwtSessions::from_pem(SEC1_PEM, ISS.into(), None).expect("key");
        // Same key, same kid: only the issuer differs.
        let jwt = other
            .issue(&session(), &user(), NOW, NOW + HOUR)
            .expect("sign");
        assert_eq!(ours.verify(&jwt, NOW).err(), Some(Invalid));

        let with_aud =
            JwtSessions::from_pem(SEC1_PEM, ISS.into(), Some("shop".into())).expect("key");
        let wrong_aud =
            JwtSessions::from_pem(SEC1_PEM, ISS.into(), Some("bank".into())).expect("key");
        let jwt = with_aud
            .issue(&session(), &user(), NOW, NOW + HOUR)
            .expect("sign");
        let v = with_aud.verify(&jwt, NOW).expect("valid");
        assert_eq!(v.claims.aud.as_deref(), Some("shop"));
        assert_eq!(wrong_aud.verify(&jwt, NOW).err(), Some(Invalid));
        // A token without `aud` where one is required.
        let no_aud = ours
            .issue(&session(), &user(), NOW, NOW + HOUR)
            .expect("sign");
        assert_eq!(with_aud.verify(&no_aud, NOW).err(), Some(Invalid));
    }

    #[test]
    fn tampered_or_malformed_tokens_are_refused() {
        let k = keys();
        let jwt = k.issue(&session(), &user(), NOW, NOW + HOUR).expect("sign");
        let parts: Vec<&str> = jwt.split('.').collect();
        let mut claims = k.verify(&jwt, NOW).expect("valid").claims;
        claims.sub = "u-bob".into();
        let payload = b64json(&serde_json::to_value(&claims).expect("json"));
        let swapped = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(k.verify(&swapped, NOW).err(), Some(Invalid));
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig");
        sig[10] ^= 1;
        let bad_sig = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(k.verify(&bad_sig, NOW).err(), Some(Invalid));
        // A string `exp` (the type confusion of GHSA-h395-gr6q-cpjc).
        let mut raw: serde_json::Value = serde_json::to_value(&claims).expect("json");
        raw["exp"] = "99999999999".into();
        let header = jsonwebtoken::decode_header(&jwt).expect("header");
        let typed = jsonwebtoken::encode(&header, &raw, k.key().encoding()).expect("sign");
        assert_eq!(k.verify(&typed, NOW).err(), Some(Invalid));
        // A valid signature over a `sid` that names no session record.
        raw["exp"] = ((NOW + HOUR) / 1000).into();
        raw["sid"] = "not-a-session".into();
        let bad_sid = jsonwebtoken::encode(&header, &raw, k.key().encoding()).expect("sign");
        assert_eq!(k.verify(&bad_sid, NOW).err(), Some(Invalid));
        // Validly signed but oversized (a padded claim): refused unread.
        raw["sid"] = claims.sid.clone().into();
        raw["pad"] = "p".repeat(MAX_TOKEN_LEN).into();
        let long = jsonwebtoken::encode(&header, &raw, k.key().encoding()).expect("sign");
        assert!(long.len() > MAX_TOKEN_LEN);
        assert_eq!(k.verify(&long, NOW).err(), Some(Invalid));
        raw["pad"] = "p".into();
        let short = jsonwebtoken::encode(&header, &raw, k.key().encoding()).expect("sign");
        assert!(
            k.verify(&short, NOW).is_ok(),
            "the same claims, short, verify"
        );
        for junk in [
            "",
            ".",
            "..",
            "a.b.c",
            &parts[..2].join("."),
            "\u{0}.\u{1}.\u{2}",
        ] {
            assert_eq!(k.verify(junk, NOW).err(), Some(Invalid), "{junk:?}");
        }
    }
}
