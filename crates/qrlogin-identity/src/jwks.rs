//! The identity provider's signing keys, kept fresh.
//!
//! What the well-kept verifiers do (jwt-authorizer, the OIDC client
//! libraries), and what a thousand phones hitting us at once need:
//!
//! * Keys come from `jwks_uri` in the provider's OIDC discovery document
//!   (`{issuer}/.well-known/openid-configuration`, whose `issuer` must equal
//!   ours), or from a configured JWKS URL.
//! * The set is cached and replaced whole on every fetch, so a key removed
//!   from the provider's JWKS stops verifying after the next refresh.
//! * It is refreshed in the background when the answer's `Cache-Control:
//!   max-age` says so, clamped to [`MIN_FRESH`]..[`MAX_FRESH`]
//!   ([`DEFAULT_FRESH`] without one); a failed refresh keeps the last good
//!   set and retries sooner.
//! * A token whose `kid` is unknown triggers one refetch, at most every
//!   [`UNKNOWN_KID_INTERVAL`], single-flight: concurrent callers wait for
//!   the one fetch in progress instead of starting their own. So a key
//!   rotation costs one fetch however many phones arrive with the new key,
//!   and random `kid`s cannot turn us into a load generator.

use crate::upstream::Upstream;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use qrlogin_core::VerifyError;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The shortest time a fetched set is trusted, whatever the header says.
pub const MIN_FRESH: Duration = Duration::from_secs(60);
/// The longest, whatever the header says.
pub const MAX_FRESH: Duration = Duration::from_secs(24 * 3600);
/// Without a `Cache-Control: max-age`.
pub const DEFAULT_FRESH: Duration = Duration::from_secs(600);
/// At most one refetch for unknown `kid`s in this interval.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(10);
/// First retry after a failed background refresh (doubling up to a minute).
const RETRY_FIRST: Duration = Duration::from_secs(2);

/// One usable verification key.
pub struct Key {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one: the key is then only for that.
    pub alg: Option<Algorithm>,
    kind: KeyKind,
    pub decoding: DecodingKey,
}

/// What a key can verify, from its `kty` (and `crv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`: the key type
    /// must be the algorithm's (an RSA key never checks an HS256 or ES256
    /// signature), and a JWK that names its `alg` is for that one only.
    pub fn fits(&self, alg: Algorithm) -> bool {
        let kind_fits = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => self.kind == KeyKind::Rsa,
            Algorithm::ES256 => self.kind == KeyKind::EcP256,
            Algorithm::ES384 => self.kind == KeyKind::EcP384,
            Algorithm::EdDSA => self.kind == KeyKind::Ed25519,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => false,
        };
        kind_fits && self.alg.is_none_or(|a| a == alg)
    }
}

/// A fetched key set.
struct KeySet {
    keys: Vec<Arc<Key>>,
    by_kid: HashMap<String, Arc<Key>>,
    /// When the background task refreshes it.
    fresh_until: Instant,
}

/// Where the JWKS comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// OIDC discovery: `{issuer}/.well-known/openid-configuration` → `jwks_uri`.
    Discovery { issuer: String },
    /// A JWKS URL given directly.
    Url(String),
}

/// The cached key set and the single-flight refresh around it.
pub struct JwksCache {
    upstream: Upstream,
    source: JwksSource,
    /// `jwks_uri` once discovery has named it.
    jwks_uri: RwLock<Option<String>>,
    set: RwLock<Option<Arc<KeySet>>>,
    /// Bumped by every successful fetch, so a waiter can tell that the
    /// fetch it queued behind already happened.
    generation: AtomicU64,
    /// Held while fetching (single flight). Inside: the last on-demand
    /// refetch (for an unknown `kid`, or with no set at all) and whether it
    /// failed. Scheduled refreshes do not count: a key rotated just after
    /// one must still get its refetch.
    refresh: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl JwksCache {
    pub fn new(upstream: Upstream, source: JwksSource) -> Self {
        let jwks_uri = match &source {
            JwksSource::Url(u) => Some(u.clone()),
            JwksSource::Discovery { .. } => None,
        };
        Self {
            upstream,
            source,
            jwks_uri: RwLock::new(jwks_uri),
            set: RwLock::new(None),
            generation: AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(None),
        }
    }

    fn snapshot(&self) -> (Option<Arc<KeySet>>, u64) {
        let g = self.generation.load(Ordering::Acquire);
        let set = self.set.read().unwrap_or_else(|p| p.into_inner()).clone();
        (set, g)
    }

    /// The key that may verify a token with this header's `alg` and `kid`.
    ///
    /// `Invalid` when the (fresh) set has no such key; `Unavailable` when
    /// no set could be fetched at all, or the key is unknown and the
    /// refetch it needed failed.
    pub async fn key_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Arc<Key>, VerifyError> {
        let (set, generation) = self.snapshot();
        if let Some(set) = &set {
            if let Some(k) = find(set, alg, kid) {
                return Ok(k);
            }
        }
        // Unknown kid, or nothing fetched yet: one refetch, single-flight.
        let failed = self.refetch_after(generation, set.is_none()).await;
        let (set, _) = self.snapshot();
        match set.as_deref().and_then(|s| find(s, alg, kid)) {
            Some(k) => Ok(k),
            None if failed || set.is_none() => Err(VerifyError::Unavailable(
                "JWKS: could not fetch the provider's keys".into(),
            )),
            None => Err(VerifyError::Invalid),
        }
    }

    /// Fetches again unless another caller fetched since `seen` (we
    /// queued behind that fetch) or the last on-demand refetch is younger
    /// than [`UNKNOWN_KID_INTERVAL`] ([`RETRY_FIRST`] while there is no set
    /// at all, so a provider that comes back is noticed soon). Returns
    /// whether the last attempt failed.
    async fn refetch_after(&self, seen: u64, empty: bool) -> bool {
        let mut last = self.refresh.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return false;
        }
        let interval = if empty {
            RETRY_FIRST
        } else {
            UNKNOWN_KID_INTERVAL
        };
        if let Some((at, failed)) = *last {
            if at.elapsed() < interval {
                return failed;
            }
        }
        let ok = self.fetch().await.is_ok();
        *last = Some((Instant::now(), !ok));
        !ok
    }

    /// Background refresh: keeps the set fresh for as long as the service
    /// runs (the builder spawns it; it holds only a weak reference, so it
    /// ends when the verifier is dropped).
    pub fn refresher(self: &Arc<Self>) -> qrlogin_core::BackgroundTask {
        let weak = Arc::downgrade(self);
        Box::pin(async move {
            let mut retry = RETRY_FIRST;
            loop {
                let Some(this) = weak.upgrade() else { return };
                let wait = {
                    let (set, _) = this.snapshot();
                    match set {
                        Some(s) => s.fresh_until.saturating_duration_since(Instant::now()),
                        None => Duration::ZERO,
                    }
                };
                drop(this);
                tokio::time::sleep(wait).await;
                let Some(this) = weak.upgrade() else { return };
                let ok = {
                    let _flight = this.refresh.lock().await;
                    // Someone (an unknown kid) may have just refreshed it.
                    let (set, _) = this.snapshot();
                    set.is_some_and(|s| s.fresh_until > Instant::now())
                        || this.fetch().await.is_ok()
                };
                drop(this);
                if ok {
                    retry = RETRY_FIRST;
                } else {
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(60));
                }
            }
        })
    }

    /// One fetch of the key set (and, first, of discovery when needed).
    async fn fetch(&self) -> Result<(), ()> {
        let r = self.fetch_inner().await;
        let outcome = if r.is_ok() { "ok" } else { "error" };
        metrics::counter!("qrlogin_jwks_fetches_total", "outcome" => outcome).increment(1);
        match r {
            Ok(set) => {
                tracing::debug!(keys = set.keys.len(), "JWKS fetched");
                *self.set.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(set));
                self.generation.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                tracing::warn!("JWKS refresh failed (keeping the last good keys): {e}");
                Err(())
            }
        }
    }

    async fn fetch_inner(&self) -> Result<KeySet, String> {
        let uri = self
            .jwks_uri
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let uri = match uri {
            Some(u) => u,
            None => {
                let JwksSource::Discovery { issuer } = &self.source else {
                    return Err("no JWKS URL".into());
                };
                let u = self.discover(issuer).await?;
                *self.jwks_uri.write().unwrap_or_else(|p| p.into_inner()) = Some(u.clone());
                u
            }
        };
        let (status, headers, body) = self
            .upstream
            .json(self.upstream.client().get(&uri), "JWKS")
            .await
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("JWKS answered {status}"));
        }
        let body = body.ok_or("JWKS answer is not a JSON object")?;
        let Some(Value::Array(raw)) = body.get("keys") else {
            return Err("JWKS answer has no \"keys\" array".into());
        };
        let keys: Vec<Arc<Key>> = raw.iter().filter_map(parse_key).map(Arc::new).collect();
        if keys.is_empty() && !raw.is_empty() {
            return Err("JWKS holds no usable signing key".into());
        }
        let by_kid = keys
            .iter()
            .filter_map(|k| k.kid.clone().map(|kid| (kid, k.clone())))
            .collect();
        let fresh = max_age(&headers)
            .unwrap_or(DEFAULT_FRESH)
            .clamp(MIN_FRESH, MAX_FRESH);
        Ok(KeySet {
            keys,
            by_kid,
            fresh_until: Instant::now() + fresh,
        })
    }

    /// `jwks_uri` from the discovery document, whose `issuer` must be ours
    /// (OpenID Connect Discovery §4.3: a document naming another issuer is
    /// not this provider's).
    async fn discover(&self, issuer: &str) -> Result<String, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let (status, _, body) = self
            .upstream
            .json(self.upstream.client().get(&url), "OIDC discovery")
            .await
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("OIDC discovery answered {status}"));
        }
        let body = body.ok_or("OIDC discovery answer is not a JSON object")?;
        match body.get("issuer").and_then(Value::as_str) {
            Some(i) if i == issuer => {}
            Some(_) => return Err("OIDC discovery names another issuer".into()),
            None => return Err("OIDC discovery has no issuer".into()),
        }
        match body.get("jwks_uri").and_then(Value::as_str) {
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => Ok(u.to_string()),
            _ => Err("OIDC discovery has no usable jwks_uri".into()),
        }
    }
}

fn find(set: &KeySet, alg: Algorithm, kid: Option<&str>) -> Option<Arc<Key>> {
    match kid {
        Some(kid) => set.by_kid.get(kid).filter(|k| k.fits(alg)).cloned(),
        // No kid: only unambiguous — exactly one key fits the algorithm.
        None => {
            let mut fitting = set.keys.iter().filter(|k| k.fits(alg));
            match (fitting.next(), fitting.next()) {
                (Some(k), None) => Some(k.clone()),
                _ => None,
            }
        }
    }
}

/// A JWK we can verify with: a signature key (no `use`, or `use: sig`) of
/// an asymmetric type. Symmetric (`oct`) keys in a public JWKS are ignored:
/// a public HMAC key would let anyone sign.
fn parse_key(raw: &Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(raw.clone()).ok()?;
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::EcP256,
            EllipticCurve::P384 => KeyKind::EcP384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            KeyKind::Ed25519
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(signature_alg(a)?),
    };
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        decoding,
    })
}

fn signature_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// `max-age` of a `Cache-Control` header (`no-store`/`no-cache` count as 0,
/// which the clamp turns into [`MIN_FRESH`]).
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    let mut age = None;
    for d in v.split(',').map(str::trim) {
        let d = d.to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = d.strip_prefix("max-age=") {
            age = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, CACHE_CONTROL};
    use serde_json::json;

    fn cc(v: &str) -> Option<Duration> {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        max_age(&h)
    }

    #[test]
    fn cache_control_is_read_and_clamped_by_the_caller() {
        assert_eq!(cc("public, max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(cc("no-store"), Some(Duration::ZERO));
        assert_eq!(cc("public"), None);
        assert_eq!(cc("max-age=junk"), None);
        assert_eq!(max_age(&HeaderMap::new()), None);
    }

    #[test]
    fn symmetric_and_encryption_keys_are_not_used() {
        assert!(parse_key(&json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"})).is_none());
        let rsa = json!({"kty": "RSA", "kid": "r", "use": "enc",
            "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
        assert!(parse_key(&rsa).is_none());
        let mut sig = rsa.clone();
        sig["use"] = json!("sig");
        let k = parse_key(&sig).expect("an RSA signature key");
        assert!(k.fits(Algorithm::RS256));
        assert!(!k.fits(Algorithm::HS256), "never HMAC with a public key");
        assert!(!k.fits(Algorithm::ES256));
        let mut pinned = sig.clone();
        pinned["alg"] = json!("RS384");
        let k = parse_key(&pinned).unwrap();
        assert!(k.fits(Algorithm::RS384) && !k.fits(Algorithm::RS256));
    }
}
