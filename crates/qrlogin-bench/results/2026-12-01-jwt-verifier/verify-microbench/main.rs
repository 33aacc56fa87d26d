//! RS256 / ES256 verification cost per token, single thread: jsonwebtoken
//! 10.4 with its rust_crypto provider (what qrlogin-identity uses) against
//! the same decode with a provider whose RS256/ES256 verifiers are ring's
//! (ring 0.17 is already in qrlogin's lock file, through rustls).
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey, Header, Validation};
use std::time::Instant;

struct RingRs256(Vec<u8>, Vec<u8>);
impl signature::Verifier<Vec<u8>> for RingRs256 {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        ring::signature::RsaPublicKeyComponents { n: &self.0, e: &self.1 }
            .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
            .map_err(|_| signature::Error::new())
    }
}
impl JwtVerifier for RingRs256 {
    fn algorithm(&self) -> Algorithm { Algorithm::RS256 }
}
struct RingEs256(Vec<u8>);
impl signature::Verifier<Vec<u8>> for RingEs256 {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &self.0)
            .verify(msg, sig)
            .map_err(|_| signature::Error::new())
    }
}
impl JwtVerifier for RingEs256 {
    fn algorithm(&self) -> Algorithm { Algorithm::ES256 }
}
fn ring_verifier(alg: &Algorithm, key: &DecodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    match (alg, key.kind()) {
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => Ok(Box::new(RingRs256(n.clone(), e.clone()))),
        (Algorithm::ES256, DecodingKeyKind::SecretOrDer(p)) => Ok(Box::new(RingEs256(p.clone()))),
        _ => (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key),
    }
}
fn ring_provider() -> &'static CryptoProvider {
    Box::leak(Box::new(CryptoProvider {
        signer_factory: jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.signer_factory,
        verifier_factory: ring_verifier,
        jwk_utils: jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.jwk_utils.clone(),
    }))
}

#[allow(deprecated)]
fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "rust_crypto".into());
    if which == "ring" { ring_provider().install_default().unwrap(); } else { jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default().unwrap(); }
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let mut rng = rand_core::OsRng;
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let (enc, jwk) = match alg {
            Algorithm::RS256 => {
                use rsa::pkcs1::EncodeRsaPrivateKey as _;
                let k = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
                let enc = EncodingKey::from_rsa_der(k.to_pkcs1_der().unwrap().as_bytes());
                let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, alg).unwrap();
                (enc, jwk)
            }
            _ => {
                use p256::pkcs8::EncodePrivateKey as _;
                let k = p256::SecretKey::random(&mut rng);
                let enc = EncodingKey::from_ec_der(k.to_pkcs8_der().unwrap().as_bytes());
                let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, alg).unwrap();
                (enc, jwk)
            }
        };
        let dec = DecodingKey::from_jwk(&jwk).unwrap();
        let mut header = Header::new(alg);
        header.kid = Some("k1".into());
        header.typ = Some("at+jwt".into());
        let tokens: Vec<String> = (0..n).map(|i| jsonwebtoken::encode(&header, &serde_json::json!({
            "iss": "http://127.0.0.1:9", "sub": format!("u-bench-{i}"), "aud": "qrlogin-bench",
            "exp": 4_000_000_000u64, "iat": 1_700_000_000u64, "jti": format!("j-{i}"),
            "client_id": "qrlogin-bench-phone-app", "scope": "openid profile", "name": format!("Bench user {i}")}), &enc).unwrap()).collect();
        let mut v = Validation::new(alg);
        v.set_issuer(&["http://127.0.0.1:9"]);
        v.set_audience(&["qrlogin-bench"]);
        v.validate_exp = false;
        // full decode (header, base64, signature, JSON claims, iss/aud)
        let t = Instant::now();
        for tok in &tokens {
            let _ = std::hint::black_box(jsonwebtoken::decode_header(tok).unwrap());
            let d = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(tok, &dec, &v).unwrap();
            std::hint::black_box(d);
        }
        let full = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        // the same without the signature: what the rest of the path costs
        let mut v2 = v.clone();
        v2.insecure_disable_signature_validation();
        let t = Instant::now();
        for tok in &tokens {
            let d = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(tok, &dec, &v2).unwrap();
            std::hint::black_box(d);
        }
        let nosig = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = Instant::now();
        for tok in &tokens { std::hint::black_box(<sha2::Sha256 as sha2::Digest>::digest(tok.as_bytes())); }
        let sha = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("{which:12} {alg:?}: decode {full:7.1} µs/token, of which signature {:7.1}; without signature {nosig:5.1}; sha256 of the token {sha:4.2}; token {} bytes",
                 full - nosig, tokens[0].len());
    }
}
