//! The built-in answers to "who is this phone's bearer?" — each a
//! [`MobileVerifier`](qrlogin_core::MobileVerifier), each in its own file:
//!
//! * [`demo`] — username and password against a users file or the seeded
//!   demo users; tokens kept in the store. For trying qrlogin only.
//! * [`jwt`] — the site's identity provider issues JWT access tokens; keys
//!   from OIDC discovery or a JWKS URL ([`jwks`] keeps them fresh).
//! * [`introspection`] — RFC 7662: ask the provider about an opaque token.
//! * [`userinfo`] — ask an OIDC userinfo endpoint (or the site's own "who am
//!   I" API) with the phone's bearer.
//!
//! Shared pieces: [`claims`] (which claims name the user), [`crypto`] (`ring` checks JWT signatures), [`cache`] (a
//! verified token is remembered briefly, keyed by its SHA-256) and
//! [`upstream`] (one pooled HTTPS client with a bounded timeout; every
//! failure of the upstream is `Unavailable`, never `Invalid`).

pub mod cache;
pub mod claims;
pub mod crypto;
pub mod demo;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod upstream;
pub mod userinfo;

pub use claims::ClaimMapping;
pub use demo::{hash_password, DemoIdentity, DemoUser, StoreTokenVerifier};
pub use introspection::{IntrospectionSettings, IntrospectionVerifier};
pub use jwt::{JwtSettings, JwtVerifier};
pub use upstream::{HttpSettings, Upstream};
pub use userinfo::{UserinfoSettings, UserinfoVerifier};

/// The longest bearer any verifier looks at; longer ones are refused before
/// any parsing or upstream call (a phone token is a few hundred bytes to a
/// few KiB; an 8 KiB cap bounds the work an attacker can ask for).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
