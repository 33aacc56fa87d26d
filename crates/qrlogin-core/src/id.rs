//! Ids and secrets. Parse, don't validate: every value that arrives from the
//! outside is turned into one of these types at the edge, and from then on
//! is known to be well formed.
//!
//! All randomness comes from the OS CSPRNG (`getrandom`). Secrets never print:
//! their `Debug` is redacted and they have no `Display`; the one way to get
//! the text of a secret is the explicit [`BrowserSecret::expose`] (and the
//! like), used only where the secret is handed to its owner.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use subtle::ConstantTimeEq;

/// Why a piece of untrusted text is not an id or a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("wrong length")]
    Length,
    #[error("not canonical base64url")]
    Encoding,
}

fn random<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS CSPRNG failing is not recoverable and never happens on Linux
    // after boot; refusing to run beats running with predictable ids.
    getrandom::fill(&mut buf).unwrap_or_else(|e| panic!("OS random source failed: {e}"));
    buf
}

/// Decodes exactly `N` bytes from canonical, unpadded base64url text.
/// Rejecting non-canonical spellings means one id has one text, so ids can
/// be compared and used as keys as text.
fn decode_fixed<const N: usize>(s: &str) -> Result<[u8; N], ParseError> {
    let want = (N * 4).div_ceil(3);
    if s.len() != want {
        return Err(ParseError::Length);
    }
    let mut out = [0u8; N];
    let n = URL_SAFE_NO_PAD
        .decode_slice(s.as_bytes(), &mut out)
        .map_err(|_| ParseError::Encoding)?;
    if n != N {
        return Err(ParseError::Length);
    }
    // base64 0.22 already rejects trailing bits that are not zero.
    Ok(out)
}

/// The public id of one login: 128 random bits, 22 base64url characters.
/// It is the only thing in the QR code and is not a credential.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoginId([u8; 16]);

impl LoginId {
    pub const TEXT_LEN: usize = 22;

    pub fn random() -> Self {
        Self(random())
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl FromStr for LoginId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_fixed(s).map(Self)
    }
}

impl fmt::Display for LoginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 22];
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for LoginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoginId({self})")
    }
}

/// SHA-256 of a secret. This, never the secret, is what a store keeps, so a
/// read of the store (a backup, a `MONITOR`) does not hand out credentials.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Lower-case hex, the form stored in Redis.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
        }
        s
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hi = (chunk[0] as char).to_digit(16)?;
            let lo = (chunk[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Self(out))
    }
    /// Constant-time comparison, so the time a check takes says nothing
    /// about how much of a guessed secret was right.
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

macro_rules! secret32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Text length: 256 bits in unpadded base64url.
            pub const TEXT_LEN: usize = 43;

            pub fn random() -> Self {
                Self(random())
            }
            /// The secret's text. Call only to hand it to its owner.
            pub fn expose(&self) -> String {
                URL_SAFE_NO_PAD.encode(self.0)
            }
            pub fn hash(&self) -> SecretHash {
                SecretHash::of(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                decode_fixed(s).map(Self)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret32!(
    /// Held only by the browser that created a login (an HttpOnly cookie, or
    /// a bearer header for non-browser clients). Needed to watch, redeem or
    /// cancel; never in the QR code, never logged.
    BrowserSecret
);

secret32!(
    /// The demo identity's credential for a signed-in phone app.
    MobileToken
);

/// The opaque web-session token a browser receives on redeem.
///
/// Its text is `<login id>.<256-bit secret>`: carrying the login id lets the
/// store keep the session under the login's hash tag, so the redeem script
/// marks the login consumed and creates the session in one atomic step even
/// on Redis Cluster, and lookups need no index.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken {
    login: LoginId,
    secret: [u8; 32],
}

impl SessionToken {
    pub const TEXT_LEN: usize = LoginId::TEXT_LEN + 1 + 43;

    pub fn new_for(login: LoginId) -> Self {
        Self {
            login,
            secret: random(),
        }
    }
    pub fn login_id(&self) -> LoginId {
        self.login
    }
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.secret)
    }
    /// The token's text. Call only to hand it to the browser it belongs to.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.login, URL_SAFE_NO_PAD.encode(self.secret))
    }
}

impl FromStr for SessionToken {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != Self::TEXT_LEN {
            return Err(ParseError::Length);
        }
        let (id, rest) = s.split_once('.').ok_or(ParseError::Encoding)?;
        Ok(Self {
            login: id.parse()?,
            secret: decode_fixed(rest)?,
        })
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionToken({}.<redacted>)", self.login)
    }
}

/// Which web session a credential points at, without the credential: the
/// login id and the SHA-256 of the session token, i.e. exactly what the
/// store's session record is keyed by.
///
/// Why it exists: a signed JWT (JWT session mode) must name its server-side
/// session record so that `GET /v1/session` can check revocation, but it
/// must not carry the opaque token's secret (a JWT is readable by anyone who
/// holds it and is meant to be passed on to other services). The hash alone
/// opens nothing: an opaque-token lookup hashes a presented secret, and a
/// JWT naming this reference must still carry our signature.
///
/// Text form (the JWT's `sid`): `<login id>.<64 lower-case hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionRef {
    login: LoginId,
    hash: SecretHash,
}

impl SessionRef {
    /// Text length: 22 + 1 + 64.
    pub const TEXT_LEN: usize = LoginId::TEXT_LEN + 1 + 64;

    pub fn new(login: LoginId, hash: SecretHash) -> Self {
        Self { login, hash }
    }
    pub fn login_id(&self) -> LoginId {
        self.login
    }
    pub fn hash(&self) -> SecretHash {
        self.hash
    }
}

impl SessionToken {
    /// The reference to this token's session record (drops the secret).
    pub fn session_ref(&self) -> SessionRef {
        SessionRef::new(self.login, self.hash())
    }
}

impl FromStr for SessionRef {
    type Err = ParseError;
    /// Only the canonical spelling (lower-case hex) is accepted, so one
    /// session has one text, the one the store's key is built from.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != Self::TEXT_LEN {
            return Err(ParseError::Length);
        }
        let (id, hex) = s.split_once('.').ok_or(ParseError::Encoding)?;
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ParseError::Encoding);
        }
        Ok(Self {
            login: id.parse()?,
            hash: SecretHash::from_hex(hex).ok_or(ParseError::Length)?,
        })
    }
}

impl fmt::Display for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.login, self.hash.to_hex())
    }
}

impl fmt::Debug for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionRef({}.{})", self.login, self.hash.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn login_id_is_22_chars_and_round_trips() {
        let id = LoginId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 22);
        assert_eq!(text.parse::<LoginId>(), Ok(id));
    }

    #[test]
    fn ids_differ() {
        assert_ne!(LoginId::random(), LoginId::random());
        assert_ne!(BrowserSecret::random(), BrowserSecret::random());
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "short",
            "AAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAA+",
            "AAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAA/",
            "AAAAAAAAAAAAAAAAAAAAAB",
        ] {
            assert!(bad.parse::<LoginId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn secrets_redact_in_debug() {
        let s = BrowserSecret::random();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains(&s.expose()));
        assert!(dbg.contains("redacted"));
        let t = SessionToken::new_for(LoginId::random());
        assert!(!format!("{t:?}").contains(&t.expose()[23..]));
        let h = s.hash();
        assert!(!format!("{h:?}").contains(&h.to_hex()));
    }

    #[test]
    fn session_token_round_trips() {
        let t = SessionToken::new_for(LoginId::random());
        let parsed: SessionToken = t.expose().parse().unwrap();
        assert_eq!(parsed, t);
        assert_eq!(parsed.hash(), t.hash());
    }

    #[test]
    fn session_ref_round_trips_and_holds_no_secret() {
        let t = SessionToken::new_for(LoginId::random());
        let r = t.session_ref();
        assert_eq!(r.login_id(), t.login_id());
        assert_eq!(r.hash(), t.hash());
        let text = r.to_string();
        assert_eq!(text.len(), SessionRef::TEXT_LEN);
        assert!(!text.contains(&t.expose()[23..]));
        assert_eq!(text.parse::<SessionRef>(), Ok(r));
        // Upper-case hex names the same bytes but is not the canonical text.
        let upper = format!("{}.{}", r.login_id(), r.hash().to_hex().to_uppercase());
        assert!(upper.parse::<SessionRef>().is_err());
        assert!(t.expose().parse::<SessionRef>().is_err());
    }

    #[test]
    fn hex_round_trips() {
        let h = BrowserSecret::random().hash();
        assert_eq!(SecretHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(SecretHash::from_hex("zz"), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,80}") {
            let _ = s.parse::<LoginId>();
            let _ = s.parse::<BrowserSecret>();
            let _ = s.parse::<SessionToken>();
            let _ = s.parse::<SessionRef>();
            let _ = SecretHash::from_hex(&s);
        }

        #[test]
        fn accepted_ids_print_back_identically(s in "[A-Za-z0-9_-]{22}") {
            if let Ok(id) = s.parse::<LoginId>() {
                prop_assert_eq!(id.to_string(), s);
            }
        }
    }
}
