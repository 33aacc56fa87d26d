//! Phone tokens that are JWTs from the site's identity provider (RFC 9068
//! access tokens, or plain OIDC access or ID tokens).
//!
//! Checks, in order, each refusal being `Invalid` (401):
//! the token's size ([`MAX_TOKEN_LEN`](crate::MAX_TOKEN_LEN)); the header's
//! `alg`, which must be one of the configured algorithms (never `none`,
//! never HMAC: configuration refuses them, so a public key can never be
//! used as an HMAC secret); `typ` when configured; the key, by `kid`, from
//! the provider's JWKS (`jwks`), which must be of the algorithm's type;
//! the signature; `iss` equal to the issuer; `aud` containing the audience;
//! `exp` and `nbf` against our clock with the configured leeway. Then the
//! user from the claims ([`ClaimMapping`]).
//!
//! Only an unreachable JWKS is `Unavailable` (503). A verified token is
//! cached by its SHA-256 until its `exp`, at most [`CACHE_MAX`].

use crate::cache::{token_key, VerifiedCache};
use crate::claims::ClaimMapping;
use crate::jwks::{JwksCache, JwksSource};
use crate::upstream::Upstream;
use async_trait::async_trait;
use jsonwebtoken::{Algorithm, Validation};
use qrlogin_core::{BackgroundTask, Clock, MobileVerifier, User, VerifyError};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The longest a verified JWT is trusted without checking it again.
pub const CACHE_MAX: Duration = Duration::from_secs(60);

/// `--mobile-jwt-*`.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The provider's issuer URL: every token's `iss` must equal it, and
    /// unless `jwks_url` is given, discovery is read from it.
    pub issuer: String,
    /// The JWKS URL, instead of discovery.
    pub jwks_url: Option<String>,
    /// Required in every token's `aud` (RFC 9068 §4: a token for another
    /// API must not be accepted here).
    pub audience: String,
    /// Accepted `alg`s; asymmetric only.
    pub algorithms: Vec<Algorithm>,
    /// Allowed clock skew for `exp` and `nbf`.
    pub leeway: Duration,
    /// When set, the header's `typ` must be this (e.g. `at+jwt`, compared
    /// case-insensitively, with or without the `application/` prefix).
    pub typ: Option<String>,
    pub claims: ClaimMapping,
}

/// The default `--mobile-jwt-algorithms`.
pub const DEFAULT_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// Parses `--mobile-jwt-algorithms`; refuses `none` and the HMAC family,
/// which a verifier holding only public keys must never accept.
pub fn parse_algorithms(list: &[String]) -> anyhow::Result<Vec<Algorithm>> {
    let mut out = Vec::new();
    for name in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if name.eq_ignore_ascii_case("none") {
            anyhow::bail!("--mobile-jwt-algorithms: `none` is never accepted");
        }
        let alg: Algorithm = name.parse().map_err(|_| {
            anyhow::anyhow!("--mobile-jwt-algorithms: unknown algorithm {name:?} (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)")
        })?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            anyhow::bail!(
                "--mobile-jwt-algorithms: {name} is a shared-secret algorithm; a verifier that only knows public keys must not accept it"
            );
        }
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "--mobile-jwt-algorithms: name at least one algorithm"
    );
    Ok(out)
}

pub struct JwtVerifier {
    settings: JwtSettings,
    jwks: Arc<JwksCache>,
    clock: Arc<dyn Clock>,
    cache: VerifiedCache,
    /// One `Validation` per accepted algorithm, built once.
    validations: Vec<(Algorithm, Validation)>,
}

/// What jsonwebtoken checks for `alg`: the signature, `iss` and `aud`.
fn validation(alg: Algorithm, settings: &JwtSettings) -> Validation {
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.set_issuer(&[&settings.issuer]);
    v.set_audience(&[&settings.audience]);
    // exp and nbf are checked in `check` against our clock, not the
    // library's reading of the system time.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.required_spec_claims = HashSet::from(["exp".to_string(), "iss".into(), "aud".into()]);
    v
}

impl JwtVerifier {
    pub fn new(
        settings: JwtSettings,
        upstream: Upstream,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        crate::upstream::check_url("--mobile-jwt-issuer", &settings.issuer)?;
        anyhow::ensure!(
            !settings.audience.trim().is_empty(),
            "--mobile-jwt-audience is required: the API identifier your provider puts in `aud`"
        );
        anyhow::ensure!(
            !settings.algorithms.is_empty(),
            "--mobile-jwt-algorithms is empty"
        );
        let source = match &settings.jwks_url {
            Some(u) => {
                crate::upstream::check_url("--mobile-jwks-url", u)?;
                JwksSource::Url(u.clone())
            }
            None => JwksSource::Discovery {
                issuer: settings.issuer.clone(),
            },
        };
        // Signatures are checked by ring where it can (crypto.rs).
        crate::crypto::install();
        let validations = settings
            .algorithms
            .iter()
            .map(|a| (*a, validation(*a, &settings)))
            .collect();
        Ok(Self {
            jwks: Arc::new(JwksCache::new(upstream, source)),
            validations,
            settings,
            clock,
            cache: VerifiedCache::new(),
        })
    }

    fn typ_ok(&self, typ: Option<&str>) -> bool {
        let Some(want) = &self.settings.typ else {
            return true;
        };
        let norm = |t: &str| {
            let t = t.to_ascii_lowercase();
            t.strip_prefix("application/")
                .map(str::to_string)
                .unwrap_or(t)
        };
        typ.is_some_and(|t| norm(t) == norm(want))
    }

    async fn check(&self, token: &str, now_ms: u64) -> Result<(User, u64), VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Invalid)?;
        if !self.settings.algorithms.contains(&header.alg) || !self.typ_ok(header.typ.as_deref()) {
            return Err(VerifyError::Invalid);
        }
        let key = self.jwks.key_for(header.alg, header.kid.as_deref()).await?;
        let v = self
            .validations
            .iter()
            .find(|(a, _)| *a == header.alg)
            .map(|(_, v)| v)
            .ok_or(VerifyError::Invalid)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, v)
            .map_err(|_| VerifyError::Invalid)?;
        let claims = data.claims;
        let now_s = now_ms / 1000;
        let leeway = self.settings.leeway.as_secs();
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(VerifyError::Invalid)?;
        if now_s >= exp.saturating_add(leeway) {
            return Err(VerifyError::Invalid);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_u64().ok_or(VerifyError::Invalid)?;
            if nbf > now_s.saturating_add(leeway) {
                return Err(VerifyError::Invalid);
            }
        }
        let user = self
            .settings
            .claims
            .user(&claims)
            .ok_or(VerifyError::Invalid)?;
        // Cached only until the real `exp`, never into the leeway.
        Ok((user, exp.saturating_mul(1000)))
    }
}

#[async_trait]
impl MobileVerifier for JwtVerifier {
    async fn verify(&self, bearer: &str) -> Result<User, VerifyError> {
        if bearer.len() > crate::MAX_TOKEN_LEN {
            return Err(VerifyError::Invalid);
        }
        let key = token_key(bearer);
        let now = self.clock.now_ms();
        if let Some(user) = self.cache.get(&key, now) {
            return Ok(user);
        }
        let (user, valid_until) = self.check(bearer, now).await?;
        let until = valid_until.min(now + CACHE_MAX.as_millis() as u64);
        self.cache.put(key, &user, now, until);
        Ok(user)
    }

    fn kind(&self) -> &'static str {
        "jwt"
    }

    fn background(&self) -> Option<BackgroundTask> {
        Some(self.jwks.refresher())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_refuse_none_and_hmac() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_algorithms(&s(&["RS256", "ES256", "RS256"])).unwrap(),
            vec![Algorithm::RS256, Algorithm::ES256]
        );
        for bad in ["none", "NONE", "HS256", "HS512", "XY999"] {
            assert!(parse_algorithms(&s(&[bad])).is_err(), "{bad}");
        }
        assert!(parse_algorithms(&s(&[])).is_err());
    }
}
