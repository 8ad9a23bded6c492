//! The one place where failures become HTTP responses.
//!
//! Every non-2xx answer has the shape `{"error": {"code", "message"}}` of `API.md`. Internal
//! causes are logged here and never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use repositories::RepoError;
use serde::Serialize;
use utoipa::ToSchema;

use agent_session::SessionError;
use chatkit_server::ChatKitError;
use chatkit_server::responder::ResponderError;

/// What a handler, extractor or middleware can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The database (or another dependency) cannot be reached right now; the client may retry.
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable(#[source] anyhow::Error),
    /// The server is serving as many connections as it is configured to; the client may retry.
    #[error("the server has too many open connections; retry shortly")]
    TooManyConnections,
    /// The server has started but has not opened its database yet (it may be waking up, or
    /// migrations may be running); the client may retry.
    #[error("the server is starting and its database is not ready yet; retry shortly")]
    Starting,
    /// The model behind the responder failed (or refused): to the client, like any other
    /// dependency that is unavailable, so it may retry.
    #[error("{}", model_failure_message(.0))]
    ModelFailed(ResponderError),
    /// A bug or an unexpected failure; the cause is logged, the client sees a generic message.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type ApiResult<T, E = ApiError> = Result<T, E>;

/// Seconds a client is asked to wait before retrying a `503`.
const RETRY_AFTER_SECS: &str = "1";

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_)
            | Self::Starting
            | Self::ModelFailed(_)
            | Self::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs what the client is not told: causes of failures, at their level.
    pub fn log(&self) {
        match self {
            Self::Internal(cause) => {
                tracing::error!(error.cause_chain = ?cause, "request failed");
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error.cause_chain = ?cause, "dependency unavailable");
            }
            Self::ModelFailed(cause) => tracing::warn!(reason = %cause, "the model failed"),
            _ => tracing::debug!(error = %self, "request rejected"),
        }
    }

    /// The machine-readable `code` of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            // 405 has no code of its own in the contract: the request is wrong, so it is
            // an `invalid_request`.
            Self::InvalidRequest(_) | Self::MethodNotAllowed(_) => "invalid_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unavailable(_)
            | Self::Starting
            | Self::ModelFailed(_)
            | Self::TooManyConnections => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// One of `invalid_request`, `unauthorized`, `not_found`, `conflict`, `payload_too_large`,
    /// `unsupported_media_type`, `unavailable`, `internal`.
    pub code: String,
    /// A sentence for a person.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let body = ErrorBody {
            error: ErrorDetail { code: self.code().to_owned(), message: self.to_string() },
        };
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Unavailable(_)
            | Self::Starting
            | Self::ModelFailed(_)
            | Self::TooManyConnections => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }
}

/// What the client is told: a responder's message for the user as written, anything else
/// without its details (they are logged).
fn model_failure_message(error: &ResponderError) -> String {
    match error {
        ResponderError::Custom { message, .. } => message.clone(),
        ResponderError::Failed(_) => "the model could not answer; retry shortly".into(),
    }
}

impl From<ResponderError> for ApiError {
    fn from(err: ResponderError) -> Self {
        Self::ModelFailed(err)
    }
}

impl From<ChatKitError> for ApiError {
    fn from(err: ChatKitError) -> Self {
        match err {
            ChatKitError::Invalid(what) => Self::InvalidRequest(what),
            ChatKitError::Store(err) => err.into(),
            ChatKitError::Responder(err) => err.into(),
            ChatKitError::Corrupt(cause) => Self::Internal(cause.into()),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Store(err) => err.into(),
            SessionError::InvalidItem(what) => Self::InvalidRequest(what),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<RepoError> for ApiError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::NotFound(what) => Self::NotFound(what),
            RepoError::Conflict(what) => Self::Conflict(what),
            RepoError::Invalid(what) => Self::InvalidRequest(what),
            RepoError::Unavailable(cause) => Self::Unavailable(cause.into()),
            RepoError::Db(cause) => Self::Internal(cause.into()),
        }
    }
}
