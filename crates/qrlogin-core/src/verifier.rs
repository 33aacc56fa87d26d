//! Who the phone's bearer is: the one seam between qrlogin and a site's own
//! identity system.
//!
//! Phone calls carry `Authorization: Bearer <mobile token>`; a
//! [`MobileVerifier`] turns that into a [`User`] or refuses. The user id used
//! for scan, approve and deny comes only from here, never from a request
//! body. Built-in verifiers (demo, JWT, introspection, userinfo) live in the
//! `qrlogin-identity` crate; a site can also implement this trait itself.

use crate::store::{StoreError, User};
use async_trait::async_trait;
use std::future::Future;
use std::pin::Pin;

/// Why a mobile token was not turned into a user.
///
/// The split matters to the phone app: [`Invalid`](VerifyError::Invalid)
/// means "sign in again" (401), while [`Unavailable`](VerifyError::Unavailable)
/// and [`Store`](VerifyError::Store) mean "try again shortly" (503). A
/// verifier that cannot reach its upstream must never claim the token is
/// invalid, or a phone would sign its user out because of an outage.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The credential is not valid (bad signature, expired, revoked,
    /// unknown, malformed): 401.
    #[error("invalid mobile token")]
    Invalid,
    /// The identity upstream is down, slow or answered garbage: 503
    /// `verifier_unavailable`. The text is for logs; it must never contain
    /// the token.
    #[error("mobile-token verifier unavailable: {0}")]
    Unavailable(String),
    /// The store (which the demo tokens live in) failed: 503
    /// `store_unavailable`.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A task a verifier needs running for as long as the service runs (e.g.
/// refreshing a JWKS before it goes stale). The service builder spawns it.
pub type BackgroundTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Checks a phone app's credential. Implement this to use your own auth.
#[async_trait]
pub trait MobileVerifier: Send + Sync + 'static {
    /// The user behind `bearer` (the token without the `Bearer ` prefix).
    async fn verify(&self, bearer: &str) -> Result<User, VerifyError>;

    /// A short name for logs and metric labels (`demo`, `jwt`, …).
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// Work to run in the background while the service runs; `None` (the
    /// default) for verifiers that need none. Called once, by the builder.
    fn background(&self) -> Option<BackgroundTask> {
        None
    }
}
