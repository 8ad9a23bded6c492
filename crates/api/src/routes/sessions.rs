//! Agent session memory: the OpenAI Agents SDK `Session` protocol over HTTP.
//!
//! Items are JSON objects kept as the exact text the client sent: they are checked to be
//! objects, never re-encoded, and written back out byte for byte.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use repositories::{Db, IdempotencyKey, SessionReader};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::routes::{object_items, validate_id};
use crate::state::AppState;

/// Rows per page when a full history is streamed out.
const FULL_READ_PAGE: u64 = 500;
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(utoipa::OpenApi)]
#[openapi(paths(get_items, add_items, pop_item, clear_session))]
pub(crate) struct Doc;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions/{session_id}/items", get(get_items).post(add_items).delete(clear_session))
        .route("/sessions/{session_id}/pop", post(pop_item))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ItemsQuery {
    /// Return only the latest `limit` items (still oldest first); `0` returns none. Without
    /// it, every item.
    limit: Option<i64>,
}

/// `{"items": [...]}`: the session's items, oldest first.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the hand-built response body
pub(crate) struct ItemsResponse {
    #[schema(value_type = Vec<Object>)]
    items: Vec<()>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddItemsRequest {
    /// Responses API input items (any JSON objects), appended in this order.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Box<RawValue>>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct AddItemsResponse {
    /// How many items the batch appended.
    added: u64,
}

/// `{"item": object | null}`
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the hand-built response body
pub(crate) struct PopResponse {
    #[schema(value_type = Option<Object>)]
    item: Option<()>,
}

/// `get_items(limit)`: the latest `limit` items, oldest first (all of them without `limit`).
#[utoipa::path(get, path = "/sessions/{session_id}/items", tag = "sessions",
    params(("session_id" = String, Path, description = "Any non-empty UTF-8 string up to 255 bytes, percent-encoded"), ItemsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The items; an unknown session has none", body = ItemsResponse),
        (status = 400, description = "Bad session id or limit", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn get_items(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<String>,
    Query(query): Query<ItemsQuery>,
) -> ApiResult<Response> {
    validate_id("session_id", &session)?;
    match query.limit {
        Some(limit) => {
            let limit = u64::try_from(limit)
                .map_err(|_| ApiError::invalid("limit must be 0 or a positive integer"))?;
            let items = state.db.sessions().latest_items(&user, &session, limit).await?;
            Ok(items_body(items.iter().map(String::as_str)))
        }
        None => stream_all_items(state.db, user, session).await,
    }
}

/// `add_items(items)`: appends the batch atomically and contiguously; creates the session.
#[utoipa::path(post, path = "/sessions/{session_id}/items", tag = "sessions",
    params(("session_id" = String, Path, description = "The session (chat) id"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key \
            (1 to 255 characters) adds nothing and answers the same. The key is bound to the \
            batch's exact JSON text: a retry must resend the same bytes, and the same key with \
            a different batch is a 409.")),
    request_body = AddItemsRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Appended", body = AddItemsResponse),
        (status = 400, description = "Malformed body, a non-object item, bad id or key", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with another batch", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ))]
pub(crate) async fn add_items(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<String>,
    headers: HeaderMap,
    Json(body): Json<AddItemsRequest>,
) -> ApiResult<Json<AddItemsResponse>> {
    validate_id("session_id", &session)?;
    let items = object_items("items", &body.items)?;
    let idempotency = idempotency_key(&headers, &items)?;
    let added =
        state.db.sessions().add_items(&user, &session, &items, idempotency.as_ref()).await?;
    Ok(Json(AddItemsResponse { added }))
}

/// `pop_item()`: removes and returns the newest item, or `null` when there is none.
#[utoipa::path(post, path = "/sessions/{session_id}/pop", tag = "sessions",
    params(("session_id" = String, Path, description = "The session (chat) id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The removed item, or null", body = PopResponse),
        (status = 400, description = "Bad session id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn pop_item(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<String>,
) -> ApiResult<Response> {
    validate_id("session_id", &session)?;
    let item = state.db.sessions().pop_item(&user, &session).await?;
    let body = format!("{{\"item\":{}}}", item.as_deref().unwrap_or("null"));
    Ok(json_text(body))
}

/// `clear_session()`: removes every item; the chat itself stays.
#[utoipa::path(delete, path = "/sessions/{session_id}/items", tag = "sessions",
    params(("session_id" = String, Path, description = "The session (chat) id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Cleared (also for an unknown session)"),
        (status = 400, description = "Bad session id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn clear_session(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<String>,
) -> ApiResult<StatusCode> {
    validate_id("session_id", &session)?;
    state.db.sessions().clear(&user, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The `Idempotency-Key` header, if any, with a digest of the batch it guards.
fn idempotency_key(headers: &HeaderMap, items: &[&str]) -> ApiResult<Option<IdempotencyKey>> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ))
        })?;
    let mut digest = Sha256::new();
    for item in items {
        // Length-prefixed, so that different splits of the same text differ.
        digest.update((item.len() as u64).to_be_bytes());
        digest.update(item.as_bytes());
    }
    let request_hash = digest.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(Some(IdempotencyKey { key: key.to_owned(), request_hash }))
}

fn json_text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `{"items":[...]}` from stored item texts.
fn items_body<'a>(items: impl Iterator<Item = &'a str>) -> Response {
    let mut body = String::from("{\"items\":[");
    for (index, item) in items.enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("]}");
    json_text(body)
}

/// Every item. A history of one page is read in one statement; a longer one is streamed page
/// by page from one snapshot, so memory stays bounded by a page however long the history is,
/// and the list read is one list even while others write.
async fn stream_all_items(db: Db, user: String, session: String) -> ApiResult<Response> {
    let first = db.sessions().items_after(&user, &session, 0, FULL_READ_PAGE + 1).await?;
    if (first.len() as u64) <= FULL_READ_PAGE {
        return Ok(items_body(first.iter().map(|(_, item)| item.as_str())));
    }

    // Opening the snapshot and reading its first page happen before answering, so an
    // unreachable database is still a clean 503; a failure after that can only cut the body
    // short, which the client detects as malformed JSON.
    let mut reader = db.sessions().reader(&user, &session).await?;
    let page = reader.next_page(FULL_READ_PAGE).await?;
    struct Cursor {
        reader: Option<SessionReader>,
        page: Option<Vec<String>>,
        wrote_any: bool,
    }
    let cursor = Cursor { reader: Some(reader), page: Some(page), wrote_any: false };
    let stream = futures::stream::unfold(cursor, |mut cursor| async move {
        let reader = cursor.reader.as_mut()?;
        let page = match cursor.page.take() {
            Some(page) => page,
            None => match reader.next_page(FULL_READ_PAGE).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::error!(error = %err, "a streamed session read failed");
                    cursor.reader = None;
                    return Some((Err(std::io::Error::other("session read failed")), cursor));
                }
            },
        };
        let mut chunk = String::new();
        if !cursor.wrote_any {
            chunk.push_str("{\"items\":[");
        }
        for item in &page {
            if cursor.wrote_any {
                chunk.push(',');
            }
            chunk.push_str(item);
            cursor.wrote_any = true;
        }
        if (page.len() as u64) < FULL_READ_PAGE {
            chunk.push_str("]}");
            if let Some(reader) = cursor.reader.take()
                && let Err(err) = reader.finish().await
            {
                tracing::warn!(error = %err, "ending a session read snapshot failed");
            }
        }
        Some((Ok(Bytes::from(chunk)), cursor))
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response())
}
