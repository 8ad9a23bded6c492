//! The HTTP routes, one module per section of `API.md`.

use axum::Router;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub(crate) mod health;
pub(crate) mod sessions;
pub(crate) mod threads;

/// Longest id (session, chat, thread, item, attachment) accepted, in bytes.
const MAX_ID_BYTES: usize = 255;

/// Every route of the API (the documentation routes are added by `startup`).
pub(crate) fn router() -> Router<AppState> {
    Router::new().merge(health::router()).merge(sessions::router()).merge(threads::router())
}

/// Ids are any non-empty UTF-8 of at most 255 bytes, without NUL (which PostgreSQL cannot
/// store in text).
pub(crate) fn validate_id(name: &str, id: &str) -> ApiResult<()> {
    if id.is_empty() {
        return Err(ApiError::invalid(format!("{name} must not be empty")));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(ApiError::invalid(format!("{name} must be at most {MAX_ID_BYTES} bytes")));
    }
    if id.contains('\0') {
        return Err(ApiError::invalid(format!("{name} must not contain NUL characters")));
    }
    Ok(())
}
