//! The OAuth face's one error type: RFC 6749 §5.2 error codes as JSON with
//! `Cache-Control: no-store`, and the `invalid_client` challenge.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The `error` codes the JSON endpoints answer with: RFC 6749 §5.2 (token,
/// and RFC 7009 §2.2.1 revocation, which reuses them), RFC 8628 §3.5 (the
/// device grant's polling), and RFC 6749 §4.1.2.1's `temporarily_unavailable`
/// and `server_error` for a store or server fault. One enum, so the code
/// cannot answer a code `/openapi.json` does not list (its schema is this
/// enum). RFC 7009's `unsupported_token_type` is absent: every token type
/// can be revoked here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AuthorizationPending,
    SlowDown,
    AccessDenied,
    ExpiredToken,
    TemporarilyUnavailable,
    ServerError,
}

/// An OAuth 2.0 error answer (token, device authorization, revocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: OAuthErrorCode,
    pub description: String,
    /// Whether the client authenticated with HTTP Basic (then a failed
    /// authentication is a 401 with a `WWW-Authenticate` challenge).
    pub basic: bool,
    /// A limit's refusal met on an OAuth endpoint: answered as the
    /// service's own 429 (JSON error, `Retry-After`) like every limit, not
    /// as an OAuth error. RFC 8628's per-device-code `slow_down` is an
    /// OAuth error of its own ([`OAuthErrorCode::SlowDown`]), not this.
    pub limited: Option<Limited>,
}

/// Which limit refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Rate { retry_after_secs: u64 },
    SlowDown { retry_after_secs: u64 },
    Streams { retry_after_secs: u64 },
}

impl Limited {
    fn api_error(self) -> crate::ApiError {
        use crate::ApiError;
        match self {
            Limited::Rate { retry_after_secs } => ApiError::RateLimited { retry_after_secs },
            Limited::SlowDown { retry_after_secs } => ApiError::SlowDown { retry_after_secs },
            Limited::Streams { retry_after_secs } => ApiError::TooManyStreams { retry_after_secs },
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OAuthErrorBody {
    pub error: OAuthErrorCode,
    pub error_description: String,
}

impl OAuthError {
    pub fn new(error: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
            basic: false,
            limited: None,
        }
    }
    fn limited(l: Limited) -> Self {
        Self {
            limited: Some(l),
            ..Self::new(OAuthErrorCode::TemporarilyUnavailable, "too many requests")
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, d)
    }
    pub fn invalid_client(basic: bool) -> Self {
        Self {
            error: OAuthErrorCode::InvalidClient,
            description: "client authentication failed".into(),
            basic,
            limited: None,
        }
    }

    fn status(&self) -> StatusCode {
        match self.error {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<qrlogin_core::StoreError> for OAuthError {
    fn from(e: qrlogin_core::StoreError) -> Self {
        tracing::warn!(error = %e, "store error");
        metrics::counter!("qrlogin_store_errors_total").increment(1);
        Self::new(
            OAuthErrorCode::TemporarilyUnavailable,
            "the login store is unavailable, try again shortly",
        )
    }
}

impl From<crate::ApiError> for OAuthError {
    fn from(e: crate::ApiError) -> Self {
        use crate::ApiError;
        match e {
            ApiError::StoreUnavailable => Self::new(
                OAuthErrorCode::TemporarilyUnavailable,
                "the login store is unavailable",
            ),
            // A limit's refusal stays the service's 429 with Retry-After.
            ApiError::RateLimited { retry_after_secs } => {
                Self::limited(Limited::Rate { retry_after_secs })
            }
            ApiError::SlowDown { retry_after_secs } => {
                Self::limited(Limited::SlowDown { retry_after_secs })
            }
            ApiError::TooManyStreams { retry_after_secs } => {
                Self::limited(Limited::Streams { retry_after_secs })
            }
            ApiError::BadRequest(m) => Self::invalid_request(m),
            other => Self::new(OAuthErrorCode::ServerError, other.to_string()),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        if let Some(l) = self.limited {
            let mut resp = l.api_error().into_response();
            let h = resp.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            return resp;
        }
        let status = self.status();
        let challenge = self.basic && status == StatusCode::UNAUTHORIZED;
        let mut resp = (
            status,
            axum::Json(OAuthErrorBody {
                error: self.error,
                error_description: self.description,
            }),
        )
            .into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if challenge {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"qrlogin\""),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
