//! One error type for every handler. Each variant is one HTTP answer with a
//! stable machine-readable code; internal detail is logged here and never
//! sent to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use qrlogin_core::{StoreError, TransitionError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed id, body, query or header.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or invalid credential (phone token, session token, password).
    #[error("missing or invalid credential")]
    Unauthorized,
    /// Refused on purpose (e.g. a cross-site request).
    #[error("{0}")]
    Forbidden(&'static str),
    /// Unknown login; for browser callers also expired, consumed or a wrong
    /// browser secret, deliberately indistinguishable.
    #[error("no such login")]
    NotFound,
    /// No route (or a feature that is switched off).
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The login is not in a state that allows this (or a concurrent caller won).
    #[error("{0}")]
    Conflict(String),
    /// The login expired (phone callers only, so the app can say so).
    #[error("this login has expired")]
    Gone,
    /// The phone picked the wrong number; the login is now denied.
    #[error("that was not the number shown on the computer; the login was denied")]
    WrongMatchCode,
    /// The scan's risk verdict was high and the approval lacked
    /// `"confirm_presence": true`; nothing changed.
    #[error("this login is from another place or network: confirm that you are at the computer now (\"confirm_presence\": true) to approve it")]
    PresenceRequired,
    #[error("request body too large")]
    PayloadTooLarge,
    /// A JSON body sent without `Content-Type: application/json`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The request body did not arrive in time (a trickled body would
    /// otherwise hold its connection and task for as long as the client likes).
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// This client address holds `--max-streams-per-ip` SSE streams and
    /// long-polls already.
    #[error("too many open event streams and long-polls from this address")]
    TooManyStreams { retry_after_secs: u64 },
    /// A status poll came too fast: poll less often (RFC 8628 `slow_down`).
    #[error("polling too fast, slow down")]
    SlowDown { retry_after_secs: u64 },
    /// The store could not be reached in time.
    #[error("the login store is unavailable, try again shortly")]
    StoreUnavailable,
    /// The identity provider that checks phone tokens is down, slow or
    /// answered garbage: the phone should retry, not sign its user out.
    #[error("the phone-token verifier is unavailable, try again shortly")]
    VerifierUnavailable,
    #[error("internal error")]
    Internal,
}

/// Every error response: a stable code and a human sentence.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// e.g. `not_found`, `conflict`, `store_unavailable`.
    pub error: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone => StatusCode::GONE,
            ApiError::WrongMatchCode => StatusCode::CONFLICT,
            ApiError::PresenceRequired => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. }
            | ApiError::SlowDown { .. }
            | ApiError::TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::StoreUnavailable | ApiError::VerifierUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound | ApiError::NoRoute => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone => "gone",
            ApiError::WrongMatchCode => "wrong_match_code",
            ApiError::PresenceRequired => "presence_required",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::SlowDown { .. } => "slow_down",
            ApiError::TooManyStreams { .. } => "too_many_streams",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::VerifierUnavailable => "verifier_unavailable",
            ApiError::Internal => "internal",
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    /// Maps a failed transition for a caller holding (or claiming) the
    /// browser secret: unknown, expired and wrong-secret all read "not found".
    pub fn for_browser(e: TransitionError) -> Self {
        match e {
            TransitionError::NotFound | TransitionError::Expired => ApiError::NotFound,
            TransitionError::WrongState(s) => ApiError::Conflict(format!("login is {s}")),
            TransitionError::WrongUser
            | TransitionError::WrongMatchCode
            | TransitionError::PresenceRequired => ApiError::NotFound,
            TransitionError::Store(e) => e.into(),
        }
    }

    /// Maps a failed transition for a phone caller, who may learn that a
    /// login expired or was taken by someone else.
    pub fn for_phone(e: TransitionError) -> Self {
        match e {
            TransitionError::NotFound => ApiError::NotFound,
            TransitionError::Expired => ApiError::Gone,
            TransitionError::WrongState(s) => ApiError::Conflict(format!("login is {s}")),
            TransitionError::WrongUser => {
                ApiError::Conflict("login was scanned by another user".into())
            }
            TransitionError::WrongMatchCode => ApiError::WrongMatchCode,
            TransitionError::PresenceRequired => ApiError::PresenceRequired,
            TransitionError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store error");
        metrics::counter!("qrlogin_store_errors_total").increment(1);
        ApiError::StoreUnavailable
    }
}

impl From<qrlogin_core::VerifyError> for ApiError {
    fn from(e: qrlogin_core::VerifyError) -> Self {
        use qrlogin_core::VerifyError;
        match e {
            VerifyError::Invalid => ApiError::Unauthorized,
            VerifyError::Unavailable(why) => {
                // `why` is the verifier's description of the upstream
                // failure; it never holds the token.
                tracing::warn!(error = %why, "phone-token verifier unavailable");
                ApiError::VerifierUnavailable
            }
            VerifyError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_secs }
        | ApiError::SlowDown { retry_after_secs }
        | ApiError::TooManyStreams { retry_after_secs } = self
        {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
