//! The ChatKit store as HTTP resources: threads, thread items and attachments.

use axum::Router;

use crate::state::AppState;

#[derive(utoipa::OpenApi)]
#[openapi(paths())]
pub(crate) struct Doc;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
}
