//! Chats: a user's conversations, with a title, an active flag, and the items of the agent
//! session of the same id as their `conversation`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use repositories::{ChatChanges, ChatFilter, ChatWithItems, Id, Metadata, Tags};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query, RepeatedQuery};
use crate::routes::{PageOrder, object_items, page_limit};
use crate::state::AppState;

/// Longest title, in characters.
const MAX_TITLE_CHARS: usize = 255;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create_chat, list_chats, count_chats, get_chat, update_chat, delete_chat),
    components(schemas(Chat, ChatSummary, ChatPage, ChatCount, CreateChat, UpdateChat)),
    tags((name = "chats", description = "Conversations: a title, an active flag, and the \\
        conversation items, which are the items of the agent session with the same id"))
)]
pub(crate) struct Doc;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/chats", get(list_chats).post(create_chat))
        .route("/chats/count", get(count_chats))
        .route("/chats/{chat_id}", get(get_chat).put(update_chat).delete(delete_chat))
}

/// A chat without its conversation, as lists show it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatSummary {
    chat_id: String,
    user_id: String,
    title: Option<String>,
    is_active: bool,
    /// RFC 3339, UTC.
    created_at: String,
    /// RFC 3339, UTC; lists are ordered by it, newest first.
    updated_at: String,
    item_count: i64,
    /// The chat's metadata object, exactly as last given; `{}` when never given.
    #[schema(value_type = Object)]
    metadata: Box<RawValue>,
    /// The chat's tags, in the order last given, without repeats; `[]` when none.
    #[schema(value_type = Vec<String>)]
    tags: Box<RawValue>,
}

/// A chat with its whole conversation.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the hand-built response body
pub(crate) struct Chat {
    #[schema(inline)]
    #[serde(flatten)]
    summary: ChatSummary,
    /// The conversation items, oldest first, exactly as stored.
    #[schema(value_type = Vec<Object>)]
    conversation: Vec<()>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatPage {
    data: Vec<ChatSummary>,
    has_more: bool,
    /// The `chat_id` to pass as `after` for the next page, when `has_more`.
    after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatCount {
    count: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateChat {
    /// Up to 255 characters, without NUL.
    #[schema(max_length = 255, pattern = "^[^\\u0000]*$")]
    title: Option<String>,
    /// The first conversation items (JSON objects, each nesting at most 127 arrays and
    /// objects).
    #[schema(value_type = Option<Vec<Object>>)]
    conversation: Option<Vec<Box<RawValue>>>,
    /// Chosen by the server (a UUID) when absent. 1 to 255 bytes of UTF-8, without NUL.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255, pattern = "^[^\\u0000]*$")]
    chat_id: Option<Id>,
    /// A JSON object of at most 16 KiB (16,384 bytes of JSON text), stored and returned as
    /// the exact text sent. Not `null`: send `{}` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>, nullable = false)]
    metadata: Option<Box<RawValue>>,
    /// Up to 32 distinct tags of 1 to 64 characters (Unicode scalar values) each, compared
    /// exactly (case-sensitive). A tag given twice counts once and is kept once.
    #[serde(default, deserialize_with = "present")]
    #[schema(max_items = 32, nullable = false)]
    tags: Option<Vec<String>>,
}

/// At least one field: an update without one is a 400.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub(crate) struct UpdateChat {
    /// A new title (up to 255 characters, without NUL), or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 255, pattern = "^[^\\u0000]*$")]
    title: Option<Option<String>>,
    /// Replaces every conversation item, atomically (JSON objects, each nesting at most 127
    /// arrays and objects). Not `null`: that would say nothing.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Vec<Object>)]
    conversation: Option<Vec<Box<RawValue>>>,
    /// `true` restores a soft-deleted chat. Not `null`: that would say nothing.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool)]
    is_active: Option<bool>,
    /// Replaces the metadata: a JSON object of at most 16 KiB, stored as the exact text sent
    /// (`{}` clears it; `null` is refused).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>, nullable = false)]
    metadata: Option<Box<RawValue>>,
    /// Replaces the whole set of tags (`[]` removes them all): up to 32 distinct tags of 1 to
    /// 64 characters (Unicode scalar values) each; a tag given twice is kept once.
    #[serde(default, deserialize_with = "present")]
    #[schema(max_items = 32, nullable = false)]
    tags: Option<Vec<String>>,
}

/// Tells a field given as `null` (`Some(None)`) from a missing one (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1 to 100; default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `chat_id` of the last chat of the previous page. One that names no chat of this
    /// user (in this listing) is a 400.
    #[param(value_type = Option<String>, min_length = 1, max_length = 255, pattern = "^[^\\u0000]*$")]
    #[serde(default, deserialize_with = "repositories::given_cursor")]
    pub after: Option<Id>,
    /// `desc` (default: most recently updated first) or `asc`.
    #[param(inline)]
    pub order: Option<PageOrder>,
    /// Include soft-deleted chats.
    #[serde(default)]
    pub include_inactive: bool,
    /// Only chats carrying this tag; repeat the parameter (`tag=a&tag=b`) for chats carrying
    /// every one of them. Each 1 to 64 characters; at most 32.
    #[serde(default)]
    #[param(style = Form, explode)]
    pub tag: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CountQuery {
    /// Count soft-deleted chats too.
    #[serde(default)]
    include_inactive: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// Delete the chat and its items for good, instead of marking it inactive.
    #[serde(default)]
    hard: bool,
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn summary(chat: entity::chat::Model) -> ApiResult<ChatSummary> {
    // Both columns hold JSON the server checked (or wrote) before storing it.
    let stored_json =
        |text: String| RawValue::from_string(text).map_err(|err| ApiError::Internal(err.into()));
    Ok(ChatSummary {
        chat_id: chat.chat_id,
        user_id: chat.user_id,
        title: chat.title,
        is_active: chat.is_active,
        created_at: timestamp(chat.created_at),
        updated_at: timestamp(chat.updated_at),
        item_count: chat.item_count,
        metadata: stored_json(chat.metadata)?,
        tags: stored_json(chat.tags)?,
    })
}

/// The chat as JSON, with the stored item texts spliced in as they are.
fn chat_response(status: StatusCode, chat: ChatWithItems) -> ApiResult<Response> {
    let ChatWithItems { chat, items } = chat;
    let summary =
        serde_json::to_string(&summary(chat)?).map_err(|err| ApiError::Internal(err.into()))?;
    let mut body =
        String::with_capacity(summary.len() + items.iter().map(String::len).sum::<usize>() + 32);
    body.push_str(summary.strip_suffix('}').unwrap_or(&summary));
    body.push_str(",\"conversation\":[");
    body.push_str(&items.join(","));
    body.push_str("]}");
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn check_title(title: Option<&str>) -> ApiResult<()> {
    let Some(title) = title else { return Ok(()) };
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::invalid(format!(
            "title must be at most {MAX_TITLE_CHARS} characters"
        )));
    }
    if title.contains('\0') {
        return Err(ApiError::invalid("title must not contain NUL characters"));
    }
    Ok(())
}

fn metadata(json: Option<Box<RawValue>>) -> ApiResult<Option<Metadata>> {
    Ok(json.map(|json| Metadata::parse(json.get())).transpose()?)
}

fn tags(tags: Option<Vec<String>>) -> ApiResult<Option<Tags>> {
    Ok(tags.map(Tags::parse).transpose()?)
}

/// Creates a chat, with its first conversation items.
#[utoipa::path(post, path = "/chats", tag = "chats", request_body = CreateChat,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Chat),
        (status = 400, description = "Malformed body, title too long, bad id or item", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 409, description = "This user already has a chat with that id", body = ErrorBody),
    ))]
pub(crate) async fn create_chat(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(body): Json<CreateChat>,
) -> ApiResult<Response> {
    let chat_id = body.chat_id.map_or_else(|| uuid::Uuid::new_v4().to_string(), Id::into_string);
    check_title(body.title.as_deref())?;
    let items = object_items("conversation", body.conversation.as_deref().unwrap_or_default())?;
    let metadata = metadata(body.metadata)?.unwrap_or_default();
    let tags = tags(body.tags)?.unwrap_or_default();
    let chat = state.db.chats().create(&user, &chat_id, body.title, &items, metadata, tags).await?;
    chat_response(StatusCode::CREATED, chat)
}

/// A page of the user's chats (without conversations), most recently updated first.
#[utoipa::path(get, path = "/chats", tag = "chats", params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of chats", body = ChatPage),
        (status = 400, description = "Bad limit, order or cursor", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn list_chats(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    RepeatedQuery(query): RepeatedQuery<ListQuery>,
) -> ApiResult<Json<ChatPage>> {
    let limit = page_limit(query.limit)?;
    let order = query.order.unwrap_or(PageOrder::Desc).into();
    let filter =
        ChatFilter { include_inactive: query.include_inactive, tags: Tags::parse(query.tag)? };
    let page = state.db.chats().list(&user, &filter, query.after.as_deref(), order, limit).await?;
    Ok(Json(ChatPage {
        data: page.data.into_iter().map(summary).collect::<ApiResult<_>>()?,
        has_more: page.has_more,
        after: page.after,
    }))
}

/// How many chats the user has.
#[utoipa::path(get, path = "/chats/count", tag = "chats", params(CountQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The count", body = ChatCount),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn count_chats(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Query(query): Query<CountQuery>,
) -> ApiResult<Json<ChatCount>> {
    let count = state.db.chats().count(&user, query.include_inactive).await?;
    Ok(Json(ChatCount { count }))
}

/// The chat with its whole conversation (inactive chats too).
#[utoipa::path(get, path = "/chats/{chat_id}", tag = "chats",
    params(("chat_id" = String, Path, description = "The chat id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The chat", body = Chat),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such chat for this user", body = ErrorBody),
    ))]
pub(crate) async fn get_chat(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(chat_id): Path<Id>,
) -> ApiResult<Response> {
    chat_response(StatusCode::OK, state.db.chats().get(&user, &chat_id).await?)
}

/// Updates the given fields; a `conversation` replaces every item at once.
#[utoipa::path(put, path = "/chats/{chat_id}", tag = "chats", request_body = UpdateChat,
    params(("chat_id" = String, Path, description = "The chat id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated chat", body = Chat),
        (status = 400, description = "No field to update, title too long, bad item", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such chat for this user", body = ErrorBody),
    ))]
pub(crate) async fn update_chat(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(chat_id): Path<Id>,
    Json(body): Json<UpdateChat>,
) -> ApiResult<Response> {
    if body.title.is_none()
        && body.conversation.is_none()
        && body.is_active.is_none()
        && body.metadata.is_none()
        && body.tags.is_none()
    {
        return Err(ApiError::invalid(
            "nothing to update: give title, conversation, is_active, metadata or tags",
        ));
    }
    check_title(body.title.as_ref().and_then(Option::as_deref))?;
    let items = body
        .conversation
        .as_deref()
        .map(|items| object_items("conversation", items))
        .transpose()?;
    let changes = ChatChanges {
        title: body.title,
        items,
        is_active: body.is_active,
        metadata: metadata(body.metadata)?,
        tags: tags(body.tags)?,
    };
    chat_response(StatusCode::OK, state.db.chats().update(&user, &chat_id, changes).await?)
}

/// Soft-deletes the chat (`is_active=false`), or with `hard=true` deletes it and its items.
#[utoipa::path(delete, path = "/chats/{chat_id}", tag = "chats",
    params(("chat_id" = String, Path, description = "The chat id"), DeleteQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such chat for this user", body = ErrorBody),
    ))]
pub(crate) async fn delete_chat(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(chat_id): Path<Id>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    if query.hard {
        state.db.chats().hard_delete(&user, &chat_id).await?;
    } else {
        state.db.chats().soft_delete(&user, &chat_id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
