//! Agent session memory: the OpenAI Agents SDK `Session` protocol over HTTP.
//!
//! Items are JSON objects kept as the exact text the client sent: they are checked to be
//! objects, never re-encoded, and written back out byte for byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use repositories::{Id, IdempotencyKey};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::routes::{json_text, object_items};
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
    /// it, every item. A negative limit is a 400.
    #[param(minimum = 0)]
    limit: Option<i64>,
    /// Page backwards: the `limit` items (20 without `limit`) just before this position,
    /// oldest first, and `first_position`, the position of the first of them, to ask for the
    /// page before it. A position past the newest item gives the newest ones. Positions
    /// start at 1, so `before=1` is an empty page.
    #[param(minimum = 0)]
    before: Option<i64>,
}

/// Items per backwards page when `before` comes without `limit`.
const DEFAULT_BEFORE_LIMIT: u64 = 20;

/// `{"items": [...]}`: the session's items, oldest first; with `before`, also
/// `first_position`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the hand-built response body
pub(crate) struct ItemsResponse {
    #[schema(value_type = Vec<Object>)]
    items: Vec<()>,
    /// Only with `before`: the position of the first item of `items`, or `null` when the
    /// page is empty (there is nothing before it).
    first_position: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItemsRequest {
    /// Responses API input items (any JSON objects, each nesting at most 127 arrays and
    /// objects), appended in this order.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Box<RawValue>>,
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
/// With `before`, one page of a backwards read (the console's scrolling).
#[utoipa::path(get, path = "/sessions/{session_id}/items", tag = "sessions",
    params(("session_id" = String, Path, description = "Any non-empty UTF-8 string up to 255 bytes, percent-encoded"), ItemsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The items; an unknown session has none", body = ItemsResponse),
        (status = 400, description = "Bad session id, limit or before", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn get_items(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<Id>,
    Query(query): Query<ItemsQuery>,
) -> ApiResult<Response> {
    if let Some(before) = query.before {
        if before < 0 {
            return Err(ApiError::invalid("before must be 0 or a positive integer"));
        }
        let limit = match query.limit {
            Some(limit) => u64::try_from(limit)
                .map_err(|_| ApiError::invalid("limit must be 0 or a positive integer"))?,
            None => DEFAULT_BEFORE_LIMIT,
        };
        let page = state.db.sessions().items_before(&user, &session, before, limit).await?;
        return Ok(page_body(&page));
    }
    match query.limit {
        Some(limit) => {
            let limit = u64::try_from(limit)
                .map_err(|_| ApiError::invalid("limit must be 0 or a positive integer"))?;
            let joined = state.db.sessions().latest_items_joined(&user, &session, limit).await?;
            // The database joined the items with commas already: one element for the body's
            // list, which is `[]` when it is empty.
            Ok(items_body(std::iter::once(joined.as_str())))
        }
        None => stream_all_items(state, user, session.into_string()).await,
    }
}

/// `add_items(items)`: appends the batch atomically and contiguously; creates the session.
#[utoipa::path(post, path = "/sessions/{session_id}/items", tag = "sessions",
    params(("session_id" = String, Path, description = "The session (chat) id"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false,
            pattern = "^[!-~]([\t -~]{0,253}[!-~])?$",
            description = "A retry with the same key \
            (1 to 255 visible ASCII characters; spaces inside) adds nothing and answers the same. The key is bound to the \
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
    Path(session): Path<Id>,
    headers: HeaderMap,
    Json(body): Json<AddItemsRequest>,
) -> ApiResult<Json<AddItemsResponse>> {
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
    Path(session): Path<Id>,
) -> ApiResult<Response> {
    let item = state.db.sessions().pop_item(&user, &session).await?;
    let body = format!("{{\"item\":{}}}", item.as_deref().unwrap_or("null"));
    Ok(json_text(StatusCode::OK, body))
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
    Path(session): Path<Id>,
) -> ApiResult<StatusCode> {
    state.db.sessions().clear(&user, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The `Idempotency-Key` header, if any, with a digest of the batch it guards.
pub fn idempotency_key(headers: &HeaderMap, items: &[&str]) -> ApiResult<Option<IdempotencyKey>> {
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
    json_text(StatusCode::OK, body)
}

/// `{"items":[...],"first_position":p}` from a backwards page (positions with item texts).
fn page_body(page: &[(i64, String)]) -> Response {
    let mut body = String::from("{\"items\":[");
    for (index, (_, item)) in page.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("],\"first_position\":");
    match page.first() {
        Some((position, _)) => body.push_str(&position.to_string()),
        None => body.push_str("null"),
    }
    body.push('}');
    json_text(StatusCode::OK, body)
}

/// Every item. A history of one page is read in one statement; a longer one is streamed page
/// by page from one snapshot, so memory stays bounded by a page however long the history is,
/// and the list read is one list even while others write.
///
/// A streamed read holds a pooled connection, so it must not outlive its client's interest:
/// a task produces the pages, and a client that takes longer than
/// `server.stalled_read_timeout_secs` to take one
/// loses the read (its connection is closed on an incomplete body). At most a quarter of the
/// pool serves such reads at once.
async fn stream_all_items(state: AppState, user: String, session: String) -> ApiResult<Response> {
    let sessions = state.db.sessions();
    let first = sessions.items_after(&user, &session, 0, FULL_READ_PAGE + 1).await?;
    if (first.len() as u64) <= FULL_READ_PAGE {
        return Ok(items_body(first.iter().map(|(_, item)| item.as_str())));
    }

    let wait = Duration::from_secs(state.settings.database.acquire_timeout_secs);
    let permit = tokio::time::timeout(wait, state.full_reads.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::Unavailable(anyhow::anyhow!("too many full-history reads in progress"))
        })?;
    // Opening the snapshot and reading its first page happen before answering, so an
    // unreachable database is still a clean 503.
    let mut reader = sessions.reader(&user, &session).await?;
    let first_page = reader.next_page(FULL_READ_PAGE).await?;

    let stalled_read = Duration::from_secs(state.settings.server.stalled_read_timeout_secs);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
    let completed = Arc::new(AtomicBool::new(false));
    let producer_completed = completed.clone();
    let producer = async move {
        let _permit = permit;
        let mut page = Some(first_page);
        let mut wrote_any = false;
        loop {
            let items = match page.take() {
                Some(items) => items,
                None => match reader.next_page(FULL_READ_PAGE).await {
                    Ok(items) => items,
                    Err(err) => {
                        tracing::error!(error = %err, "a streamed session read failed");
                        return;
                    }
                },
            };
            let last = (items.len() as u64) < FULL_READ_PAGE;
            let mut chunk = String::new();
            if !wrote_any {
                chunk.push_str("{\"items\":[");
            }
            for item in &items {
                if wrote_any {
                    chunk.push(',');
                }
                chunk.push_str(item);
                wrote_any = true;
            }
            if last {
                chunk.push_str("]}");
            }
            match tokio::time::timeout(stalled_read, sender.send(Bytes::from(chunk))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return, // the client went away
                Err(_) => {
                    tracing::warn!("a client stopped reading a session; ending its read");
                    return;
                }
            }
            if last {
                producer_completed.store(true, Ordering::Release);
                if let Err(err) = reader.finish().await {
                    tracing::warn!(error = %err, "ending a session read snapshot failed");
                }
                return;
            }
        }
    };
    // The task logs under the request's span (its request id), not as an orphan.
    tokio::spawn(producer.instrument(tracing::Span::current()));
    let body = super::producer_body(receiver, completed, "the session read ended early");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
