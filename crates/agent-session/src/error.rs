//! The agent-session crate's one error type.

use repositories::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// An item that is not a JSON object.
    #[error("invalid item: {0}")]
    InvalidItem(String),
    /// The store failed (in-process sessions).
    #[error(transparent)]
    Store(#[from] RepoError),
    /// The server answered with an error (HTTP sessions).
    #[error("chatstore answered {status} {code}: {message}")]
    Server { status: u16, code: String, message: String },
    /// The server could not be reached, or its answer could not be read (HTTP sessions).
    #[error("chatstore request failed: {0}")]
    Transport(#[from] reqwest::Error),
}
