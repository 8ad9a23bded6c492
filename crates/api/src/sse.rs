//! Server-Sent Events responses: `data: <compact json>\n\n` frames.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::mpsc;

/// One event of a `text/event-stream` answer, as the OpenAPI document describes it.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: events are written by `frame`
pub(crate) struct ServerSentEvent {
    /// A JSON object on one line; its `type` names the event.
    data: String,
}

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

/// A response whose frames are whatever is sent on the returned [`Frames`], until it is
/// dropped. A client that takes longer than `stall` to accept a frame counts as gone, so a
/// reader that stops reading cannot hold the producer (and what it holds) forever.
pub(crate) fn channel(stall: Duration) -> (Frames, Response) {
    let (sender, mut receiver) = mpsc::channel::<Bytes>(BUFFERED_FRAMES);
    let frames = Frames { sender, stall };
    (frames, response(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))))
}

/// The sending end of [`channel`].
#[derive(Debug)]
pub(crate) struct Frames {
    sender: mpsc::Sender<Bytes>,
    stall: Duration,
}

impl Frames {
    /// Sends one frame; `false` when the client has gone away or stopped reading.
    pub(crate) async fn send(&self, frame: Bytes) -> bool {
        matches!(tokio::time::timeout(self.stall, self.sender.send(frame)).await, Ok(Ok(())))
    }

    /// Completes when the client has gone away.
    pub(crate) async fn closed(&self) {
        self.sender.closed().await;
    }
}
