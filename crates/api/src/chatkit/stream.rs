//! The streaming ChatKit requests: Server-Sent Events driven by a [`Responder`], persisted
//! event by event as `ChatKitServer._process_events` does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use repositories::chatkit::{DbStore, SortOrder, Store, StoreItemType};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::responder::{RespondInput, Responder, ResponderEvent, naive_now};
use super::{params, parse_json, wire};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What the SDK stores when a client stops a stream, for the model to see next time.
const CANCELLED: &str = "The user cancelled the stream. Stop responding to the prior request.";

/// `UserMessageInput`: `content`, `attachments` (ids) and `inference_options` are required.
#[derive(Debug, Deserialize)]
struct UserMessageInput {
    content: Vec<Value>,
    attachments: Vec<String>,
    #[serde(default)]
    quoted_text: Option<String>,
    inference_options: Value,
}

#[derive(Debug, Deserialize)]
struct CreateParams {
    input: UserMessageInput,
}

#[derive(Debug, Deserialize)]
struct ToolOutputParams {
    thread_id: String,
    result: Value,
}

#[derive(Debug, Deserialize)]
struct RetryParams {
    thread_id: String,
    item_id: String,
}

#[derive(Debug, Deserialize)]
struct AddUserMessageParams {
    input: UserMessageInput,
    thread_id: String,
}

/// One SSE frame, in wire form.
fn frame(mut event: Value) -> Bytes {
    if let Some(item) = event.get_mut("item") {
        *item = wire::item(std::mem::take(item));
    }
    Bytes::from(format!("data: {}\n\n", wire::drop_nulls(event)))
}

/// Answers `threads.create`, `threads.add_user_message`, `threads.retry_after_item` and
/// `threads.add_client_tool_output`; other request types are not handled here (`None`).
pub(crate) async fn start(
    state: &AppState,
    user: &str,
    kind: &str,
    params_value: Value,
) -> Option<ApiResult<Response>> {
    let store = state.db.chatkit();
    let answer = match kind {
        "threads.create" => {
            let CreateParams { input } = match params(kind, params_value) {
                Ok(p) => p,
                Err(err) => return Some(Err(err)),
            };
            create(state, &store, user, input).await
        }
        "threads.add_user_message" => {
            let AddUserMessageParams { input, thread_id } = match params(kind, params_value) {
                Ok(p) => p,
                Err(err) => return Some(Err(err)),
            };
            add_user_message(state, &store, user, &thread_id, input).await
        }
        "threads.retry_after_item" => {
            let RetryParams { thread_id, item_id } = match params(kind, params_value) {
                Ok(p) => p,
                Err(err) => return Some(Err(err)),
            };
            retry_after_item(state, &store, user, &thread_id, &item_id).await
        }
        "threads.add_client_tool_output" => {
            let ToolOutputParams { thread_id, result } = match params(kind, params_value) {
                Ok(p) => p,
                Err(err) => return Some(Err(err)),
            };
            add_client_tool_output(state, &store, user, &thread_id, result).await
        }
        _ => return None,
    };
    Some(answer)
}

async fn create(
    state: &AppState,
    store: &DbStore,
    user: &str,
    input: UserMessageInput,
) -> ApiResult<Response> {
    // Attachments are resolved first, so a bad id is a 4xx before anything is written.
    let attachments = load_attachments(store, user, &input.attachments).await?;
    let thread_id = store.generate_thread_id(user);
    let thread = json!({"title": null, "id": thread_id, "created_at": naive_now(),
        "status": {"type": "active"}, "allowed_image_domains": null, "metadata": {}});
    let saved = store.save_thread(&thread.to_string(), user).await?;
    let thread = parse_json(&saved.stored.json)?;
    let created =
        json!({"type": "thread.created", "thread": wire::thread(&thread, wire::empty_page())});
    let mut prelude = vec![frame(created)];
    let user_message = store_user_message(store, user, &thread, input, attachments).await?;
    prelude.push(frame(json!({"type": "thread.item.done", "item": user_message})));
    Ok(respond(state, user, thread, Some(user_message), prelude))
}

async fn add_user_message(
    state: &AppState,
    store: &DbStore,
    user: &str,
    thread_id: &str,
    input: UserMessageInput,
) -> ApiResult<Response> {
    let thread = parse_json(&store.load_thread(thread_id, user).await?.json)?;
    let attachments = load_attachments(store, user, &input.attachments).await?;
    let user_message = store_user_message(store, user, &thread, input, attachments).await?;
    let prelude = vec![frame(json!({"type": "thread.item.done", "item": user_message}))];
    Ok(respond(state, user, thread, Some(user_message), prelude))
}

/// `threads.add_client_tool_output`: the newest item must be a pending client tool call; it
/// gets the result and is completed, any other call still pending among the newest 20 is
/// dropped, and the responder carries on without a new user message.
async fn add_client_tool_output(
    state: &AppState,
    store: &DbStore,
    user: &str,
    thread_id: &str,
    result: Value,
) -> ApiResult<Response> {
    let thread = parse_json(&store.load_thread(thread_id, user).await?.json)?;
    let newest = store.load_thread_items(thread_id, None, 1, SortOrder::Desc, user).await?;
    let mut call = match newest.data.first() {
        Some(item) => parse_json(&item.json)?,
        None => Value::Null,
    };
    if call["type"] != "client_tool_call" || call["status"] != "pending" {
        return Err(ApiError::invalid(format!(
            "the last item of thread {thread_id:?} is not a pending client tool call"
        )));
    }
    call["output"] = result;
    call["status"] = Value::String("completed".into());
    store.save_item(thread_id, &call.to_string(), user).await?;
    let recent =
        store.load_thread_items(thread_id, None, RETRY_PAGE, SortOrder::Desc, user).await?;
    for item in &recent.data {
        let value = parse_json(&item.json)?;
        if value["type"] == "client_tool_call" && value["status"] == "pending" {
            store.delete_thread_item(thread_id, &item.id, user).await?;
        }
    }
    Ok(respond(state, user, thread, None, Vec::new()))
}

/// Items read per page while looking for the item to retry after, as the SDK does.
const RETRY_PAGE: u64 = 20;

/// `threads.retry_after_item`: deletes every item newer than the given user message and
/// answers it again. An id that names no item of the thread gives an empty stream, as in the
/// SDK; one that names something other than a user message is a 400.
async fn retry_after_item(
    state: &AppState,
    store: &DbStore,
    user: &str,
    thread_id: &str,
    item_id: &str,
) -> ApiResult<Response> {
    let thread = parse_json(&store.load_thread(thread_id, user).await?.json)?;
    let mut newer = Vec::new();
    let mut after: Option<String> = None;
    let found = loop {
        let page = store
            .load_thread_items(thread_id, after.as_deref(), RETRY_PAGE, SortOrder::Desc, user)
            .await?;
        if let Some(position) = page.data.iter().position(|item| item.id == item_id) {
            newer.extend(page.data[..position].iter().map(|item| item.id.clone()));
            break Some(parse_json(&page.data[position].json)?);
        }
        newer.extend(page.data.iter().map(|item| item.id.clone()));
        match page.after {
            Some(next) if page.has_more => after = Some(next),
            _ => break None,
        }
    };
    let Some(user_message) = found else {
        return Ok(event_stream(futures::stream::empty()));
    };
    if user_message["type"] != "user_message" {
        return Err(ApiError::invalid(format!("item {item_id:?} is not a user message")));
    }
    for id in &newer {
        store.delete_thread_item(thread_id, id, user).await?;
    }
    Ok(respond(state, user, thread, Some(user_message), Vec::new()))
}

async fn load_attachments(store: &DbStore, user: &str, ids: &[String]) -> ApiResult<Vec<Value>> {
    let mut attachments = Vec::with_capacity(ids.len());
    for id in ids {
        attachments.push(parse_json(&store.load_attachment(id, user).await?.json)?);
    }
    Ok(attachments)
}

/// Builds the user message, stamps its attachments with the thread, and stores both.
async fn store_user_message(
    store: &DbStore,
    user: &str,
    thread: &Value,
    input: UserMessageInput,
    mut attachments: Vec<Value>,
) -> ApiResult<Value> {
    let thread_id = thread["id"].as_str().unwrap_or_default().to_owned();
    for attachment in &mut attachments {
        attachment["thread_id"] = Value::String(thread_id.clone());
        store.save_attachment(&attachment.to_string(), user).await?;
    }
    let message = json!({
        "id": store.generate_item_id(StoreItemType::Message, &thread_id, user),
        "thread_id": thread_id,
        "created_at": naive_now(),
        "type": "user_message",
        "content": input.content,
        "attachments": attachments,
        "quoted_text": input.quoted_text,
        "inference_options": input.inference_options,
    });
    let saved = store.add_thread_item(&thread_id, &message.to_string(), user).await?;
    parse_json(&saved.stored.json)
}

/// The SSE response: the prelude, `stream_options`, then the responder's events, each
/// persisted before it is sent.
fn respond(
    state: &AppState,
    user: &str,
    thread: Value,
    user_message: Option<Value>,
    prelude: Vec<Bytes>,
) -> Response {
    let (sender, mut receiver) = mpsc::channel::<Bytes>(16);
    let store = state.db.chatkit();
    let responder = state.responder.clone();
    let user = user.to_owned();
    tokio::spawn(async move {
        let mut pipeline = Pipeline { store, user, thread, pending: HashMap::new(), sender };
        pipeline.run(responder, user_message, prelude).await;
    });
    event_stream(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
}

/// A `text/event-stream` response of the given frames.
fn event_stream(frames: impl futures::Stream<Item = Bytes> + Send + 'static) -> Response {
    (
        [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")],
        Body::from_stream(frames.map(Ok::<_, std::io::Error>)),
    )
        .into_response()
}

struct Pipeline {
    store: DbStore,
    user: String,
    thread: Value,
    /// Items announced by `thread.item.added` and not yet done, as updated so far.
    pending: HashMap<String, Value>,
    sender: mpsc::Sender<Bytes>,
}

impl Pipeline {
    async fn run(
        &mut self,
        responder: Arc<dyn Responder>,
        user_message: Option<Value>,
        prelude: Vec<Bytes>,
    ) {
        for chunk in prelude {
            if self.sender.send(chunk).await.is_err() {
                return self.cancelled().await;
            }
        }
        let options = json!({"type": "stream_options", "stream_options": {"allow_cancel": true}});
        if self.sender.send(frame(options)).await.is_err() {
            return self.cancelled().await;
        }
        let thread_id = self.thread_id();
        let message_id =
            self.store.generate_item_id(StoreItemType::Message, &thread_id, &self.user);
        let mut events = responder.respond(RespondInput {
            thread: self.thread.clone(),
            user_message,
            message_id,
        });
        while let Some(event) = events.next().await {
            let outcome = match event {
                Ok(event) => self.handle(event).await,
                Err(err) => Err(err.to_string()),
            };
            match outcome {
                Ok(true) => {}
                Ok(false) => return self.cancelled().await,
                Err(reason) => {
                    tracing::warn!(%reason, "a ChatKit responder failed");
                    let error =
                        json!({"type": "error", "code": "stream.error", "allow_retry": true});
                    let _ = self.sender.send(frame(error)).await;
                    return;
                }
            }
        }
    }

    fn thread_id(&self) -> String {
        self.thread["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Persists and sends one event; `Ok(false)` when the client is gone.
    async fn handle(&mut self, event: ResponderEvent) -> Result<bool, String> {
        let thread_id = self.thread_id();
        let event = match event {
            ResponderEvent::SetTitle(title) => {
                self.thread["title"] = Value::String(title);
                let saved = self
                    .store
                    .save_thread(&self.thread.to_string(), &self.user)
                    .await
                    .map_err(|e| e.to_string())?;
                self.thread =
                    serde_json::from_str(&saved.stored.json).map_err(|e| e.to_string())?;
                json!({"type": "thread.updated", "thread": wire::thread(&self.thread, wire::empty_page())})
            }
            ResponderEvent::Event(event) => {
                let kind = event["type"].as_str().unwrap_or_default().to_owned();
                match kind.as_str() {
                    "thread.item.added" => {
                        if let Some(id) = event["item"]["id"].as_str() {
                            self.pending.insert(id.to_owned(), event["item"].clone());
                        }
                    }
                    "thread.item.updated" => {
                        if let Some(item) =
                            event["item_id"].as_str().and_then(|id| self.pending.get_mut(id))
                        {
                            apply_update(item, &event["update"]);
                        }
                    }
                    "thread.item.done" => {
                        let item = &event["item"];
                        self.store
                            .add_thread_item(&thread_id, &item.to_string(), &self.user)
                            .await
                            .map_err(|e| e.to_string())?;
                        if let Some(id) = item["id"].as_str() {
                            self.pending.remove(id);
                        }
                        if wire::is_hidden(item) {
                            return Ok(true); // persisted, never sent
                        }
                    }
                    "thread.item.removed" => {
                        let id = event["item_id"].as_str().unwrap_or_default();
                        self.store
                            .delete_thread_item(&thread_id, id, &self.user)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    "thread.item.replaced" => {
                        self.store
                            .save_item(&thread_id, &event["item"].to_string(), &self.user)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    _ => {}
                }
                event
            }
        };
        Ok(self.sender.send(frame(event)).await.is_ok())
    }

    /// The client went away: keep what the assistant had said, and a note that it was cut off,
    /// as `ChatKitServer.handle_stream_cancelled` does.
    async fn cancelled(&mut self) {
        let thread_id = self.thread_id();
        for item in self.pending.values() {
            let said = item["content"]
                .as_array()
                .map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect::<String>())
                .unwrap_or_default();
            if item["type"] == "assistant_message"
                && !said.trim().is_empty()
                && let Err(err) =
                    self.store.add_thread_item(&thread_id, &item.to_string(), &self.user).await
            {
                tracing::warn!(error = %err, "saving a cancelled assistant message failed");
            }
        }
        let marker = json!({
            "id": self.store.generate_item_id(StoreItemType::SdkHiddenContext, &thread_id, &self.user),
            "thread_id": thread_id, "created_at": naive_now(), "type": "sdk_hidden_context", "content": CANCELLED,
        });
        if let Err(err) =
            self.store.add_thread_item(&thread_id, &marker.to_string(), &self.user).await
        {
            tracing::warn!(error = %err, "saving the cancellation marker failed");
        }
    }
}

/// Applies an assistant content update to a pending item (the updates the SDK tracks).
fn apply_update(item: &mut Value, update: &Value) {
    let index = update["content_index"].as_u64().and_then(|i| usize::try_from(i).ok()).unwrap_or(0);
    let Some(content) = item.get_mut("content").and_then(Value::as_array_mut) else { return };
    match update["type"].as_str() {
        Some("assistant_message.content_part.added") => {
            content.insert(index.min(content.len()), update["content"].clone());
        }
        Some("assistant_message.content_part.text_delta") => {
            if let Some(part) = content.get_mut(index) {
                let text = format!(
                    "{}{}",
                    part["text"].as_str().unwrap_or_default(),
                    update["delta"].as_str().unwrap_or_default()
                );
                part["text"] = Value::String(text);
            }
        }
        Some("assistant_message.content_part.done") => {
            if let Some(part) = content.get_mut(index) {
                *part = update["content"].clone();
            }
        }
        _ => {}
    }
}
