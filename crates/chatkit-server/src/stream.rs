//! The streaming ChatKit requests: Server-Sent Events driven by a [`Responder`], persisted
//! event by event as `ChatKitServer._process_events` does.

use std::collections::HashMap;

use futures::StreamExt;
use repositories::RepoError;
use repositories::chatkit::{
    DbStore, ItemChanges, SortOrder, Store, StoreItemType, StoredItem, StoredThread,
};
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::error::{ChatKitError, ChatKitResult};
use crate::events::{self, EventSender, Events};
use crate::request::{
    Action, ChatKitRequest, CustomActionParams, StructuredInputParams, StructuredInputSubmission,
    SubmissionStatus, UserMessageInput,
};
use crate::responder::{
    ActionInput, RespondInput, Responder, ResponderError, ResponderEvent, naive_now,
};
use crate::server::{ChatKitServer, parse_json};
use crate::wire;

/// Empty content parts added to reach an update's `content_index`, at most.
const MAX_CONTENT_PADDING: usize = 64;

/// What the SDK stores when a client stops a stream, for the model to see next time.
const CANCELLED: &str = "The user cancelled the stream. Stop responding to the prior request.";

/// An event in wire form.
fn frame(mut event: Value) -> Value {
    if let Some(item) = event.get_mut("item") {
        *item = wire::item(std::mem::take(item));
    }
    wire::drop_nulls(event)
}

impl ChatKitServer {
    /// Answers one of the six streaming request types.
    pub(crate) async fn stream(
        &self,
        user: &str,
        request: ChatKitRequest,
    ) -> ChatKitResult<Events> {
        let store = &self.store;
        match request {
            ChatKitRequest::CreateThread(params) => create(self, store, user, params.input).await,
            ChatKitRequest::AddUserMessage(params) => {
                add_user_message(self, store, user, &params.thread_id, params.input).await
            }
            ChatKitRequest::RetryAfterItem(params) => {
                retry_after_item(self, store, user, &params.thread_id, &params.item_id).await
            }
            ChatKitRequest::AddClientToolOutput(params) => {
                add_client_tool_output(self, store, user, &params.thread_id, params.result).await
            }
            ChatKitRequest::AddStructuredInput(params) => {
                let StructuredInputParams { thread_id, item_id, input } = params;
                add_structured_input(self, store, user, &thread_id, &item_id, input).await
            }
            ChatKitRequest::CustomAction(params) => {
                let CustomActionParams { thread_id, item_id, action } = params;
                custom_action(self, store, user, &thread_id, item_id.as_deref(), action).await
            }
            json => Err(ChatKitError::invalid(format!("{json:?} is not a streaming request"))),
        }
    }
}

async fn create(
    server: &ChatKitServer,
    store: &DbStore,
    user: &str,
    input: UserMessageInput,
) -> ChatKitResult<Events> {
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
    let (_, user_message) =
        store_user_message(store, user, &saved.stored.id, input, attachments).await?;
    prelude.push(frame(json!({"type": "thread.item.done", "item": user_message})));
    Ok(respond(server, user, thread, prelude, Turn::answer(Some(user_message))))
}

async fn add_user_message(
    server: &ChatKitServer,
    store: &DbStore,
    user: &str,
    thread_id: &str,
    input: UserMessageInput,
) -> ChatKitResult<Events> {
    // The SDK loads the thread before the attachments, so a missing thread is the error of a
    // request with a bad attachment too. Without attachments the thread comes back with the
    // stored message, in the same statement on PostgreSQL: a turn's first round trip saved.
    if !input.attachments.is_empty() {
        store.load_thread(thread_id, user).await?;
    }
    let attachments = load_attachments(store, user, &input.attachments).await?;
    let (thread, user_message) =
        store_user_message(store, user, thread_id, input, attachments).await?;
    let thread = parse_json(&thread.json)?;
    let prelude = vec![frame(json!({"type": "thread.item.done", "item": user_message}))];
    Ok(respond(server, user, thread, prelude, Turn::answer(Some(user_message))))
}

/// `threads.add_client_tool_output`: the newest item must be a pending client tool call; it
/// gets the result and is completed, any other call still pending among the newest 20 is
/// dropped (all in one transaction), and the responder carries on without a new user message.
async fn add_client_tool_output(
    server: &ChatKitServer,
    store: &DbStore,
    user: &str,
    thread_id: &str,
    result: Value,
) -> ChatKitResult<Events> {
    let thread = parse_json(&store.load_thread(thread_id, user).await?.json)?;
    store
        .edit_newest_items(thread_id, user, PENDING_CALLS_WINDOW, |newest| {
            complete_tool_call(thread_id, newest, result)
        })
        .await?;
    Ok(respond(server, user, thread, Vec::new(), Turn::answer(None)))
}

/// How many of the newest items are searched for other pending client tool calls to drop, as
/// the SDK does.
const PENDING_CALLS_WINDOW: u64 = 20;

/// The changes of `threads.add_client_tool_output` to the thread's newest items (newest
/// first): the newest, which must be a pending client tool call, gets the result and is
/// completed; any other pending call among them goes.
fn complete_tool_call(
    thread_id: &str,
    newest: &[StoredItem],
    result: Value,
) -> Result<ItemChanges, RepoError> {
    let parse = |item: &StoredItem| {
        serde_json::from_str::<Value>(&item.json)
            .map_err(|err| RepoError::Invalid(format!("a stored item is not JSON: {err}")))
    };
    let is_pending_call =
        |item: &Value| item["type"] == "client_tool_call" && item["status"] == "pending";
    let mut call = match newest.first() {
        Some(item) => parse(item)?,
        None => Value::Null,
    };
    if !is_pending_call(&call) {
        return Err(RepoError::Invalid(format!(
            "the last item of thread {thread_id:?} is not a pending client tool call"
        )));
    }
    call["output"] = result;
    call["status"] = Value::String("completed".into());
    let mut delete = Vec::new();
    for item in newest.iter().skip(1) {
        if is_pending_call(&parse(item)?) {
            delete.push(item.id.clone());
        }
    }
    Ok(ItemChanges { save: vec![call.to_string()], delete })
}

/// `threads.retry_after_item`: deletes every item newer than the given user message (in one
/// statement) and answers it again. An id that names no item of the thread gives an empty stream, as in the
/// SDK; one that names something other than a user message is a 400.
async fn retry_after_item(
    server: &ChatKitServer,
    store: &DbStore,
    user: &str,
    thread_id: &str,
    item_id: &str,
) -> ChatKitResult<Events> {
    let thread = parse_json(&store.load_thread(thread_id, user).await?.json)?;
    let user_message = match store.load_item(thread_id, item_id, user).await {
        Ok(item) => parse_json(&item.json)?,
        Err(RepoError::NotFound(_)) => return Ok(Events::empty()),
        Err(err) => return Err(err.into()),
    };
    if user_message["type"] != "user_message" {
        return Err(ChatKitError::invalid(format!("item {item_id:?} is not a user message")));
    }
    store.delete_items_after(thread_id, item_id, user).await?;
    Ok(respond(server, user, thread, Vec::new(), Turn::answer(Some(user_message))))
}

/// `threads.add_structured_input`: the item must be a pending structured input; the answers
/// are applied as the SDK does, the item is replaced (through the event pipeline, so it is
/// saved like any replacement), and the responder carries on without a new user message.
async fn add_structured_input(
    server: &ChatKitServer,
    store: &DbStore,
    user: &str,
    thread_id: &str,
    item_id: &str,
    submission: StructuredInputSubmission,
) -> ChatKitResult<Events> {
    let thread = parse_json(&store.load_thread(thread_id, user).await?.json)?;
    let mut item = parse_json(&store.load_item(thread_id, item_id, user).await?.json)?;
    if item["type"] != "structured_input" {
        return Err(ChatKitError::invalid(format!("item {item_id:?} is not a structured input")));
    }
    // The SDK's model defaults a missing status to pending.
    if item["status"].as_str().unwrap_or("pending") != "pending" {
        return Err(ChatKitError::invalid(format!("structured input {item_id:?} is not pending")));
    }
    apply_answers(&mut item, submission);
    let replaced = json!({"type": "thread.item.replaced", "item": item});
    let turn = Turn::Respond { user_message: None, first: vec![replaced] };
    Ok(respond(server, user, thread, Vec::new(), turn))
}

/// Records the answers on each input: a missing, skipped or empty answer (or a skipped
/// submission) is `skipped`; a single-choice input keeps its first value. Answers to inputs
/// the item does not have are ignored.
fn apply_answers(item: &mut Value, mut submission: StructuredInputSubmission) {
    let item_id = item["id"].as_str().unwrap_or_default().to_owned();
    let inputs = item["inputs"].as_array_mut().map(std::mem::take).unwrap_or_default();
    let mut updated = Vec::with_capacity(inputs.len());
    for mut input in inputs {
        let id = input["id"].as_str().unwrap_or_default().to_owned();
        let answer = submission.answers.remove(&id).filter(|answer| {
            submission.status == SubmissionStatus::Answered
                && !answer.skipped
                && !answer.values.is_empty()
        });
        input["answer"] = match answer {
            None => json!({"values": [], "skipped": true}),
            Some(mut answer) => {
                if input["type"] == "multiple_choice" && input["multiple"] != true {
                    answer.values.truncate(1);
                }
                json!({"values": answer.values, "skipped": false})
            }
        };
        updated.push(input);
    }
    if !submission.answers.is_empty() {
        let unknown: Vec<&String> = submission.answers.keys().collect();
        tracing::warn!(item = %item_id, ?unknown, "ignored answers to inputs the item does not have");
    }
    item["inputs"] = Value::Array(updated);
    item["status"] = json!(match submission.status {
        SubmissionStatus::Answered => "answered",
        SubmissionStatus::Skipped => "skipped",
    });
}

/// `threads.custom_action`: a widget action, answered by the responder's `action`. A sender
/// that is not a widget gets the SDK's bare `stream.error` event and nothing else.
async fn custom_action(
    server: &ChatKitServer,
    store: &DbStore,
    user: &str,
    thread_id: &str,
    item_id: Option<&str>,
    action: Action,
) -> ChatKitResult<Events> {
    let thread = parse_json(&store.load_thread(thread_id, user).await?.json)?;
    let sender = match item_id.filter(|id| !id.is_empty()) {
        Some(item_id) => Some(parse_json(&store.load_item(thread_id, item_id, user).await?.json)?),
        None => None,
    };
    if sender.as_ref().is_some_and(|item| item["type"] != "widget") {
        let error = json!({"type": "error", "code": "stream.error", "allow_retry": false});
        return Ok(Events::of(vec![frame(error)]));
    }
    let action = json!({"type": action.kind, "payload": action.payload});
    Ok(respond(server, user, thread, Vec::new(), Turn::Action { action, sender }))
}

async fn load_attachments(
    store: &DbStore,
    user: &str,
    ids: &[repositories::Id],
) -> ChatKitResult<Vec<Value>> {
    let mut attachments = Vec::with_capacity(ids.len());
    for id in ids {
        attachments.push(parse_json(&store.load_attachment(id, user).await?.json)?);
    }
    Ok(attachments)
}

/// Builds the user message, stamps its attachments with the thread, and stores both in one
/// transaction; the thread as stored, and the message.
async fn store_user_message(
    store: &DbStore,
    user: &str,
    thread_id: &str,
    input: UserMessageInput,
    mut attachments: Vec<Value>,
) -> ChatKitResult<(StoredThread, Value)> {
    let mut stamped = Vec::with_capacity(attachments.len());
    for attachment in &mut attachments {
        attachment["thread_id"] = Value::String(thread_id.to_owned());
        stamped.push(attachment.to_string());
    }
    let message = json!({
        "id": store.generate_item_id(StoreItemType::Message, thread_id, user),
        "thread_id": thread_id,
        "created_at": naive_now(),
        "type": "user_message",
        "content": input.content,
        "attachments": attachments,
        "quoted_text": input.quoted_text,
        "inference_options": input.inference_options,
    });
    // The attachments are stamped with the thread and the message stored, all or nothing.
    let (thread, saved) =
        store.add_item_with_attachments(thread_id, &message.to_string(), &stamped, user).await?;
    Ok((thread, parse_json(&saved.stored.json)?))
}

/// What the responder is asked for, once the stream has started.
enum Turn {
    /// `respond(thread, user_message)`, after `first`: events of the request's own (a
    /// structured input's replacement), persisted and sent like the responder's.
    Respond { user_message: Option<Value>, first: Vec<Value> },
    /// `action(thread, action, sender)`.
    Action { action: Value, sender: Option<Value> },
}

impl Turn {
    fn answer(user_message: Option<Value>) -> Self {
        Self::Respond { user_message, first: Vec::new() }
    }
}

/// The stream: the prelude, `stream_options`, then the turn's events, each persisted
/// before it is sent.
fn respond(
    server: &ChatKitServer,
    user: &str,
    thread: Value,
    prelude: Vec<Value>,
    turn: Turn,
) -> Events {
    let (sender, events) = events::channel(server.limits.stalled_client);
    let store = server.store.clone();
    let responder = server.responder.clone();
    let user = user.to_owned();
    // The task logs under the request's span (its request id), not as an orphan.
    let pipeline = async move {
        let mut pipeline = Pipeline { store, user, thread, pending: HashMap::new(), sender };
        pipeline.run(&*responder, turn, prelude).await;
    };
    tokio::spawn(pipeline.instrument(tracing::Span::current()));
    events
}

/// The `error` event a failed responder ends the stream with, as `_process_events` sends it.
fn error_event(error: &ResponderError) -> Value {
    match error {
        ResponderError::Custom { message, allow_retry } => {
            json!({"type": "error", "code": "custom", "message": message, "allow_retry": allow_retry})
        }
        ResponderError::Failed(_) => {
            json!({"type": "error", "code": "stream.error", "allow_retry": true})
        }
    }
}

struct Pipeline {
    store: DbStore,
    user: String,
    thread: Value,
    /// Items announced by `thread.item.added` and not yet done, as updated so far.
    pending: HashMap<String, Value>,
    sender: EventSender,
}

impl Pipeline {
    async fn run(&mut self, responder: &dyn Responder, turn: Turn, prelude: Vec<Value>) {
        let options = json!({"type": "stream_options", "stream_options": {"allow_cancel": true}});
        for chunk in prelude.into_iter().chain([frame(options)]) {
            if !self.sender.send(chunk).await {
                return self.cancelled().await;
            }
        }
        let mut events = match turn {
            Turn::Respond { user_message, first } => {
                for event in first {
                    if !self.deliver(Ok(ResponderEvent::Event(event))).await {
                        return;
                    }
                }
                match self.respond_input(responder, user_message).await {
                    Ok(input) => responder.respond(input),
                    Err(err) => {
                        self.deliver(Err(err)).await;
                        return;
                    }
                }
            }
            Turn::Action { action, sender } => responder.action(ActionInput {
                thread: self.thread.clone(),
                action,
                sender,
                message_id: self.new_message_id(),
            }),
        };
        loop {
            // A client that leaves while the responder thinks is noticed at once, so a model
            // call nobody will read is dropped rather than paid for.
            let event = tokio::select! {
                event = events.next() => event,
                () = self.sender.closed() => return self.cancelled().await,
            };
            let Some(event) = event else { return };
            if !self.deliver(event).await {
                return;
            }
        }
    }

    /// What `respond` gets: the thread, the new user message, and as much of the thread's
    /// history as the responder reads.
    async fn respond_input(
        &self,
        responder: &dyn Responder,
        user_message: Option<Value>,
    ) -> Result<RespondInput, ResponderError> {
        let wanted = responder.history_items();
        let mut history = Vec::new();
        if wanted > 0 {
            let newest = self
                .store
                .load_thread_items(&self.thread_id(), None, wanted, SortOrder::Desc, &self.user)
                .await
                .map_err(|err| ResponderError::Failed(err.to_string()))?;
            for item in newest.data.iter().rev() {
                history.push(
                    serde_json::from_str(&item.json)
                        .map_err(|err| ResponderError::Failed(err.to_string()))?,
                );
            }
        }
        Ok(RespondInput {
            thread: self.thread.clone(),
            user_message,
            history,
            message_id: self.new_message_id(),
        })
    }

    fn thread_id(&self) -> String {
        self.thread["id"].as_str().unwrap_or_default().to_owned()
    }

    fn new_message_id(&self) -> String {
        self.store.generate_item_id(StoreItemType::Message, &self.thread_id(), &self.user)
    }

    /// Persists and sends one event, or ends the stream with the responder's error; `false`
    /// once the stream is over (failed, or the client left).
    async fn deliver(&mut self, event: Result<ResponderEvent, ResponderError>) -> bool {
        let outcome = match event {
            Ok(event) => self.handle(event).await.map_err(ResponderError::Failed),
            Err(err) => Err(err),
        };
        match outcome {
            Ok(true) => true,
            Ok(false) => {
                self.cancelled().await;
                false
            }
            Err(err) => {
                tracing::warn!(reason = %err, "a ChatKit responder failed");
                self.sender.send(frame(error_event(&err))).await;
                false
            }
        }
    }

    /// Persists and sends one event; `Ok(false)` when the client is gone.
    async fn handle(&mut self, event: ResponderEvent) -> Result<bool, String> {
        let thread_id = self.thread_id();
        let event = match event {
            ResponderEvent::UpdateThread(mut fields) => {
                fields.retain(|field, value| {
                    field != "id" && field != "created_at" && self.thread.get(field) != Some(value)
                });
                if fields.is_empty() {
                    return Ok(true); // nothing changed: nothing to save or send
                }
                // Only the responder's fields are written, onto the thread as stored now: a
                // rename by the user while the answer streamed is kept.
                let saved = self
                    .store
                    .update_thread(&thread_id, &self.user, |thread| {
                        for (field, value) in fields {
                            thread[field.as_str()] = value;
                        }
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                self.thread = serde_json::from_str(&saved.json).map_err(|e| e.to_string())?;
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
                        self.pending.remove(id);
                    }
                    "thread.item.replaced" => {
                        self.store
                            .save_item(&thread_id, &event["item"].to_string(), &self.user)
                            .await
                            .map_err(|e| e.to_string())?;
                        if let Some(id) = event["item"]["id"].as_str() {
                            self.pending.remove(id);
                        }
                    }
                    _ => {}
                }
                event
            }
        };
        Ok(self.sender.send(frame(event)).await)
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

/// Applies an assistant content update to a pending assistant message, as
/// `_apply_assistant_message_update` does: the content list is padded so the index exists,
/// then the part is set, extended, annotated or replaced. (Only assistant messages matter: they
/// are the pending items kept when a client stops the stream.)
fn apply_update(item: &mut Value, update: &Value) {
    if item["type"] != "assistant_message" {
        return;
    }
    let Some(index) = update["content_index"].as_u64().and_then(|i| usize::try_from(i).ok()) else {
        return;
    };
    let Some(content) = item.get_mut("content").and_then(Value::as_array_mut) else { return };
    // A bad index from a responder must not make us allocate without bound.
    if index > content.len().saturating_add(MAX_CONTENT_PADDING) {
        return;
    }
    while content.len() <= index {
        content.push(json!({"annotations": [], "text": "", "type": "output_text"}));
    }
    let part = &mut content[index];
    match update["type"].as_str() {
        Some("assistant_message.content_part.added" | "assistant_message.content_part.done") => {
            *part = update["content"].clone();
        }
        Some("assistant_message.content_part.text_delta") => {
            let text = format!(
                "{}{}",
                part["text"].as_str().unwrap_or_default(),
                update["delta"].as_str().unwrap_or_default()
            );
            part["text"] = Value::String(text);
        }
        Some("assistant_message.content_part.annotation_added") => {
            if !part["annotations"].is_array() {
                part["annotations"] = json!([]);
            }
            if let Some(annotations) = part["annotations"].as_array_mut() {
                let at = update["annotation_index"].as_u64().and_then(|i| usize::try_from(i).ok());
                match at.filter(|at| *at <= annotations.len()) {
                    Some(at) => annotations.insert(at, update["annotation"].clone()),
                    None => annotations.push(update["annotation"].clone()),
                }
            }
        }
        _ => {}
    }
}
