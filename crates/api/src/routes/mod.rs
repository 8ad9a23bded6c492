//! The HTTP routes, one module per section of `API.md`.

use axum::Router;

use crate::state::AppState;

pub(crate) mod health;

/// Every route of the API (the documentation routes are added by `startup`).
pub(crate) fn router() -> Router<AppState> {
    Router::new().merge(health::router())
}
