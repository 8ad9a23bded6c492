//! The ChatKit protocol endpoint (`POST /chatkit`): what `ChatKitServer.process()` does, over
//! the store of `repositories::chatkit`.
//!
//! Requests are `{"type", "params", "metadata"}`; answers are JSON in ChatKit's wire form (see
//! [`wire`]), or Server-Sent Events for the six streaming types (see [`stream`]), answered by
//! the configured [`crate::responder::Responder`].

mod stream;
pub(crate) use chatkit_server::wire;

use repositories::chatkit::{SortOrder, Store, StoreItemType, StoredObject};
use serde::Deserialize;
use serde_json::{Value, json};

use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::signed_urls::Access;
use crate::state::AppState;

/// Items `threads.get_by_id` returns with the thread: the oldest 20.
const THREAD_ITEMS: u64 = 20;
/// Page size when a request gives none (or `0`), as the SDK's `limit or 20`.
const DEFAULT_LIMIT: u64 = 20;
/// Largest page a request may ask for.
const MAX_LIMIT: i64 = 1000;

/// The envelope every request shares; `metadata` is accepted and, as in the SDK, ignored.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    params: Value,
}

#[derive(Debug, Deserialize)]
struct ThreadId {
    thread_id: String,
}

#[derive(Debug, Deserialize)]
struct ListParams {
    thread_id: Option<String>,
    limit: Option<i64>,
    order: Option<String>,
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UpdateParams {
    thread_id: String,
    title: String,
}

#[derive(Debug, Deserialize)]
struct FeedbackParams {
    thread_id: String,
    item_ids: Vec<String>,
    kind: String,
}

#[derive(Debug, Deserialize)]
struct CreateAttachmentParams {
    name: String,
    size: u64,
    mime_type: String,
}

#[derive(Debug, Deserialize)]
struct AttachmentId {
    attachment_id: String,
}

/// A cursor, where an empty one means none (the SDK's stores test `if after:`).
fn cursor(after: Option<&str>) -> Option<&str> {
    after.filter(|after| !after.is_empty())
}

fn params<T: serde::de::DeserializeOwned>(kind: &str, params: Value) -> ApiResult<T> {
    serde_json::from_value(params)
        .map_err(|err| ApiError::invalid(format!("bad params for {kind}: {err}")))
}

fn page_limit(limit: Option<i64>) -> ApiResult<u64> {
    match limit {
        None | Some(0) => Ok(DEFAULT_LIMIT),
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit.unsigned_abs()),
        Some(limit) => {
            Err(ApiError::invalid(format!("limit must be 1 to {MAX_LIMIT}, not {limit}")))
        }
    }
}

fn order(order: Option<&str>, default: SortOrder) -> ApiResult<SortOrder> {
    order.map_or(Ok(default), |order| order.parse().map_err(ApiError::from))
}

fn parse_stored(stored: &impl StoredObject) -> ApiResult<Value> {
    parse_json(stored.json())
}

/// Stored JSON text, parsed; the store validated it when it was written.
fn parse_json(json: &str) -> ApiResult<Value> {
    serde_json::from_str(json).map_err(|err| ApiError::Internal(err.into()))
}

/// Where this server is reached, for the upload and preview URLs it hands out.
#[derive(Debug, Clone)]
pub(crate) struct Origin(pub(crate) String);

/// Answers one ChatKit request for `user`: JSON, or a stream of events.
pub(crate) async fn process(
    state: &AppState,
    user: &str,
    origin: &Origin,
    body: &[u8],
) -> ApiResult<Response> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|err| ApiError::invalid(format!("not a ChatKit request: {err}")))?;
    if let Some(answer) =
        stream::start(state, user, &envelope.kind, envelope.params.clone()).await?
    {
        return Ok(answer);
    }
    answer_json(state, user, origin, envelope).await.map(|value| Json(value).into_response())
}

/// Answers one non-streaming ChatKit request.
async fn answer_json(
    state: &AppState,
    user: &str,
    origin: &Origin,
    envelope: Envelope,
) -> ApiResult<Value> {
    let kind = envelope.kind.as_str();
    let store = state.db.chatkit();
    match kind {
        "threads.get_by_id" => {
            let ThreadId { thread_id } = params(kind, envelope.params)?;
            let thread = store.load_thread(&thread_id, user).await?;
            let page = store
                .load_thread_items(&thread_id, None, THREAD_ITEMS, SortOrder::Asc, user)
                .await?;
            let items = visible_items(&page.data)?;
            Ok(wire::thread(&parse_stored(&thread)?, wire::page(items, page.has_more, page.after)))
        }
        "threads.list" => {
            let list: ListParams = params(kind, envelope.params)?;
            let page = store
                .load_threads(
                    page_limit(list.limit)?,
                    cursor(list.after.as_deref()),
                    order(list.order.as_deref(), SortOrder::Desc)?,
                    user,
                )
                .await?;
            let threads = page
                .data
                .iter()
                .map(|thread| Ok(wire::thread(&parse_stored(thread)?, wire::empty_page())))
                .collect::<ApiResult<Vec<_>>>()?;
            Ok(wire::page(threads, page.has_more, page.after))
        }
        "items.list" => {
            let list: ListParams = params(kind, envelope.params)?;
            let thread_id = list
                .thread_id
                .ok_or_else(|| ApiError::invalid("items.list needs params.thread_id"))?;
            let page = store
                .load_thread_items(
                    &thread_id,
                    cursor(list.after.as_deref()),
                    page_limit(list.limit)?,
                    order(list.order.as_deref(), SortOrder::Desc)?,
                    user,
                )
                .await?;
            Ok(wire::page(visible_items(&page.data)?, page.has_more, page.after))
        }
        "threads.update" => {
            let update: UpdateParams = params(kind, envelope.params)?;
            let saved = store
                .update_thread(&update.thread_id, user, |thread| {
                    thread["title"] = Value::String(update.title);
                })
                .await?;
            Ok(wire::thread(&parse_stored(&saved)?, wire::empty_page()))
        }
        "threads.delete" => {
            let ThreadId { thread_id } = params(kind, envelope.params)?;
            store.delete_thread(&thread_id, user).await?;
            Ok(json!({}))
        }
        "items.feedback" => {
            let feedback: FeedbackParams = params(kind, envelope.params)?;
            state
                .db
                .feedback()
                .record(user, &feedback.thread_id, &feedback.item_ids, &feedback.kind)
                .await?;
            Ok(json!({}))
        }
        "attachments.create" => {
            let create: CreateAttachmentParams = params(kind, envelope.params)?;
            create_attachment(state, user, origin, create).await
        }
        "attachments.delete" => {
            let AttachmentId { attachment_id } = params(kind, envelope.params)?;
            store.delete_attachment(&attachment_id, user).await?;
            Ok(json!({}))
        }
        "input.transcribe" | "threads.sync_custom_action" => Err(ApiError::invalid(format!(
            "{kind} is not available: this server has no handler configured for it"
        ))),
        other => Err(ApiError::invalid(format!("unknown ChatKit request type {other:?}"))),
    }
}

/// The items of a page in wire form, without the hidden ones (removed after paging, as the
/// SDK does: a page may come out short while `has_more` stays true).
fn visible_items(items: &[repositories::chatkit::StoredItem]) -> ApiResult<Vec<Value>> {
    let mut visible = Vec::with_capacity(items.len());
    for item in items {
        let value = parse_stored(item)?;
        if !wire::is_hidden(&value) {
            visible.push(wire::item(value));
        }
    }
    Ok(visible)
}

/// `attachments.create`: stores the metadata with an `upload_descriptor` pointing at this
/// server's own upload route (a signed URL), and for images a `preview_url` served by it.
async fn create_attachment(
    state: &AppState,
    user: &str,
    origin: &Origin,
    create: CreateAttachmentParams,
) -> ApiResult<Value> {
    let settings = &state.settings.attachments;
    if create.size > settings.max_bytes as u64 {
        return Err(ApiError::invalid(format!(
            "attachments are limited to {} bytes; this one has {}",
            settings.max_bytes, create.size
        )));
    }
    if create.name.is_empty() || create.mime_type.is_empty() {
        return Err(ApiError::invalid("attachments.create needs a name and a mime_type"));
    }
    if !state.urls.is_enabled() {
        return Err(ApiError::invalid(
            "uploads need a URL signing key: set attachments.url_signing_secret",
        ));
    }
    let store = state.db.chatkit();
    let id = store.generate_item_id(StoreItemType::Attachment, "", user);
    let now = chrono::Utc::now().timestamp();
    let url = |access: Access, ttl: u64| {
        let expires = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let signature = state.urls.sign(access, user, &id, expires).unwrap_or_default();
        let mut url = content_url(&origin.0, &id);
        url.push_str(&format!(
            "?user={}&expires={expires}&signature={signature}",
            percent_encode(user)
        ));
        url
    };
    let is_image = create.mime_type.starts_with("image/");
    let mut attachment = json!({
        "id": id,
        "name": create.name,
        "mime_type": create.mime_type,
        "upload_descriptor": {
            "url": url(Access::Upload, settings.url_ttl_secs),
            "method": "PUT",
            "headers": { "Content-Type": create.mime_type },
        },
        "thread_id": null,
        "metadata": null,
        "type": if is_image { "image" } else { "file" },
    });
    if is_image {
        attachment["preview_url"] =
            Value::String(url(Access::Download, settings.preview_url_ttl_secs));
    }
    let saved = store.save_attachment(&attachment.to_string(), user).await?;
    Ok(wire::attachment(parse_stored(&saved.stored)?))
}

/// `{origin}/attachments/{id}/content`, the id percent-encoded as one path segment.
fn content_url(origin: &str, attachment_id: &str) -> String {
    format!(
        "{}/attachments/{}/content",
        origin.trim_end_matches('/'),
        percent_encode(attachment_id)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
