//! A stream of events whose producer notices when its consumer is gone.
//!
//! The engine produces a streamed answer in a task of its own, persisting as it goes; the
//! transport (Server-Sent Events, in the API crate) consumes [`Events`]. When the consumer
//! drops them (the client left) or stops taking them for longer than the stall limit, the
//! producer learns it at its next send, or at once while it waits (see [`EventSender::closed`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

/// Events waiting to be taken before a producer waits for its consumer.
const BUFFERED_EVENTS: usize = 16;

/// A channel of events: the producer's end and the consumer's.
pub fn channel(stall: Duration) -> (EventSender, Events) {
    let (sender, receiver) = mpsc::channel(BUFFERED_EVENTS);
    (EventSender { sender, stall }, Events { receiver })
}

/// The producing end of [`channel`].
#[derive(Debug)]
pub struct EventSender {
    sender: mpsc::Sender<Value>,
    stall: Duration,
}

impl EventSender {
    /// Sends one event; `false` when the consumer has gone away or stopped taking events.
    pub async fn send(&self, event: Value) -> bool {
        matches!(tokio::time::timeout(self.stall, self.sender.send(event)).await, Ok(Ok(())))
    }

    /// Completes when the consumer has gone away.
    pub async fn closed(&self) {
        self.sender.closed().await;
    }
}

/// The consuming end of [`channel`]: the events, until the producer is done.
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::Receiver<Value>,
}

impl Events {
    /// No events at all (the SDK's answer to a retry after an unknown item).
    pub fn empty() -> Self {
        let (_, receiver) = mpsc::channel(1);
        Self { receiver }
    }

    /// Just these events.
    pub fn of(events: Vec<Value>) -> Self {
        let (sender, receiver) = mpsc::channel(events.len().max(1));
        for event in events {
            // The channel has room for every one of them.
            let _ = sender.try_send(event);
        }
        Self { receiver }
    }
}

impl futures::Stream for Events {
    type Item = Value;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Value>> {
        self.receiver.poll_recv(cx)
    }
}
