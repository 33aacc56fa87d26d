//! `qrlogin-bench idp`: a tiny OpenID provider for measuring qrlogin with a
//! real phone-token verifier (`qrlogin serve --mobile-verifier jwt`).
//!
//! At start it generates one signing key (RS256: RSA-2048, the most common
//! choice of identity providers; or ES256: P-256) and serves, on loopback:
//!
//! * `GET /.well-known/openid-configuration`: discovery, whose `issuer` is
//!   `http://127.0.0.1:PORT` (what `--mobile-jwt-issuer` must say) and whose
//!   `jwks_uri` is `/jwks.json`;
//! * `GET /jwks.json`: the public key (with its `kid`), `Cache-Control:
//!   max-age=3600`;
//! * `GET /bench/tokens?count=N`: N access tokens, one per line, for the
//!   load generator (not an OAuth endpoint: the phones of a benchmark do
//!   not sign in).
//!
//! Token `i` is the access token of simulated phone user `u-bench-{i}`
//! (RFC 9068 shape: header `typ: at+jwt` and `kid`; claims `iss`, `sub`,
//! `aud`, `exp` = now + 1 h, `iat`, `jti`, `client_id`, `scope`, `name`).
//! Tokens are minted once and kept, so every run asks for the same list
//! (`measure.sh` starts a fresh server per run, whose verified-token cache
//! is empty); minting RSA signatures is the slow part (see [`mint_range`]),
//! so `--tokens N` mints them before the first line is printed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

/// The audience the tokens are for, unless told otherwise; give the same
/// to `qrlogin serve --mobile-jwt-audience`.
pub const DEFAULT_AUDIENCE: &str = "qrlogin-bench";

/// The most tokens one `GET /bench/tokens` may ask for.
pub const MAX_TOKENS: usize = 1_000_000;

/// The signing algorithm of the provider's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "UPPERCASE")]
pub enum IdpAlg {
    /// RSA-2048, PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl IdpAlg {
    pub fn jwt(self) -> Algorithm {
        match self {
            IdpAlg::Rs256 => Algorithm::RS256,
            IdpAlg::Es256 => Algorithm::ES256,
        }
    }
}

/// The provider: its key, its documents, and the tokens minted so far.
pub struct Idp {
    issuer: String,
    audience: String,
    alg: IdpAlg,
    kid: String,
    signer: Signer,
    /// The encoded JWS header, the same for every token.
    header_b64: String,
    discovery: Bytes,
    jwks: Bytes,
    /// Seconds since the epoch at start: every token's `iat`; `exp` is an
    /// hour later (a typical access-token lifetime).
    issued_at: u64,
    tokens: tokio::sync::Mutex<Vec<String>>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    exp: u64,
    iat: u64,
    jti: String,
    client_id: &'static str,
    scope: &'static str,
    name: String,
}

/// Lifetime of a minted token, seconds.
pub const TOKEN_LIFETIME: u64 = 3600;

impl Idp {
    /// A provider for `issuer` with a freshly generated key.
    pub fn generate(issuer: &str, audience: &str, alg: IdpAlg) -> anyhow::Result<Idp> {
        // jsonwebtoken needs a crypto provider installed (an error only
        // means one already is).
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let (key, signer) = generate_key(alg)?;
        let kid = format!("bench-{}-{:08x}", alg_name(alg), rand::random::<u32>());
        let mut header = Header::new(alg.jwt());
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.clone());
        let header_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        let mut jwk = Jwk::from_encoding_key(&key, alg.jwt())?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match alg {
            IdpAlg::Rs256 => KeyAlgorithm::RS256,
            IdpAlg::Es256 => KeyAlgorithm::ES256,
        });
        let jwks = serde_json::to_vec(&JwkSet { keys: vec![jwk] })?;
        let issuer = issuer.trim_end_matches('/').to_string();
        let discovery = serde_json::to_vec(&serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks.json"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [alg_name(alg)],
        }))?;
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Idp {
            issuer,
            audience: audience.to_string(),
            alg,
            kid,
            signer,
            header_b64,
            discovery: discovery.into(),
            jwks: jwks.into(),
            issued_at,
            tokens: tokio::sync::Mutex::new(Vec::new()),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn alg(&self) -> IdpAlg {
        self.alg
    }

    /// The access token of simulated phone user `i`: what
    /// `jsonwebtoken::encode` makes, but with the key parsed once (encode
    /// parses the PKCS#1 DER and precomputes the CRT values on every call,
    /// which tripled the cost of an RS256 token).
    pub fn mint(&self, i: u64) -> anyhow::Result<String> {
        let claims = Claims {
            iss: &self.issuer,
            sub: format!("u-bench-{i}"),
            aud: &self.audience,
            exp: self.issued_at + TOKEN_LIFETIME,
            iat: self.issued_at,
            jti: format!("{}-{i}", self.kid),
            client_id: "qrlogin-bench-phone-app",
            scope: "openid profile",
            name: format!("Bench user {i}"),
        };
        let mut jwt = self.header_b64.clone();
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&claims)?, &mut jwt);
        let sig = self.signer.sign(jwt.as_bytes())?;
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut jwt);
        Ok(jwt)
    }

    /// Tokens `start..end`, minted on all cores (an RSA-2048 signature
    /// takes a millisecond or more with the pure-Rust `rsa` crate).
    pub fn mint_range(&self, start: u64, end: u64) -> anyhow::Result<Vec<String>> {
        let n = end.saturating_sub(start);
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(n.max(1) as usize) as u64;
        let chunk = n.div_ceil(threads.max(1));
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let from = start + t * chunk;
                    let to = (from + chunk).min(end);
                    s.spawn(move || (from..to).map(|i| self.mint(i)).collect::<Vec<_>>())
                })
                .collect();
            let mut out = Vec::with_capacity(n as usize);
            for h in handles {
                for t in h.join().map_err(|_| anyhow::anyhow!("minting panicked"))? {
                    out.push(t?);
                }
            }
            Ok(out)
        })
    }

    /// The first `count` tokens, minting those not minted yet.
    pub async fn tokens(self: &Arc<Self>, count: usize) -> anyhow::Result<Vec<String>> {
        anyhow::ensure!(count <= MAX_TOKENS, "at most {MAX_TOKENS} tokens");
        let mut have = self.tokens.lock().await;
        if have.len() < count {
            let this = self.clone();
            let (from, to) = (have.len() as u64, count as u64);
            let more = tokio::task::spawn_blocking(move || this.mint_range(from, to)).await??;
            have.extend(more);
        }
        Ok(have[..count].to_vec())
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let json = |body: &Bytes| {
            Response::builder()
                .header(CONTENT_TYPE, "application/json")
                .header(CACHE_CONTROL, "public, max-age=3600")
                .body(Full::new(body.clone()))
        };
        let res = match (req.method(), req.uri().path()) {
            (&Method::GET, "/.well-known/openid-configuration") => json(&self.discovery),
            (&Method::GET, "/jwks.json") => json(&self.jwks),
            (&Method::GET, "/bench/tokens") => {
                let count = req
                    .uri()
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("count="))
                    .and_then(|v| v.parse::<usize>().ok());
                match count {
                    None => plain(StatusCode::BAD_REQUEST, "give ?count=N".into()),
                    Some(n) => match self.tokens(n).await {
                        Ok(list) => {
                            let mut body = list.join("\n");
                            body.push('\n');
                            plain(StatusCode::OK, body)
                        }
                        Err(e) => plain(StatusCode::BAD_REQUEST, format!("{e:#}")),
                    },
                }
            }
            _ => plain(StatusCode::NOT_FOUND, "not found".into()),
        };
        res.unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }
}

fn plain(status: StatusCode, body: String) -> Result<Response<Full<Bytes>>, hyper::http::Error> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(body)))
}

fn alg_name(alg: IdpAlg) -> &'static str {
    match alg {
        IdpAlg::Rs256 => "RS256",
        IdpAlg::Es256 => "ES256",
    }
}

/// The key, parsed once, that signs the tokens.
enum Signer {
    Rs256(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
    Es256(p256::ecdsa::SigningKey),
}

impl Signer {
    /// The JWS signature of `msg` (RFC 7518 §3.3 and §3.4: PKCS#1 v1.5;
    /// ECDSA as the 64 bytes R || S).
    fn sign(&self, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
        use rsa::signature::{SignatureEncoding as _, Signer as _};
        Ok(match self {
            Signer::Rs256(k) => k.try_sign(msg)?.to_vec(),
            Signer::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.try_sign(msg)?;
                sig.to_bytes().to_vec()
            }
        })
    }
}

/// A new private key: in the DER form jsonwebtoken reads (PKCS#1 for RSA,
/// PKCS#8 for EC), for the JWK, and as the signer.
fn generate_key(alg: IdpAlg) -> anyhow::Result<(EncodingKey, Signer)> {
    let mut rng = rand_core::OsRng;
    Ok(match alg {
        IdpAlg::Rs256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey as _;
            let key = rsa::RsaPrivateKey::new(&mut rng, 2048)?;
            let der = EncodingKey::from_rsa_der(key.to_pkcs1_der()?.as_bytes());
            (
                der,
                Signer::Rs256(Box::new(rsa::pkcs1v15::SigningKey::new(key))),
            )
        }
        IdpAlg::Es256 => {
            use p256::pkcs8::EncodePrivateKey as _;
            let key = p256::SecretKey::random(&mut rng);
            let der = EncodingKey::from_ec_der(key.to_pkcs8_der()?.as_bytes());
            (der, Signer::Es256(p256::ecdsa::SigningKey::from(key)))
        }
    })
}

/// A provider serving in the background.
pub struct RunningIdp {
    pub addr: SocketAddr,
    pub idp: Arc<Idp>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `listen` (loopback only; port 0 for any free port), generates the
/// key and serves until dropped. The issuer is `http://ADDR`.
pub async fn spawn(listen: SocketAddr, audience: &str, alg: IdpAlg) -> anyhow::Result<RunningIdp> {
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "refusing to listen on {listen}: qrlogin-bench stays on loopback"
    );
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (issuer, audience) = (format!("http://{addr}"), audience.to_string());
    let idp = Arc::new(
        tokio::task::spawn_blocking(move || Idp::generate(&issuer, &audience, alg)).await??,
    );
    let task = tokio::spawn(serve(listener, idp.clone()));
    Ok(RunningIdp { addr, idp, task })
}

async fn serve(listener: TcpListener, idp: Arc<Idp>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let idp = idp.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let idp = idp.clone();
                async move { Ok::<_, Infallible>(idp.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    /// A minted token verifies with the published key and carries what a
    /// JWT verifier checks.
    #[test]
    fn tokens_verify_with_the_published_key() {
        for alg in [IdpAlg::Es256, IdpAlg::Rs256] {
            let idp = Idp::generate("http://127.0.0.1:9", "aud-x", alg).unwrap();
            let set: JwkSet = serde_json::from_slice(&idp.jwks).unwrap();
            let jwk = &set.keys[0];
            let token = idp.mint(7).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, alg.jwt());
            assert_eq!(header.kid, jwk.common.key_id);
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            let mut v = Validation::new(alg.jwt());
            v.set_issuer(&["http://127.0.0.1:9"]);
            v.set_audience(&["aud-x"]);
            let data = jsonwebtoken::decode::<serde_json::Value>(
                &token,
                &DecodingKey::from_jwk(jwk).unwrap(),
                &v,
            )
            .unwrap();
            assert_eq!(data.claims["sub"], "u-bench-7");
            assert_eq!(data.claims["name"], "Bench user 7");
            let disco: serde_json::Value = serde_json::from_slice(&idp.discovery).unwrap();
            assert_eq!(disco["issuer"], "http://127.0.0.1:9");
            assert_eq!(disco["jwks_uri"], "http://127.0.0.1:9/jwks.json");
        }
    }
}
