//! Grants: the short-lived records of the protocol faces (OpenID Connect,
//! the device grant) that are not logins — authorization requests and codes,
//! access and refresh tokens, device user codes, device poll pacing.
//!
//! A store keeps each as an opaque JSON string under a [`GrantKey`] (a kind
//! and a SHA-256: never the secret itself), with an expiry decided by the
//! caller's clock like everything else. The one checked operation is
//! [`take`](crate::Store::take_grant): atomically mark a grant used and say
//! whether this was the first use. A used grant stays until it expires, so
//! a second use is *seen* — an authorization code or refresh token presented
//! twice means it leaked, and RFC 6749 §4.1.2 / RFC 9700 §4.14 ask the server
//! to revoke what the first use issued.

use crate::id::{LoginId, SecretHash};
use sha2::{Digest, Sha256};

/// What a grant is; part of its key, so two kinds never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrantKind {
    /// A validated authorization request waiting for its login (by login id).
    AuthRequest,
    /// An authorization code (by the code's hash).
    Code,
    /// An access token for userinfo (by the token's hash).
    AccessToken,
    /// A refresh token (by the token's hash), rotated on use.
    RefreshToken,
    /// A device flow's typed user code (by the normalised code's hash).
    UserCode,
    /// A device flow's client and poll pacing (by login id).
    Device,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::AuthRequest => "authreq",
            GrantKind::Code => "code",
            GrantKind::AccessToken => "at",
            GrantKind::RefreshToken => "rt",
            GrantKind::UserCode => "ucode",
            GrantKind::Device => "device",
        }
    }
}

/// Where a grant lives: its kind and a SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrantKey {
    pub kind: GrantKind,
    pub hash: [u8; 32],
}

impl GrantKey {
    /// Keyed by a secret (a code, a token): only its SHA-256 is kept.
    pub fn of_secret(kind: GrantKind, secret: &str) -> Self {
        Self {
            kind,
            hash: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Keyed by a login (whose id is public).
    pub fn of_login(kind: GrantKind, id: &LoginId) -> Self {
        Self::of_secret(kind, &id.to_string())
    }

    /// The hash as hex, for keys in a backend.
    pub fn hex(&self) -> String {
        SecretHash::from_bytes(self.hash).to_hex()
    }
}

/// What [`take`](crate::Store::take_grant) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// This call used it first.
    First(String),
    /// It had been used before (a replay).
    Again(String),
}
