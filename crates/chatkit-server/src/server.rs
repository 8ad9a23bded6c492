//! [`ChatKitServer`]: what `chatkit.server.ChatKitServer.process()` does, over the store of
//! `repositories::chatkit`: JSON answers in ChatKit's wire form (see [`crate::wire`]), and the
//! six streaming requests (see [`crate::stream`]).

use std::sync::Arc;
use std::time::Duration;

use repositories::chatkit::{DbStore, SortOrder, Store, StoreItemType, StoredItem, StoredObject};
use repositories::{Db, Order};
use serde_json::{Value, json};

use crate::error::{ChatKitError, ChatKitResult};
use crate::events::Events;
use crate::request::{ChatKitRequest, CreateAttachmentParams};
use crate::responder::Responder;
use crate::wire;

/// Items `threads.get_by_id` returns with the thread: the oldest 20.
const THREAD_ITEMS: u64 = 20;
/// Page size when a request gives none (or `0`), as the SDK's `limit or 20`.
const DEFAULT_LIMIT: u64 = 20;
/// Largest page a request may ask for.
const MAX_LIMIT: i64 = 1000;

/// An answer: one JSON value, or the events of a stream (in wire form), produced as the
/// consumer takes them.
#[derive(Debug)]
pub enum Answer {
    Json(Value),
    Stream(Events),
}

/// Where a client uploads an attachment's bytes and sees an image's preview: signed URLs the
/// transport hands out and serves.
pub trait AttachmentUrls: Send + Sync {
    /// The URL the bytes are `PUT` to, or `None` when this server takes no uploads.
    fn upload(&self, user: &str, attachment_id: &str) -> Option<String>;
    /// The URL an image is shown from.
    fn preview(&self, user: &str, attachment_id: &str) -> Option<String>;
}

/// What the engine needs besides the store and the responder.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest attachment `attachments.create` accepts, in bytes.
    pub max_attachment_bytes: u64,
    /// How long a stream's consumer may take to accept the next event before it counts as gone.
    pub stalled_client: Duration,
}

/// The ChatKit protocol over one database, answered by one responder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ChatKitServer {
    pub(crate) store: DbStore,
    pub(crate) db: Db,
    pub(crate) responder: Arc<dyn Responder>,
    pub(crate) limits: Limits,
}

impl ChatKitServer {
    pub fn new(db: Db, responder: Arc<dyn Responder>, limits: Limits) -> Self {
        Self { store: db.chatkit(), db, responder, limits }
    }

    pub fn responder(&self) -> &Arc<dyn Responder> {
        &self.responder
    }

    /// Answers one request of `user` (already authenticated): JSON, or a stream of events.
    /// `urls` makes the upload and preview URLs of `attachments.create`.
    pub async fn process(
        &self,
        user: &str,
        request: ChatKitRequest,
        urls: &dyn AttachmentUrls,
    ) -> ChatKitResult<Answer> {
        if request.is_streaming() {
            return self.stream(user, request).await.map(Answer::Stream);
        }
        self.answer_json(user, request, urls).await.map(Answer::Json)
    }

    /// Answers one non-streaming request.
    async fn answer_json(
        &self,
        user: &str,
        request: ChatKitRequest,
        urls: &dyn AttachmentUrls,
    ) -> ChatKitResult<Value> {
        let store = &self.store;
        match request {
            ChatKitRequest::GetThread(params) => {
                let thread = store.load_thread(&params.thread_id, user).await?;
                let page = store
                    .load_thread_items(&params.thread_id, None, THREAD_ITEMS, SortOrder::Asc, user)
                    .await?;
                let items = visible_items(&page.data)?;
                Ok(wire::thread(
                    &parse_stored(&thread)?,
                    wire::page(items, page.has_more, page.after),
                ))
            }
            ChatKitRequest::ListThreads(list) => {
                let limit = page_limit(list.limit)?;
                let order = list.order.unwrap_or(Order::Desc);
                let page = store.load_threads(limit, list.after.as_deref(), order, user).await?;
                let threads = page
                    .data
                    .iter()
                    .map(|thread| Ok(wire::thread(&parse_stored(thread)?, wire::empty_page())))
                    .collect::<ChatKitResult<Vec<_>>>()?;
                Ok(wire::page(threads, page.has_more, page.after))
            }
            ChatKitRequest::ListItems(list) => {
                let limit = page_limit(list.limit)?;
                let order = list.order.unwrap_or(Order::Desc);
                let page = store
                    .load_thread_items(&list.thread_id, list.after.as_deref(), limit, order, user)
                    .await?;
                Ok(wire::page(visible_items(&page.data)?, page.has_more, page.after))
            }
            ChatKitRequest::UpdateThread(update) => {
                let saved = store
                    .update_thread(&update.thread_id, user, |thread| {
                        thread["title"] = Value::String(update.title);
                    })
                    .await?;
                Ok(wire::thread(&parse_stored(&saved)?, wire::empty_page()))
            }
            ChatKitRequest::DeleteThread(params) => {
                store.delete_thread(&params.thread_id, user).await?;
                Ok(json!({}))
            }
            ChatKitRequest::Feedback(feedback) => {
                self.db
                    .feedback()
                    .record(user, &feedback.thread_id, &feedback.item_ids, &feedback.kind)
                    .await?;
                Ok(json!({}))
            }
            ChatKitRequest::CreateAttachment(create) => {
                self.create_attachment(user, create, urls).await
            }
            ChatKitRequest::DeleteAttachment(params) => {
                store.delete_attachment(&params.attachment_id, user).await?;
                Ok(json!({}))
            }
            ChatKitRequest::Transcribe(_) => Err(unavailable("input.transcribe")),
            ChatKitRequest::SyncCustomAction(_) => Err(unavailable("threads.sync_custom_action")),
            streaming => Err(ChatKitError::invalid(format!("{streaming:?} answers with a stream"))),
        }
    }

    /// `attachments.create`: stores the metadata with an `upload_descriptor` pointing at the
    /// transport's upload URL, and for images a `preview_url`.
    async fn create_attachment(
        &self,
        user: &str,
        create: CreateAttachmentParams,
        urls: &dyn AttachmentUrls,
    ) -> ChatKitResult<Value> {
        let max_bytes = self.limits.max_attachment_bytes;
        if create.size > max_bytes {
            return Err(ChatKitError::invalid(format!(
                "attachments are limited to {max_bytes} bytes; this one has {}",
                create.size
            )));
        }
        if create.name.is_empty() || create.mime_type.is_empty() {
            return Err(ChatKitError::invalid("attachments.create needs a name and a mime_type"));
        }
        let id = self.store.generate_item_id(StoreItemType::Attachment, "", user);
        let upload = urls.upload(user, &id).ok_or_else(|| {
            ChatKitError::invalid(
                "uploads need a URL signing key: set attachments.url_signing_secret",
            )
        })?;
        let is_image = create.mime_type.starts_with("image/");
        let mut attachment = json!({
            "id": id,
            "name": create.name,
            "mime_type": create.mime_type,
            "upload_descriptor": {
                "url": upload,
                "method": "PUT",
                "headers": { "Content-Type": create.mime_type },
            },
            "thread_id": null,
            "metadata": null,
            "type": if is_image { "image" } else { "file" },
        });
        if is_image {
            attachment["preview_url"] = json!(urls.preview(user, &id));
        }
        let saved = self.store.save_attachment(&attachment.to_string(), user).await?;
        Ok(wire::attachment(parse_stored(&saved.stored)?))
    }
}

fn unavailable(kind: &str) -> ChatKitError {
    ChatKitError::invalid(format!(
        "{kind} is not available: this server has no handler configured for it"
    ))
}

fn page_limit(limit: Option<i64>) -> ChatKitResult<u64> {
    match limit {
        None | Some(0) => Ok(DEFAULT_LIMIT),
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit.unsigned_abs()),
        Some(limit) => {
            Err(ChatKitError::invalid(format!("limit must be 1 to {MAX_LIMIT}, not {limit}")))
        }
    }
}

fn parse_stored(stored: &impl StoredObject) -> ChatKitResult<Value> {
    parse_json(stored.json())
}

/// Stored JSON text, parsed; the store validated it when it was written.
pub(crate) fn parse_json(json: &str) -> ChatKitResult<Value> {
    Ok(serde_json::from_str(json)?)
}

/// The items of a page in wire form, without the hidden ones (removed after paging, as the
/// SDK does: a page may come out short while `has_more` stays true).
fn visible_items(items: &[StoredItem]) -> ChatKitResult<Vec<Value>> {
    let mut visible = Vec::with_capacity(items.len());
    for item in items {
        let value = parse_stored(item)?;
        if !wire::is_hidden(&value) {
            visible.push(wire::item(value));
        }
    }
    Ok(visible)
}
