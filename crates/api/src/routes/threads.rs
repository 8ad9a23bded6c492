//! The ChatKit store as HTTP resources: threads, thread items and attachments.
//!
//! Each route is one method of `chatkit.store.Store` ([`repositories::chatkit::Store`]).
//! Objects are ChatKit's stored-form JSON: the body's exact text is stored, and responses are
//! built from the stored text (never re-encoded), so keys, `null`s, unknown fields and the
//! `created_at` strings come back as they were sent.
//!
//! Tenancy: another user's thread, item or attachment is answered exactly like a missing one.
//! Reads are `404`; deletes are `204` and change nothing; item writes are `404` (the thread
//! must exist in the caller's namespace); thread and attachment writes go to the caller's own
//! namespace (ids are per user).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use chatkit_server::wire;
use repositories::chatkit::{DbStore, Store, StoredAttachment, StoredItem, StoredThread};
use repositories::{Id, Order, optional_cursor};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::routes::{PageOrder, json_text, page_limit};
use crate::state::AppState;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_feedback,
        list_threads,
        put_thread,
        get_thread,
        delete_thread,
        list_items,
        add_item,
        put_item,
        get_item,
        delete_item,
        put_attachment,
        get_attachment,
        delete_attachment,
    ),
    components(schemas(
        ChatKitThread,
        ChatKitThreadItem,
        ChatKitAttachment,
        ChatKitThreadPage,
        ChatKitThreadItemPage,
        PageOrder,
    )),
    tags((name = "chatkit-store", description = "The ChatKit `Store` methods as resources: \
        threads, thread items and attachment metadata in ChatKit's stored form \
        (`model_dump(mode=\"json\")` of `chatkit.types`, 1.6.x). Objects are stored as the exact \
        JSON text sent and returned unchanged. The server reads only `id`, `type`, \
        `created_at`, `title`, `thread_id`, `name` and `mime_type`, and answers 400 when those \
        are missing or malformed. `created_at` is an ISO 8601 string as Python's \
        `datetime.fromisoformat` reads it (`Z`, offsets, naive values, with or without \
        fractional seconds); naive values are taken as UTC for ordering only. Another user's \
        objects are indistinguishable from missing ones.")),
)]
pub(crate) struct Doc;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/threads", get(list_threads))
        .route("/threads/{thread_id}", get(get_thread).put(put_thread).delete(delete_thread))
        .route("/threads/{thread_id}/items", get(list_items).post(add_item))
        .route("/threads/{thread_id}/feedback", get(list_feedback))
        .route(
            "/threads/{thread_id}/items/{item_id}",
            get(get_item).put(put_item).delete(delete_item),
        )
        .route(
            "/attachments/{attachment_id}",
            get(get_attachment).put(put_attachment).delete(delete_attachment),
        )
}

// ---------------------------------------------------------------------------------------------
// Documentation types (bodies are built from stored text, not from these)
// ---------------------------------------------------------------------------------------------

/// ChatKit `ThreadMetadata` in stored form. Any other fields are kept; an `items` key (a
/// whole `Thread`) is accepted and dropped. Nests at most 127 arrays and objects.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the JSON text that is stored as is
#[schema(example = json!({"title": null, "id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456",
    "status": {"type": "active"}, "allowed_image_domains": null, "metadata": {}}))]
pub(crate) struct ChatKitThread {
    /// The thread id; must equal the path's `thread_id`.
    id: String,
    /// ISO 8601, naive or with an offset; returned exactly as sent.
    created_at: String,
    /// A string or null.
    title: Option<String>,
    /// ChatKit sends `{"type": "active" | "locked" | "closed", "reason"?: str}`; stored as
    /// sent, not interpreted, so any JSON value is accepted.
    #[schema(value_type = Value, required = false)]
    status: (),
    /// ChatKit sends a list of strings or null; stored as sent, not interpreted.
    #[schema(value_type = Value, required = false)]
    allowed_image_domains: (),
    /// Server-private metadata; stored as sent, not interpreted.
    #[schema(value_type = Value, required = false)]
    metadata: (),
}

/// A ChatKit `ThreadItem` in stored form (`user_message`, `assistant_message`,
/// `client_tool_call`, `widget`, `generated_image`, `structured_input`, `workflow`, `task`,
/// `hidden_context_item`, `sdk_hidden_context`, `end_of_turn`, or any newer type). Every
/// field besides those below is stored as sent, unread. Nests at most 127 arrays and objects.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the JSON text that is stored as is
#[schema(example = json!({"id": "msg_99990000", "thread_id": "thr_1a2b3c4d",
    "created_at": "2025-10-06T12:00:00.123456", "type": "end_of_turn"}))]
pub(crate) struct ChatKitThreadItem {
    /// The item id, unique within its thread.
    id: String,
    /// A string or null; stored and returned as given, even when it names another thread
    /// than the path's (the item is filed under the path's thread).
    thread_id: Option<String>,
    /// ISO 8601, naive or with an offset; items are ordered by it (then by insertion).
    created_at: String,
    /// The item type (a non-empty string).
    #[schema(rename = "type")]
    kind: String,
}

/// A ChatKit `Attachment` (`FileAttachment` or `ImageAttachment`) in stored form. Nests at
/// most 127 arrays and objects.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the JSON text that is stored as is
#[schema(example = json!({"id": "atc_0a1b2c3d", "name": "notes.txt", "mime_type": "text/plain",
    "upload_descriptor": null, "thread_id": "thr_1a2b3c4d", "metadata": {"s3_key": "x"}, "type": "file"}))]
pub(crate) struct ChatKitAttachment {
    /// The attachment id; must equal the path's `attachment_id`.
    id: String,
    /// `file` or `image` (any non-empty string is stored).
    #[schema(rename = "type")]
    kind: String,
    name: String,
    mime_type: String,
    /// Set once the attachment is sent in a user message; a string or null.
    thread_id: Option<String>,
}

/// A page of threads.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the hand-built response body
pub(crate) struct ChatKitThreadPage {
    data: Vec<ChatKitThread>,
    /// Whether more threads follow in this order.
    has_more: bool,
    /// The id of the last thread of `data` when `has_more`, else null: pass it as `after`.
    after: Option<String>,
}

/// A page of thread items.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the hand-built response body
pub(crate) struct ChatKitThreadItemPage {
    data: Vec<ChatKitThreadItem>,
    /// Whether more items follow in this order.
    has_more: bool,
    /// The id of the last item of `data` when `has_more`, else null: pass it as `after`.
    after: Option<String>,
}

/// Paging of `GET /threads`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ThreadsPageQuery {
    /// Threads per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The `after` of the previous page (the id of its last thread), in the same order; an id
    /// that names none of your threads is a 400. Empty means no cursor.
    #[serde(default, deserialize_with = "optional_cursor")]
    #[param(value_type = Option<String>)]
    after: Option<Id>,
    /// By (`created_at`, thread id): `desc` (default, newest first) or `asc`.
    #[param(inline)]
    order: Option<PageOrder>,
}

/// Paging of `GET /threads/{thread_id}/items`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ItemsPageQuery {
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The `after` of the previous page (the id of its last item), in the same order; an id
    /// that names no item of this thread is a 400. Empty means no cursor.
    #[serde(default, deserialize_with = "optional_cursor")]
    #[param(value_type = Option<String>)]
    after: Option<Id>,
    /// By (`created_at`, insertion order): `asc` (default, oldest first) or `desc`.
    #[param(inline)]
    order: Option<PageOrder>,
}

// ---------------------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------------------

/// `load_threads`: a page of the caller's thread metadata, by `created_at` (ties by thread id).
#[utoipa::path(get, path = "/threads", tag = "chatkit-store",
    params(ThreadsPageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of threads", body = ChatKitThreadPage),
        (status = 400, description = "Bad `limit`, `order`, or an `after` that names none of your threads", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn list_threads(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Query(query): Query<ThreadsPageQuery>,
) -> ApiResult<Response> {
    let limit = page_limit(query.limit)?;
    let order = query.order.map_or(Order::Desc, Order::from);
    let page = store(&state).load_threads(limit, query.after.as_deref(), order, &user).await?;
    Ok(json_text(StatusCode::OK, wire::stored_page(&page)))
}

/// `save_thread`: creates or replaces the thread's metadata. An `items` key is ignored (not
/// stored); items are written through the item routes.
#[utoipa::path(put, path = "/threads/{thread_id}", tag = "chatkit-store",
    params(("thread_id" = String, Path, description = "The thread id (1 to 255 bytes)")),
    request_body = ChatKitThread,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Saved; the stored thread (without `items`)", body = ChatKitThread),
        (status = 400, description = "Not a JSON object, a missing or malformed `id`, `created_at` or `title`, or an `id` other than the path's", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ))]
pub(crate) async fn put_thread(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(thread_id): Path<Id>,
    Json(body): Json<Box<RawValue>>,
) -> ApiResult<Response> {
    let thread = StoredThread::parse(body.get())?;
    same_id("thread", &thread.id, &thread_id)?;
    let saved = store(&state).save_thread(body.get(), &user).await?;
    Ok(json_text(StatusCode::OK, saved.stored.json))
}

/// `load_thread`: the thread's metadata, as stored.
#[utoipa::path(get, path = "/threads/{thread_id}", tag = "chatkit-store",
    params(("thread_id" = String, Path, description = "The thread id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stored thread", body = ChatKitThread),
        (status = 400, description = "Bad thread id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such thread (of yours)", body = ErrorBody),
    ))]
pub(crate) async fn get_thread(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(thread_id): Path<Id>,
) -> ApiResult<Response> {
    let thread = store(&state).load_thread(&thread_id, &user).await?;
    Ok(json_text(StatusCode::OK, thread.json))
}

/// `delete_thread`: deletes the thread and all its items (attachments stay).
#[utoipa::path(delete, path = "/threads/{thread_id}", tag = "chatkit-store",
    params(("thread_id" = String, Path, description = "The thread id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted, or there was no such thread"),
        (status = 400, description = "Bad thread id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn delete_thread(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(thread_id): Path<Id>,
) -> ApiResult<StatusCode> {
    store(&state).delete_thread(&thread_id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Thread items
// ---------------------------------------------------------------------------------------------

/// `load_thread_items`: a page of the thread's items, by `created_at` then insertion order.
///
/// Unlike the SDK's store method (which gives an empty page), a missing thread, or another
/// user's, is a 404 here, as for every other resource.
#[utoipa::path(get, path = "/threads/{thread_id}/items", tag = "chatkit-store",
    params(("thread_id" = String, Path, description = "The thread id"), ItemsPageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of items", body = ChatKitThreadItemPage),
        (status = 400, description = "Bad id, `limit` or `order`, or an `after` that names no item of this thread", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such thread (of yours)", body = ErrorBody),
    ))]
pub(crate) async fn list_items(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(thread_id): Path<Id>,
    Query(query): Query<ItemsPageQuery>,
) -> ApiResult<Response> {
    let limit = page_limit(query.limit)?;
    let order = query.order.map_or(Order::Asc, Order::from);
    let store = store(&state);
    store.load_thread(&thread_id, &user).await?;
    let after = query.after.as_deref();
    let page = store.load_thread_items(&thread_id, after, limit, order, &user).await?;
    Ok(json_text(StatusCode::OK, wire::stored_page(&page)))
}

/// `add_thread_item`: stores a new item. Idempotent by item id: a repeat replaces the stored
/// item and keeps its place among items with the same `created_at`.
#[utoipa::path(post, path = "/threads/{thread_id}/items", tag = "chatkit-store",
    params(("thread_id" = String, Path, description = "The thread id")),
    request_body = ChatKitThreadItem,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the stored item", body = ChatKitThreadItem),
        (status = 200, description = "An item with this id existed and was replaced; the stored item", body = ChatKitThreadItem),
        (status = 400, description = "Not a JSON object, a missing or malformed `id`, `type` or `created_at`, or a `thread_id` that is not a string or null", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such thread (of yours)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ))]
pub(crate) async fn add_item(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(thread_id): Path<Id>,
    Json(body): Json<Box<RawValue>>,
) -> ApiResult<Response> {
    // Parsed for its checks (the item's id among them), before anything is written.
    StoredItem::parse(&thread_id, body.get())?;
    let saved = store(&state).add_thread_item(&thread_id, body.get(), &user).await?;
    let status = if saved.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json_text(status, saved.stored.json))
}

/// `save_item`: creates or replaces the item (an upsert by id).
#[utoipa::path(put, path = "/threads/{thread_id}/items/{item_id}", tag = "chatkit-store",
    params(("thread_id" = String, Path, description = "The thread id"),
        ("item_id" = String, Path, description = "The item id (1 to 255 bytes)")),
    request_body = ChatKitThreadItem,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Saved; the stored item", body = ChatKitThreadItem),
        (status = 400, description = "Not a JSON object, a missing or malformed `id`, `type` or `created_at`, a `thread_id` that is not a string or null, or an `id` other than the path's", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such thread (of yours)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ))]
pub(crate) async fn put_item(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((thread_id, item_id)): Path<(Id, Id)>,
    Json(body): Json<Box<RawValue>>,
) -> ApiResult<Response> {
    let item = StoredItem::parse(&thread_id, body.get())?;
    same_id("item", &item.id, &item_id)?;
    let saved = store(&state).save_item(&thread_id, body.get(), &user).await?;
    Ok(json_text(StatusCode::OK, saved.stored.json))
}

/// `load_item`: one item, as stored.
#[utoipa::path(get, path = "/threads/{thread_id}/items/{item_id}", tag = "chatkit-store",
    params(("thread_id" = String, Path, description = "The thread id"),
        ("item_id" = String, Path, description = "The item id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stored item", body = ChatKitThreadItem),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such item in this thread (of yours)", body = ErrorBody),
    ))]
pub(crate) async fn get_item(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((thread_id, item_id)): Path<(Id, Id)>,
) -> ApiResult<Response> {
    let item = store(&state).load_item(&thread_id, &item_id, &user).await?;
    Ok(json_text(StatusCode::OK, item.json))
}

/// `delete_thread_item`: deletes one item.
#[utoipa::path(delete, path = "/threads/{thread_id}/items/{item_id}", tag = "chatkit-store",
    params(("thread_id" = String, Path, description = "The thread id"),
        ("item_id" = String, Path, description = "The item id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted, or there was no such item"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn delete_item(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((thread_id, item_id)): Path<(Id, Id)>,
) -> ApiResult<StatusCode> {
    store(&state).delete_thread_item(&thread_id, &item_id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Attachments
// ---------------------------------------------------------------------------------------------

/// `save_attachment`: creates or replaces the attachment's metadata (ChatKit saves it again
/// once the attachment is sent, with `thread_id` set).
#[utoipa::path(put, path = "/attachments/{attachment_id}", tag = "chatkit-store",
    params(("attachment_id" = String, Path, description = "The attachment id (1 to 255 bytes)")),
    request_body = ChatKitAttachment,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Saved; the stored attachment", body = ChatKitAttachment),
        (status = 400, description = "Not a JSON object, a missing or malformed `id`, `type`, `name`, `mime_type` or `thread_id`, or an `id` other than the path's", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ))]
pub(crate) async fn put_attachment(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(attachment_id): Path<Id>,
    Json(body): Json<Box<RawValue>>,
) -> ApiResult<Response> {
    let attachment = StoredAttachment::parse(body.get())?;
    same_id("attachment", &attachment.id, &attachment_id)?;
    let saved = store(&state).save_attachment(body.get(), &user).await?;
    Ok(json_text(StatusCode::OK, saved.stored.json))
}

/// `load_attachment`: the attachment's metadata, as stored.
#[utoipa::path(get, path = "/attachments/{attachment_id}", tag = "chatkit-store",
    params(("attachment_id" = String, Path, description = "The attachment id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stored attachment", body = ChatKitAttachment),
        (status = 400, description = "Bad attachment id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such attachment (of yours)", body = ErrorBody),
    ))]
pub(crate) async fn get_attachment(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(attachment_id): Path<Id>,
) -> ApiResult<Response> {
    let attachment = store(&state).load_attachment(&attachment_id, &user).await?;
    Ok(json_text(StatusCode::OK, attachment.json))
}

/// `delete_attachment`: deletes the attachment's metadata and its uploaded bytes, if any.
#[utoipa::path(delete, path = "/attachments/{attachment_id}", tag = "chatkit-store",
    params(("attachment_id" = String, Path, description = "The attachment id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted, or there was no such attachment"),
        (status = 400, description = "Bad attachment id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn delete_attachment(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(attachment_id): Path<Id>,
) -> ApiResult<StatusCode> {
    store(&state).delete_attachment(&attachment_id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn store(state: &AppState) -> DbStore {
    state.db.chatkit()
}

/// A body's `id` must be the one in the path.
fn same_id(what: &str, body_id: &str, path_id: &str) -> ApiResult<()> {
    if body_id == path_id {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "the {what}'s `id` ({body_id:?}) differs from the id in the path ({path_id:?})"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Feedback
// ---------------------------------------------------------------------------------------------

/// Feedback recorded by `items.feedback` on one item.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct ItemFeedback {
    item_id: String,
    /// `positive` or `negative`.
    kind: String,
    /// When it was last given (RFC 3339, UTC).
    updated_at: String,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct FeedbackList {
    data: Vec<ItemFeedback>,
}

/// The feedback the user gave (through `items.feedback`) on the thread's items.
#[utoipa::path(get, path = "/threads/{thread_id}/feedback", tag = "chatkit-store",
    params(("thread_id" = String, Path, description = "The thread id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The feedback, by item id", body = FeedbackList),
        (status = 400, description = "Bad thread id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such thread (of yours)", body = ErrorBody),
    ))]
pub(crate) async fn list_feedback(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(thread_id): Path<Id>,
) -> ApiResult<crate::extract::Json<FeedbackList>> {
    store(&state).load_thread(&thread_id, &user).await?;
    let feedback = state.db.feedback().of_thread(&user, &thread_id).await?;
    let data = feedback
        .into_iter()
        .map(|row| ItemFeedback {
            item_id: row.item_id,
            kind: row.kind,
            updated_at: row.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
        .collect();
    Ok(crate::extract::Json(FeedbackList { data }))
}
