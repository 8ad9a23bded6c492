//! Server-Sent Events responses: `data: <compact json>\n\n` frames.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::mpsc;

/// Frames waiting to be sent before a producer waits for its client.
const BUFFERED_FRAMES: usize = 16;

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

/// A response whose frames are whatever is sent on the returned sender, until it is dropped.
/// A send fails (and `closed()` completes) once the client has gone away.
pub(crate) fn channel() -> (mpsc::Sender<Bytes>, Response) {
    let (sender, mut receiver) = mpsc::channel::<Bytes>(BUFFERED_FRAMES);
    (sender, response(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))))
}
