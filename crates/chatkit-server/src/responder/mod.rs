//! Responders: what answers a conversation. The Rust counterpart of `ChatKitServer.respond()`
//! and `action()`, also behind `POST /chat/run`.
//!
//! A responder's one required method, [`Responder::reply`], streams the assistant's answer to a
//! conversation as pieces of text. The ChatKit side ([`Responder::respond`],
//! [`Responder::action`]) wraps that text in ChatKit's stream events; a responder may override
//! them to send other events (widgets, workflows, client tool calls, ...).

pub mod convert;
mod echo;
mod openai;
mod settings;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use serde_json::{Value, json};

pub use echo::EchoResponder;
pub use openai::OpenAiResponder;

pub use settings::{OpenAiSettings, ResponderKind, ResponderSettings};

/// The assistant's answer, piece by piece.
pub type TextStream = BoxStream<'static, Result<String, ResponderError>>;
/// What a responder sends a ChatKit thread.
pub type EventStream = BoxStream<'static, Result<ResponderEvent, ResponderError>>;

/// One turn of a conversation, in the shape every chat model understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    System(String),
    User(String),
    Assistant(String),
    /// The assistant called a tool; `arguments` is JSON text.
    ToolCall {
        call_id: String,
        name: String,
        arguments: String,
    },
    /// The output of the tool call with the same `call_id`, as text.
    ToolResult {
        call_id: String,
        output: String,
    },
}

/// What a responder sends: a ChatKit thread stream event (`thread.item.added`, `...updated`,
/// `...done`, `...removed`, `...replaced`, `progress_update`, `notice`, ...), or a change to the
/// thread itself (the SDK's responders assign to the thread they are given).
#[derive(Debug, Clone, PartialEq)]
pub enum ResponderEvent {
    Event(Value),
    /// Fields to set on the thread (`title`, `status`, `metadata`, ...; not `id` or
    /// `created_at`): the thread is saved and `thread.updated` sent.
    UpdateThread(serde_json::Map<String, Value>),
}

impl ResponderEvent {
    /// Gives the thread a title.
    pub fn set_title(title: impl Into<String>) -> Self {
        let mut fields = serde_json::Map::new();
        fields.insert("title".into(), Value::String(title.into()));
        Self::UpdateThread(fields)
    }
}

/// Why a responder failed. Either way a ChatKit client gets an `error` event and the stream
/// ends normally, as in the SDK.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// A message meant for the user (the SDK's `CustomStreamError`), sent as written.
    #[error("{message}")]
    Custom { message: String, allow_retry: bool },
    /// Anything else: logged, and the user is offered a retry without the details.
    #[error("{0}")]
    Failed(String),
}

/// The thread and the new user message a responder answers.
#[derive(Debug, Clone)]
pub struct RespondInput {
    /// The thread's stored metadata.
    pub thread: Value,
    /// The user message just stored (ChatKit stored form), or `None` when the turn continues
    /// without one (after a client tool's output or a structured input).
    pub user_message: Option<Value>,
    /// The thread's newest items, oldest first, as many as [`Responder::history_items`] asks
    /// for (the new user message included).
    pub history: Vec<Value>,
    /// A fresh assistant message id (`msg_` and 128 random bits).
    pub message_id: String,
}

/// A widget action (`threads.custom_action`) a responder reacts to.
#[derive(Debug, Clone)]
pub struct ActionInput {
    /// The thread's stored metadata.
    pub thread: Value,
    /// `{"type": str, "payload": any}`.
    pub action: Value,
    /// The widget item the action came from, when the client named one.
    pub sender: Option<Value>,
    /// A fresh assistant message id.
    pub message_id: String,
}

/// Answers conversations.
pub trait Responder: Send + Sync + Debug {
    /// Streams the assistant's answer to `conversation`, as pieces of text.
    fn reply(&self, conversation: Vec<Message>) -> TextStream;

    /// How many of a conversation's newest items [`Responder::respond`] and `POST /chat/run`
    /// read for it (`0`: none; the new message alone).
    fn history_items(&self) -> u64 {
        0
    }

    /// `ChatKitServer.respond()`: answers a thread with one assistant message streaming
    /// [`Responder::reply`] to the thread's history, and titles an untitled thread after the
    /// user's words.
    fn respond(&self, input: RespondInput) -> EventStream {
        let conversation = if input.history.is_empty() {
            input.user_message.iter().flat_map(convert::thread_item).collect()
        } else {
            convert::thread_items(&input.history)
        };
        let title = untitled_thread_title(&input);
        assistant_message(&input.thread, input.message_id, self.reply(conversation), title)
    }

    /// `ChatKitServer.action()`: reacts to a widget action. Like the SDK's default (which
    /// raises `NotImplementedError`), this responder has none: the client gets a
    /// `stream.error`.
    fn action(&self, input: ActionInput) -> EventStream {
        let kind = input.action["type"].as_str().unwrap_or_default().to_owned();
        Box::pin(futures::stream::once(async move {
            Err(ResponderError::Failed(format!(
                "this responder has no handler for the action {kind:?}"
            )))
        }))
    }
}

/// The responder the settings choose.
pub fn from_settings(settings: &ResponderSettings) -> anyhow::Result<Arc<dyn Responder>> {
    Ok(match settings.kind {
        ResponderKind::Echo => {
            Arc::new(EchoResponder { delay: Duration::from_millis(settings.echo_delay_ms) })
        }
        ResponderKind::Openai => Arc::new(OpenAiResponder::new(settings)?),
    })
}

/// A title for a thread that has none: the start of the user's message.
fn untitled_thread_title(input: &RespondInput) -> Option<String> {
    let untitled = input.thread.get("title").is_none_or(Value::is_null);
    let text = input.user_message.as_ref().map(user_text).unwrap_or_default();
    (untitled && !text.trim().is_empty()).then(|| text.trim().chars().take(60).collect())
}

/// The text parts of a ChatKit user message, joined.
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

/// The ChatKit events of one streamed assistant message, as `stream_agent_response` sends
/// them: added, content part added, a text delta per piece, content part done, item done;
/// then the title, if any. A failing `text` ends the events with its error.
pub fn assistant_message(
    thread: &Value,
    message_id: String,
    mut text: TextStream,
    title: Option<String>,
) -> EventStream {
    let thread_id = thread.get("id").cloned().unwrap_or(Value::Null);
    let created_at = naive_now();
    let message = move |content: Value| {
        json!({"id": message_id, "thread_id": thread_id, "created_at": created_at,
               "type": "assistant_message", "content": content})
    };
    let part = |text: &str| json!({"annotations": [], "text": text, "type": "output_text"});
    let item_id = message(json!([]))["id"].clone();
    let update = move |update: Value| {
        ResponderEvent::Event(
            json!({"type": "thread.item.updated", "item_id": item_id, "update": update}),
        )
    };
    Box::pin(async_stream::try_stream! {
        yield ResponderEvent::Event(json!({"type": "thread.item.added", "item": message(json!([]))}));
        yield update(json!({"type": "assistant_message.content_part.added", "content_index": 0,
                            "content": part("")}));
        let mut said = String::new();
        while let Some(piece) = text.next().await {
            let piece = piece?;
            if piece.is_empty() {
                continue;
            }
            said.push_str(&piece);
            yield update(json!({"type": "assistant_message.content_part.text_delta",
                                "content_index": 0, "delta": piece}));
        }
        yield update(json!({"type": "assistant_message.content_part.done", "content_index": 0,
                            "content": part(&said)}));
        yield ResponderEvent::Event(json!({"type": "thread.item.done",
                                           "item": message(json!([part(&said)]))}));
        if let Some(title) = title {
            yield ResponderEvent::set_title(title);
        }
    })
}
