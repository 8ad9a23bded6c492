//! Liveness, readiness and metrics: the unauthenticated routes that operators and
//! orchestrators poll.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz, metrics))]
pub(crate) struct Doc;

/// How long `/readyz` waits for the database before calling it unavailable.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    /// `ok` (the process is up) or `ready` (the database answers).
    status: &'static str,
}

/// The process is up. Does not touch the database.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Status)))]
pub(crate) async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The server can serve requests: its database is open (and migrated) and answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "The database answers", body = Status),
    (status = 503, description = "The database is unreachable, or not open yet: the server is starting", body = ErrorBody),
))]
pub(crate) async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Status>> {
    match tokio::time::timeout(READINESS_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => Ok(Json(Status { status: "ready" })),
        Ok(Err(err)) => Err(ApiError::Unavailable(err.into())),
        Err(_) => Err(ApiError::Unavailable(anyhow::anyhow!(
            "the database did not answer within {READINESS_TIMEOUT:?}"
        ))),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text format (which Prometheus reads)",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(&state.db),
    )
}
