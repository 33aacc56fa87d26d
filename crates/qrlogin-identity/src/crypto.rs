//! Which code checks JWT signatures: `ring` where it can, RustCrypto for the
//! rest.
//!
//! jsonwebtoken 10 leaves the cryptography to a process-wide
//! [`CryptoProvider`]. Its RustCrypto provider checks an RS256 signature in
//! 187–259 µs on the benchmark machine, `ring` in 28–30 µs (BENCHMARKS.md,
//! "JWT verifier"): with a fresh phone token per login that difference alone
//! was most of the JWT verifier's extra CPU per login. `ring` is already in
//! the build (rustls uses it), so verification of the RSA (PKCS#1 v1.5 and
//! PSS, 2048–8192 bits), ECDSA P-256/P-384 and Ed25519 algorithms goes to
//! `ring`; any key `ring` does not take (an RSA key under 2048 bits, a DER
//! rather than raw EC key) and all signing stay with RustCrypto, unchanged.
//!
//! [`install`] must run before the first JWT is signed or checked; both the
//! phone-token verifier and the server's session keys call it, so whichever
//! comes first installs the same provider.

use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER as RUST_CRYPTO;
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use ring::signature::{
    self as rs, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm,
};

/// The provider: `ring` verifiers, RustCrypto signers and JWK helpers.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: RUST_CRYPTO.signer_factory,
    verifier_factory,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: RUST_CRYPTO.jwk_utils.extract_rsa_public_key_components,
        extract_ec_public_key_coordinates: RUST_CRYPTO.jwk_utils.extract_ec_public_key_coordinates,
        compute_digest: RUST_CRYPTO.jwk_utils.compute_digest,
    },
};

/// Installs [`PROVIDER`] for this process. Returns `false` when another
/// provider was installed first (e.g. by an embedding application); JWTs
/// are then checked by that one, which is correct, only slower.
pub fn install() -> bool {
    match PROVIDER.install_default() {
        Ok(()) => true,
        Err(existing) => std::ptr::eq(existing, &PROVIDER),
    }
}

/// An RSA public key as modulus and exponent (what a JWKS carries).
struct Rsa {
    alg: Algorithm,
    params: &'static rs::RsaParameters,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for Rsa {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(self.params, msg, sig)
        .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rsa {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// An EC point (uncompressed SEC1) or an Ed25519 public key, raw.
struct Raw {
    alg: Algorithm,
    params: &'static dyn VerificationAlgorithm,
    key: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for Raw {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        UnparsedPublicKey::new(self.params, &self.key)
            .verify(msg, sig)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Raw {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn verifier_factory(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    let rsa = |params: &'static rs::RsaParameters| -> Option<Box<dyn JwtVerifier>> {
        match key.kind() {
            // ring refuses moduli under 2048 bits; those stay with RustCrypto.
            DecodingKeyKind::RsaModulusExponent { n, e } if significant_bits(n) >= 2048 => {
                Some(Box::new(Rsa {
                    alg: *alg,
                    params,
                    n: n.clone(),
                    e: e.clone(),
                }))
            }
            _ => None,
        }
    };
    // A raw key of exactly the form ring reads; anything else (DER) falls
    // through to RustCrypto.
    let raw = |params: &'static dyn VerificationAlgorithm, ok: fn(&[u8]) -> bool| match key.kind() {
        DecodingKeyKind::SecretOrDer(k) if ok(k) => Some(Box::new(Raw {
            alg: *alg,
            params,
            key: k.clone(),
        }) as Box<dyn JwtVerifier>),
        _ => None,
    };
    fn point(k: &[u8], len: usize) -> bool {
        k.len() == len && k[0] == 0x04
    }
    let ours = match alg {
        Algorithm::RS256 => rsa(&rs::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => rsa(&rs::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => rsa(&rs::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => rsa(&rs::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => rsa(&rs::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => rsa(&rs::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => raw(&rs::ECDSA_P256_SHA256_FIXED, |k| point(k, 65)),
        Algorithm::ES384 => raw(&rs::ECDSA_P384_SHA384_FIXED, |k| point(k, 97)),
        Algorithm::EdDSA => raw(&rs::ED25519, |k| k.len() == 32),
        _ => None,
    };
    match ours {
        Some(v) if key.family() == alg.family() => Ok(v),
        _ => (RUST_CRYPTO.verifier_factory)(alg, key),
    }
}

/// Bits of a big-endian unsigned integer, leading zero bytes ignored.
fn significant_bits(n: &[u8]) -> usize {
    let n = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => return 0,
    };
    n.len() * 8 - n[0].leading_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, encode, EncodingKey, Header, Validation};

    #[test]
    fn bits() {
        assert_eq!(significant_bits(&[]), 0);
        assert_eq!(significant_bits(&[0, 0]), 0);
        assert_eq!(significant_bits(&[0, 1]), 1);
        assert_eq!(significant_bits(&[0x80, 0]), 16);
    }

    /// A signature RustCrypto makes is one ring accepts, and a changed
    /// payload is refused (ES256: the raw point a JWKS gives).
    #[test]
    fn ring_checks_what_rust_crypto_signs() {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        assert!(install());
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pair");
        let enc = EncodingKey::from_ec_der(pkcs8.as_ref());
        let dec = DecodingKey::from_ec_der(pair.public_key().as_ref());
        let claims = serde_json::json!({"sub": "alice"});
        let token = encode(&Header::new(Algorithm::ES256), &claims, &enc).expect("sign");
        let mut v = Validation::new(Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let got = decode::<serde_json::Value>(&token, &dec, &v).expect("verifies");
        assert_eq!(got.claims["sub"], "alice");
        // Another payload under the same signature.
        let (_, rest) = token.split_once('.').expect("jws");
        let (_, sig) = rest.split_once('.').expect("jws");
        let forged = format!(
            "{}.{}.{sig}",
            token.split('.').next().unwrap_or_default(),
            "eyJzdWIiOiJib2IifQ"
        );
        assert!(decode::<serde_json::Value>(&forged, &dec, &v).is_err());
    }
}
