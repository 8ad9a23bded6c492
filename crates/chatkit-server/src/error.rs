//! The engine's one error type.

use repositories::RepoError;

use crate::responder::ResponderError;

/// Why a ChatKit request was not answered. (Once a stream has started, failures are events in
/// it, as in the SDK, not errors.)
#[derive(Debug, thiserror::Error)]
pub enum ChatKitError {
    /// The request is malformed, unknown, or asks for something this server cannot do.
    #[error("{0}")]
    Invalid(String),
    /// The store refused or failed (a missing thread is `RepoError::NotFound`).
    #[error(transparent)]
    Store(#[from] RepoError),
    /// Stored JSON that does not parse: a bug, never the client's fault.
    #[error("stored JSON is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The responder failed before anything was sent (agent turns answered as one body).
    #[error(transparent)]
    Responder(#[from] ResponderError),
}

impl ChatKitError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

pub type ChatKitResult<T, E = ChatKitError> = Result<T, E>;
