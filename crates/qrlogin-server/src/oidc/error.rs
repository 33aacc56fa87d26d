//! The OAuth face's one error type: RFC 6749 §5.2 error codes as JSON with
//! `Cache-Control: no-store`, and the `invalid_client` challenge.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An OAuth 2.0 error answer (token, device authorization, revocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`,
    /// `authorization_pending`, `slow_down`, `access_denied`,
    /// `expired_token`, `temporarily_unavailable`, `server_error`.
    pub error: &'static str,
    pub description: String,
    /// Whether the client authenticated with HTTP Basic (then a failed
    /// authentication is a 401 with a `WWW-Authenticate` challenge).
    pub basic: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OAuthErrorBody {
    pub error: &'static str,
    pub error_description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
            basic: false,
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }
    pub fn invalid_client(basic: bool) -> Self {
        Self {
            error: "invalid_client",
            description: "client authentication failed".into(),
            basic,
        }
    }

    fn status(&self) -> StatusCode {
        match self.error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<qrlogin_core::StoreError> for OAuthError {
    fn from(e: qrlogin_core::StoreError) -> Self {
        tracing::warn!(error = %e, "store error");
        metrics::counter!("qrlogin_store_errors_total").increment(1);
        Self::new(
            "temporarily_unavailable",
            "the login store is unavailable, try again shortly",
        )
    }
}

impl From<crate::ApiError> for OAuthError {
    fn from(e: crate::ApiError) -> Self {
        use crate::ApiError;
        match e {
            ApiError::StoreUnavailable => {
                Self::new("temporarily_unavailable", "the login store is unavailable")
            }
            ApiError::RateLimited { .. } | ApiError::SlowDown { .. } => {
                Self::new("slow_down", "too many requests")
            }
            ApiError::BadRequest(m) => Self::invalid_request(m),
            other => Self::new("server_error", other.to_string()),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
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
