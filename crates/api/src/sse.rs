//! Server-Sent Events responses: `data: <compact json>\n\n` frames.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde_json::Value;
/// One event of a `text/event-stream` answer, as the OpenAPI document describes it.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: events are written by `frame`
pub(crate) struct ServerSentEvent {
    /// A JSON object on one line; its `type` names the event.
    data: String,
}

/// One frame.
pub(crate) fn frame(event: &Value) -> Bytes {
    Bytes::from(format!("data: {event}\n\n"))
}

/// A `text/event-stream` response of the given frames.
pub(crate) fn response(frames: impl futures::Stream<Item = Bytes> + Send + 'static) -> Response {
    (
        [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")],
        Body::from_stream(frames.map(Ok::<_, std::io::Error>)),
    )
        .into_response()
}
