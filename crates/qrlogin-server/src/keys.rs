//! The service's one signing key (ES256, P-256): it signs session JWTs
//! (`--session-format jwt`) and the OpenID Provider's ID tokens, and
//! `/.well-known/jwks.json` publishes its public half. One key, one JWKS:
//! relying parties and session verifiers fetch the same document.
//!
//! Why ES256: see [`crate::jwt`]. The `kid` is the RFC 7638 thumbprint.

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::Serialize;
use std::fmt;
use std::path::Path;

/// The one signing algorithm.
pub const ALGORITHM: Algorithm = Algorithm::ES256;

/// Why a key could not be loaded. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the JWT key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the JWT key file is not an unencrypted EC P-256 private key in PEM \
         (PKCS#8 `BEGIN PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`); make one with \
         `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out jwt.pem`"
    )]
    Format,
    #[error("the JWT key could not be prepared for signing: {0}")]
    Prepare(String),
    #[error("signing a session JWT: {0}")]
    Sign(String),
}

/// A private signing key, its public JWK set and its `kid`.
pub struct SigningKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwks: JwkSet,
}

impl fmt::Debug for SigningKey {
    /// Never prints the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &ALGORITHM)
            .field("kid", &self.kid)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// Loads the private key from a PEM file (PKCS#8 or SEC1, P-256 only).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&pem)
    }

    /// Parses a PEM private key (PKCS#8 `PRIVATE KEY` or SEC1
    /// `EC PRIVATE KEY`; both are what `openssl` writes). Only P-256 keys
    /// are accepted: the curve is part of the algorithm we pin.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = p256::SecretKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
            .map_err(|_| KeyError::Format)?;
        Self::from_secret(&key)
    }

    /// A fresh key from the OS CSPRNG. Only this process knows it, so
    /// several instances (or a restart) need a shared key file.
    pub fn generate() -> Result<Self, KeyError> {
        // A uniformly random 32-byte string is a valid P-256 scalar except
        // with probability ~2^-32 (zero or >= the group order); retry then.
        for _ in 0..16 {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| KeyError::Prepare(e.to_string()))?;
            if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
                return Self::from_secret(&key);
            }
        }
        Err(KeyError::Prepare("no valid P-256 key from 16 draws".into()))
    }

    fn from_secret(key: &p256::SecretKey) -> Result<Self, KeyError> {
        // jsonwebtoken picks its crypto backend from crate features; should an
        // embedding application also enable `aws_lc_rs`, both are on and the
        // choice would panic. Installing ours first makes it explicit: the
        // same one the phone-token verifier installs (ring checks, RustCrypto
        // signs; qrlogin-identity's crypto.rs).
        qrlogin_identity::crypto::install();
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Prepare(e.to_string()))?;
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let mut jwk = Jwk::from_encoding_key(&encoding, ALGORITHM)
            .map_err(|e| KeyError::Prepare(e.to_string()))?;
        // RFC 7638 thumbprint of the public key: stable for a key, changes
        // with it, and computable by anyone from the JWK alone.
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| KeyError::Prepare(e.to_string()))?;
        Ok(Self {
            encoding,
            decoding,
            kid,
            jwks: JwkSet { keys: vec![jwk] },
        })
    }

    /// The key id (RFC 7638 SHA-256 thumbprint of the public key).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK set, what `/.well-known/jwks.json` serves.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// The public key, for verifying our own tokens.
    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The private key, for tests that forge a token with another key.
    #[cfg(test)]
    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// Signs `claims` as a compact JWS with header `{alg: ES256, typ, kid}`.
    pub fn sign<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String, KeyError> {
        let mut header = Header::new(ALGORITHM);
        header.typ = Some(typ.into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }
}
