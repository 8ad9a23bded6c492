//! Responders: what answers a user's message in a ChatKit thread, the Rust counterpart of
//! `ChatKitServer.respond()`.

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use serde_json::{Value, json};

/// What a responder sends: a ChatKit thread stream event (`thread.item.added`, `...updated`,
/// `...done`, `...removed`, `...replaced`, `progress_update`, `notice`, ...), or a change to the
/// thread itself.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponderEvent {
    Event(Value),
    SetTitle(String),
}

/// Why a responder failed; the client gets an `error` event and the stream ends normally.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResponderError(pub String);

/// The thread and the new user message a responder answers.
#[derive(Debug, Clone)]
pub struct RespondInput {
    /// The thread's stored metadata.
    pub thread: Value,
    /// The user message just stored (ChatKit stored form), or `None` when the turn continues
    /// without one (after a client tool's output).
    pub user_message: Option<Value>,
    /// A fresh assistant message id (`msg_` and 128 random bits).
    pub message_id: String,
}

/// Answers user messages.
pub trait Responder: Send + Sync + Debug {
    fn respond(
        &self,
        input: RespondInput,
    ) -> BoxStream<'static, Result<ResponderEvent, ResponderError>>;
}

/// Offline: streams an assistant message that repeats the user's text, word by word, and titles
/// an untitled thread after the message. Without a user message it has nothing to say.
#[derive(Debug, Clone, Default)]
pub struct EchoResponder {
    /// A pause between words, to make streaming (and disconnects) observable.
    pub delay: Duration,
}

/// The text parts of a user message, joined.
pub(crate) fn user_text(message: &Value) -> String {
    message
        .get("content")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|part| part.get("type").and_then(Value::as_str) == Some("input_text"))
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Now as the SDK writes timestamps: a naive ISO 8601 string (taken as UTC here).
pub(crate) fn naive_now() -> String {
    chrono::Utc::now().naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

impl Responder for EchoResponder {
    fn respond(
        &self,
        input: RespondInput,
    ) -> BoxStream<'static, Result<ResponderEvent, ResponderError>> {
        let Some(user_message) = &input.user_message else {
            return Box::pin(futures::stream::empty());
        };
        let text = user_text(user_message);
        let thread_id = input.thread.get("id").cloned().unwrap_or(Value::Null);
        let id = input.message_id;
        let created_at = naive_now();
        let message = |content: Value| json!({"id": id, "thread_id": thread_id, "created_at": created_at, "type": "assistant_message", "content": content});
        let part = |text: &str| json!({"annotations": [], "text": text, "type": "output_text"});
        let update =
            |update: Value| json!({"type": "thread.item.updated", "item_id": id, "update": update});

        let mut events = vec![
            ResponderEvent::Event(json!({"type": "thread.item.added", "item": message(json!([]))})),
            ResponderEvent::Event(update(
                json!({"type": "assistant_message.content_part.added", "content_index": 0, "content": part("")}),
            )),
        ];
        let words: Vec<&str> = text.split_inclusive(' ').collect();
        for word in &words {
            events.push(ResponderEvent::Event(update(json!({
                "type": "assistant_message.content_part.text_delta", "content_index": 0, "delta": word
            }))));
        }
        events.push(ResponderEvent::Event(update(json!({
            "type": "assistant_message.content_part.done", "content_index": 0, "content": part(&text)
        }))));
        events.push(ResponderEvent::Event(
            json!({"type": "thread.item.done", "item": message(json!([part(&text)]))}),
        ));
        if input.thread.get("title").is_none_or(Value::is_null) && !text.is_empty() {
            events.push(ResponderEvent::SetTitle(text.chars().take(60).collect()));
        }
        let delay = self.delay;
        Box::pin(futures::stream::iter(events).then(move |event| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(event)
        }))
    }
}
