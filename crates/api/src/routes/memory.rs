//! Advanced agent memory over HTTP: conditional tail replace (the SDK's compaction hook),
//! turns, branches and run usage. `main` is the session of the plain `/sessions/{id}/...`
//! routes; every route here that takes a `branch` reads or writes that line only.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use repositories::{BranchInfo, Id, Line, LineItem, TailReplace, Turn, TurnUsage, UsageTotals};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};
use crate::routes::{json_text, object_items};
use crate::state::AppState;

/// The most items one snapshot page reads.
const MAX_SNAPSHOT_LIMIT: i64 = 10_000;

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    snapshot,
    replace,
    list_turns,
    latest_turns,
    list_branches,
    create_branch,
    delete_branch,
    clear_memory,
    get_branch_items,
    add_branch_items,
    clear_branch,
    pop_branch,
    store_usage,
    get_usage,
    get_turn_usage
))]
pub(crate) struct Doc;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions/{session_id}/snapshot", get(snapshot))
        .route("/sessions/{session_id}/replace", post(replace))
        .route("/sessions/{session_id}/turns", get(list_turns))
        .route("/sessions/{session_id}/turns/latest", get(latest_turns))
        .route("/sessions/{session_id}/memory", delete(clear_memory))
        .route("/sessions/{session_id}/branches", get(list_branches).post(create_branch))
        .route("/sessions/{session_id}/branches/{branch_id}", delete(delete_branch))
        .route(
            "/sessions/{session_id}/branches/{branch_id}/items",
            get(get_branch_items).post(add_branch_items).delete(clear_branch),
        )
        .route("/sessions/{session_id}/branches/{branch_id}/pop", post(pop_branch))
        .route("/sessions/{session_id}/usage", get(get_usage).put(store_usage))
        .route("/sessions/{session_id}/usage/turns", get(get_turn_usage))
}

/// A branch name from a query or body: an id that is not blank.
fn branch_name(name: Option<&str>) -> ApiResult<Line<'_>> {
    if let Some(name) = name {
        Id::check(name).map_err(|reason| ApiError::invalid(format!("branch {reason}")))?;
        if name.trim().is_empty() {
            return Err(ApiError::invalid("branch must not be blank"));
        }
    }
    Ok(Line::named(name))
}

/// `{"items": [...], "first_position": p | null, ...extra}` from stored items, which hold
/// consecutive positions.
fn items_page(items: &[LineItem], extra: &str) -> Response {
    let mut body = String::from("{\"items\":[");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(&item.data);
    }
    body.push_str("],\"first_position\":");
    match items.first() {
        Some(first) => body.push_str(&first.position.to_string()),
        None => body.push_str("null"),
    }
    body.push_str(extra);
    body.push('}');
    json_text(StatusCode::OK, body)
}

/// `{"items": [...], "first_position": p | null}`
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the hand-built response body
pub(crate) struct ItemsPageResponse {
    #[schema(value_type = Vec<Object>)]
    items: Vec<()>,
    /// The position of the first item; positions are consecutive. `null` when none.
    first_position: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SnapshotQuery {
    /// How many items (1 to 10,000): the latest ones, or with `after` the ones after it.
    #[param(minimum = 1, maximum = 10000)]
    limit: i64,
    /// Read the items after this position instead of the latest ones (oldest first).
    after: Option<i64>,
    /// The line to read; `main` (the default) is the session itself.
    #[param(pattern = "\\S", max_length = 255)]
    branch: Option<String>,
}

/// `{"items", "first_position", "revision", "item_count", "position_base"}`
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the hand-built response body
pub(crate) struct SnapshotResponse {
    #[schema(value_type = Vec<Object>)]
    items: Vec<()>,
    /// The position of the first item; positions are consecutive. `null` when none.
    first_position: Option<i64>,
    /// The line's revision when it was read: pass it to `replace`.
    revision: i64,
    item_count: i64,
    /// The line's items hold positions `position_base + 1 ..= position_base + item_count`.
    position_base: i64,
}

/// Reads part of a line with its revision, for a later conditional `replace`.
#[utoipa::path(get, path = "/sessions/{session_id}/snapshot", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id"), SnapshotQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The items with the revision they were read at; an unknown session is empty at revision 0", body = SnapshotResponse),
        (status = 400, description = "Bad id, limit or branch", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such branch", body = ErrorBody),
    ))]
pub(crate) async fn snapshot(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<Id>,
    Query(query): Query<SnapshotQuery>,
) -> ApiResult<Response> {
    if !(1..=MAX_SNAPSHOT_LIMIT).contains(&query.limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_SNAPSHOT_LIMIT}")));
    }
    let line = branch_name(query.branch.as_deref())?;
    let read = state.db.memory().snapshot(&user, &session, line, query.limit, query.after).await?;
    let extra = format!(
        ",\"revision\":{},\"item_count\":{},\"position_base\":{}",
        read.state.revision, read.state.item_count, read.state.position_base
    );
    Ok(items_page(&read.items, &extra))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplaceRequest {
    /// The revision the snapshot saw; the replace happens only if the line is still at it.
    pub(crate) revision: i64,
    /// The items after this position are replaced.
    #[schema(minimum = 0)]
    pub(crate) after_position: i64,
    /// How many leading items to remove as well (default 0); they must all be at or before
    /// `after_position`.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub(crate) prune_leading: i64,
    /// The new items, placed after `after_position`.
    #[schema(value_type = Vec<Object>)]
    pub(crate) items: Vec<Box<RawValue>>,
    /// The line to change; `main` (the default) is the session itself.
    #[schema(pattern = "\\S", max_length = 255)]
    pub(crate) branch: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplaceResponse {
    /// Always `true`: a replace that did not happen is a 409.
    replaced: bool,
    /// The line's new revision.
    revision: i64,
    item_count: i64,
}

/// Replaces a line's tail (and removes leading items) in one atomic step, only if the line
/// is unchanged since the snapshot.
#[utoipa::path(post, path = "/sessions/{session_id}/replace", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id")),
    request_body = ReplaceRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Replaced", body = ReplaceResponse),
        (status = 400, description = "Malformed body, a non-object item, positions out of range", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such branch", body = ErrorBody),
        (status = 409, description = "The line changed since `revision` (or does not exist): nothing changed", body = ErrorBody),
    ))]
pub(crate) async fn replace(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<Id>,
    Json(body): Json<ReplaceRequest>,
) -> ApiResult<Json<ReplaceResponse>> {
    let items = object_items("items", &body.items)?;
    let line = branch_name(body.branch.as_deref())?;
    if body.prune_leading < 0 || body.after_position < 0 {
        return Err(ApiError::invalid("after_position and prune_leading must be at least 0"));
    }
    let memory = state.db.memory();
    if let Line::Branch(_) = line {
        // An unknown branch is a 404, not a conflict.
        memory.state(&user, &session, line).await?;
    }
    let change = TailReplace {
        revision: body.revision,
        after_position: body.after_position,
        prune_leading: body.prune_leading,
        items: &items,
    };
    let done = memory.replace_tail(&user, &session, line, change).await?;
    Ok(Json(ReplaceResponse {
        replaced: true,
        revision: done.revision,
        item_count: done.item_count,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TurnsQuery {
    /// The line; `main` (the default) is the session itself.
    #[param(pattern = "\\S", max_length = 255)]
    branch: Option<String>,
    /// Only turns whose user message contains this text (case-insensitive for ASCII letters).
    #[param(min_length = 1)]
    q: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TurnJson {
    /// The turn's number in its line, from 1.
    turn: i64,
    /// The position of the user message that starts it.
    position: i64,
    /// The user message's `content` (a string or a list of parts), exactly as stored.
    #[schema(value_type = serde_json::Value)]
    content: Box<RawValue>,
    /// The content as text, cut to 100 characters (then followed by `...`).
    preview: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TurnsResponse {
    turns: Vec<TurnJson>,
}

/// The texts of a message's content: itself when a string, else its parts' `text`.
fn content_texts(content: &serde_json::Value) -> Vec<&str> {
    match content {
        serde_json::Value::String(text) => vec![text.as_str()],
        serde_json::Value::Array(parts) => {
            parts.iter().filter_map(|part| part.get("text")?.as_str()).collect()
        }
        _ => Vec::new(),
    }
}

fn preview(content: &serde_json::Value) -> String {
    let text = match content {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    match text.char_indices().nth(100) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// The `content` of a stored message, as its exact text (key order kept).
#[derive(Deserialize)]
struct ContentOnly {
    content: Option<Box<RawValue>>,
}

fn turn_json(turn: &Turn) -> Option<(TurnJson, serde_json::Value)> {
    let raw: ContentOnly = serde_json::from_str(&turn.data).ok()?;
    let content = raw
        .content
        .unwrap_or_else(|| RawValue::from_string("\"\"".to_owned()).expect("an empty JSON string"));
    // serde_json refuses some texts JSON allows (a lone surrogate escape): such a content is
    // still the turn's, matched and previewed as its raw text.
    let value = serde_json::from_str(content.get())
        .unwrap_or_else(|_| serde_json::Value::String(content.get().to_owned()));
    let json = TurnJson {
        turn: turn.number,
        position: turn.position,
        preview: preview(&value),
        content,
        created_at: turn.created_at,
    };
    Some((json, value))
}

/// A line's turns (a turn starts at each user message), or those whose text contains `q`.
#[utoipa::path(get, path = "/sessions/{session_id}/turns", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id"), TurnsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The turns, in order; none for an unknown session", body = TurnsResponse),
        (status = 400, description = "Bad id, branch or empty q", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such branch", body = ErrorBody),
    ))]
pub(crate) async fn list_turns(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<Id>,
    Query(query): Query<TurnsQuery>,
) -> ApiResult<Json<TurnsResponse>> {
    let line = branch_name(query.branch.as_deref())?;
    let needle = match query.q.as_deref() {
        Some("") => return Err(ApiError::invalid("q must not be empty")),
        Some(q) => Some(q.to_ascii_lowercase()),
        None => None,
    };
    let turns = state.db.memory().turns(&user, &session, line).await?;
    let turns = turns
        .iter()
        .filter_map(turn_json)
        .filter(|(_, content)| match &needle {
            None => true,
            Some(needle) => content_texts(content)
                .iter()
                .any(|text| text.to_ascii_lowercase().contains(needle.as_str())),
        })
        .map(|(turn, _)| turn)
        .collect();
    Ok(Json(TurnsResponse { turns }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LatestTurnsQuery {
    /// How many whole turns (at least 1).
    #[param(minimum = 1)]
    turns: i64,
    /// The line; `main` by default.
    #[param(pattern = "\\S", max_length = 255)]
    branch: Option<String>,
}

/// The items of the latest N whole turns, oldest first: a limit that never separates a
/// `function_call` from its `function_call_output`.
#[utoipa::path(get, path = "/sessions/{session_id}/turns/latest", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id"), LatestTurnsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The items; the whole line when it has fewer turns", body = ItemsPageResponse),
        (status = 400, description = "Bad id, branch or turns", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such branch", body = ErrorBody),
    ))]
pub(crate) async fn latest_turns(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<Id>,
    Query(query): Query<LatestTurnsQuery>,
) -> ApiResult<Response> {
    if query.turns < 1 {
        return Err(ApiError::invalid("turns must be at least 1"));
    }
    let line = branch_name(query.branch.as_deref())?;
    let items = state.db.memory().latest_turns(&user, &session, line, query.turns).await?;
    Ok(items_page(&items, ""))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BranchJson {
    branch_id: String,
    message_count: i64,
    user_turns: i64,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<BranchInfo> for BranchJson {
    fn from(info: BranchInfo) -> Self {
        Self {
            branch_id: info.branch_id,
            message_count: info.message_count,
            user_turns: info.user_turns,
            created_at: info.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BranchesResponse {
    branches: Vec<BranchJson>,
}

/// `main` and every branch not deleted, oldest first.
#[utoipa::path(get, path = "/sessions/{session_id}/branches", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The lines; none for an unknown session", body = BranchesResponse),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn list_branches(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<Id>,
) -> ApiResult<Json<BranchesResponse>> {
    let branches = state.db.memory().branches(&user, &session).await?;
    Ok(Json(BranchesResponse { branches: branches.into_iter().map(Into::into).collect() }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBranchRequest {
    /// The new branch's name: never used before in this session (deleted names stay taken).
    #[schema(pattern = "\\S", max_length = 255)]
    pub(crate) branch_id: String,
    /// The turn to fork before: the branch holds everything before its user message.
    #[schema(minimum = 1)]
    pub(crate) turn: i64,
    /// The line to fork; `main` by default.
    #[schema(pattern = "\\S", max_length = 255)]
    pub(crate) from_branch: Option<String>,
}

/// Forks a line before one of its turns, sharing (not copying) the history before it.
#[utoipa::path(post, path = "/sessions/{session_id}/branches", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id")),
    request_body = CreateBranchRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = BranchJson),
        (status = 400, description = "Malformed body, blank name, turn below 1", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such session, source branch or turn", body = ErrorBody),
        (status = 409, description = "The name was already used in this session", body = ErrorBody),
    ))]
pub(crate) async fn create_branch(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<Id>,
    Json(body): Json<CreateBranchRequest>,
) -> ApiResult<(StatusCode, Json<BranchJson>)> {
    let Line::Branch(name) = branch_name(Some(&body.branch_id))? else {
        return Err(ApiError::Conflict("branch id \"main\" has already been used".into()));
    };
    let from = branch_name(body.from_branch.as_deref())?;
    if body.turn < 1 {
        return Err(ApiError::invalid("turn must be at least 1"));
    }
    let info = state.db.memory().fork(&user, &session, from, body.turn, name).await?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// Deletes a branch's items and usage; its name stays reserved. `main` cannot be deleted.
#[utoipa::path(delete, path = "/sessions/{session_id}/branches/{branch_id}", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id"),
        ("branch_id" = String, Path, pattern = "\\S", max_length = 255, description = "The branch; `main` is the session itself")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad id, blank name, or `main`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such branch", body = ErrorBody),
    ))]
pub(crate) async fn delete_branch(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((session, branch)): Path<(Id, Id)>,
) -> ApiResult<StatusCode> {
    let line = Line::named(Some(branch.as_str()));
    state.db.memory().delete_branch(&user, &session, line.name()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Empties the session entirely: main's items, every branch's items, all usage. Branch
/// names stay reserved. (`DELETE /sessions/{id}/items` clears main only.)
#[utoipa::path(delete, path = "/sessions/{session_id}/memory", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Cleared (also for an unknown session)"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn clear_memory(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<Id>,
) -> ApiResult<StatusCode> {
    state.db.memory().clear_all(&user, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BranchItemsQuery {
    /// Only the latest `limit` items (0 or more); all without it.
    #[param(minimum = 0)]
    limit: Option<i64>,
}

/// A branch's items (the latest `limit`), oldest first, as `GET /sessions/{id}/items`.
#[utoipa::path(get, path = "/sessions/{session_id}/branches/{branch_id}/items", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id"),
        ("branch_id" = String, Path, pattern = "\\S", max_length = 255, description = "The branch; `main` is the session itself"), BranchItemsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The items", body = ItemsPageResponse),
        (status = 400, description = "Bad id or limit", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such branch", body = ErrorBody),
    ))]
pub(crate) async fn get_branch_items(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((session, branch)): Path<(Id, Id)>,
    Query(query): Query<BranchItemsQuery>,
) -> ApiResult<Response> {
    let line = Line::named(Some(branch.as_str()));
    if query.limit.is_some_and(|limit| limit < 0) {
        return Err(ApiError::invalid("limit must be 0 or a positive integer"));
    }
    let memory = state.db.memory();
    let items = match query.limit {
        Some(0) => {
            memory.state(&user, &session, line).await?;
            Vec::new()
        }
        limit => memory.latest(&user, &session, line, limit).await?,
    };
    Ok(items_page(&items, ""))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AddedResponse {
    added: u64,
}

/// Appends a batch to a branch, atomically.
#[utoipa::path(post, path = "/sessions/{session_id}/branches/{branch_id}/items", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id"),
        ("branch_id" = String, Path, pattern = "\\S", max_length = 255, description = "The branch; `main` is the session itself")),
    request_body = crate::routes::sessions::AddItemsRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Appended", body = AddedResponse),
        (status = 400, description = "Malformed body, a non-object item", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such branch", body = ErrorBody),
    ))]
pub(crate) async fn add_branch_items(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((session, branch)): Path<(Id, Id)>,
    Json(body): Json<crate::routes::sessions::AddItemsRequest>,
) -> ApiResult<Json<AddedResponse>> {
    let items = object_items("items", &body.items)?;
    let added = match Line::named(Some(branch.as_str())) {
        Line::Main => state.db.sessions().add_items(&user, &session, &items, None).await?,
        Line::Branch(name) => {
            state.db.memory().append_branch(&user, &session, name, &items).await?
        }
    };
    Ok(Json(AddedResponse { added }))
}

/// Removes every item of a branch; `main` keeps what it shares with it.
#[utoipa::path(delete, path = "/sessions/{session_id}/branches/{branch_id}/items", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id"),
        ("branch_id" = String, Path, pattern = "\\S", max_length = 255, description = "The branch; `main` is the session itself")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Cleared"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such branch", body = ErrorBody),
    ))]
pub(crate) async fn clear_branch(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((session, branch)): Path<(Id, Id)>,
) -> ApiResult<StatusCode> {
    match Line::named(Some(branch.as_str())) {
        Line::Main => state.db.sessions().clear(&user, &session).await?,
        Line::Branch(name) => state.db.memory().clear_branch(&user, &session, name).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Removes and returns a branch's newest item, or `null`.
#[utoipa::path(post, path = "/sessions/{session_id}/branches/{branch_id}/pop", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id"),
        ("branch_id" = String, Path, pattern = "\\S", max_length = 255, description = "The branch; `main` is the session itself")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"item\": object | null}`", body = crate::routes::sessions::PopResponse),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such branch", body = ErrorBody),
    ))]
pub(crate) async fn pop_branch(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((session, branch)): Path<(Id, Id)>,
) -> ApiResult<Response> {
    let item = match Line::named(Some(branch.as_str())) {
        Line::Main => state.db.sessions().pop_item(&user, &session).await?,
        Line::Branch(name) => state.db.memory().pop_branch(&user, &session, name).await?,
    };
    let body = format!("{{\"item\":{}}}", item.as_deref().unwrap_or("null"));
    Ok(json_text(StatusCode::OK, body))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageRequest {
    /// The line whose current turn the usage belongs to; `main` by default.
    #[schema(pattern = "\\S", max_length = 255)]
    pub(crate) branch: Option<String>,
    #[schema(minimum = 0)]
    pub(crate) requests: i64,
    #[schema(minimum = 0)]
    pub(crate) input_tokens: i64,
    #[schema(minimum = 0)]
    pub(crate) output_tokens: i64,
    #[schema(minimum = 0)]
    pub(crate) total_tokens: i64,
    /// e.g. `{"cached_tokens": 0}`
    #[schema(value_type = Option<Object>)]
    pub(crate) input_tokens_details: Option<Box<RawValue>>,
    /// e.g. `{"reasoning_tokens": 0}`
    #[schema(value_type = Option<Object>)]
    pub(crate) output_tokens_details: Option<Box<RawValue>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StoredUsageResponse {
    /// The turn the usage was stored for; `null` when the line has no turn (nothing stored).
    turn: Option<i64>,
}

fn details(field: &str, value: Option<&RawValue>) -> ApiResult<Option<String>> {
    match value.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(text) if text.starts_with('{') => Ok(Some(text.to_owned())),
        Some(_) => Err(ApiError::invalid(format!("{field} must be an object or null"))),
    }
}

/// Stores a run's usage as that of the line's current turn (replacing what it had).
#[utoipa::path(put, path = "/sessions/{session_id}/usage", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id")),
    request_body = UsageRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored (or not, with `turn: null`)", body = StoredUsageResponse),
        (status = 400, description = "Malformed body, negative counts", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such branch", body = ErrorBody),
    ))]
pub(crate) async fn store_usage(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<Id>,
    Json(body): Json<UsageRequest>,
) -> ApiResult<Json<StoredUsageResponse>> {
    let line = branch_name(body.branch.as_deref())?;
    if [body.requests, body.input_tokens, body.output_tokens, body.total_tokens]
        .iter()
        .any(|count| *count < 0)
    {
        return Err(ApiError::invalid("usage counts must be at least 0"));
    }
    let usage = TurnUsage {
        turn: 0,
        requests: body.requests,
        input_tokens: body.input_tokens,
        output_tokens: body.output_tokens,
        total_tokens: body.total_tokens,
        input_tokens_details: details(
            "input_tokens_details",
            body.input_tokens_details.as_deref(),
        )?,
        output_tokens_details: details(
            "output_tokens_details",
            body.output_tokens_details.as_deref(),
        )?,
    };
    let memory = state.db.memory();
    if let Line::Branch(_) = line {
        memory.state(&user, &session, line).await?;
    }
    let turn = memory.store_usage(&user, &session, line, &usage).await?;
    Ok(Json(StoredUsageResponse { turn }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageQuery {
    /// One line only; every line's usage without it.
    #[param(pattern = "\\S", max_length = 255)]
    branch: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageTotalsJson {
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    /// How many turns have usage.
    total_turns: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageResponse {
    /// `null` when no usage was stored.
    usage: Option<UsageTotalsJson>,
}

/// Usage added up over the session's turns (every line, or one).
#[utoipa::path(get, path = "/sessions/{session_id}/usage", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id"), UsageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The totals", body = UsageResponse),
        (status = 400, description = "Bad id or branch", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn get_usage(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<Id>,
    Query(query): Query<UsageQuery>,
) -> ApiResult<Json<UsageResponse>> {
    let line = match query.branch.as_deref() {
        None => None,
        Some(name) => Some(branch_name(Some(name))?),
    };
    let totals = state.db.memory().usage_totals(&user, &session, line).await?;
    Ok(Json(UsageResponse {
        usage: totals.map(|totals: UsageTotals| UsageTotalsJson {
            requests: totals.requests,
            input_tokens: totals.input_tokens,
            output_tokens: totals.output_tokens,
            total_tokens: totals.total_tokens,
            total_turns: totals.turns,
        }),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TurnUsageQuery {
    /// The line; `main` by default.
    #[param(pattern = "\\S", max_length = 255)]
    branch: Option<String>,
    /// One turn only.
    turn: Option<i64>,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the hand-built response body
pub(crate) struct TurnUsageJson {
    user_turn_number: i64,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    #[schema(value_type = Option<Object>)]
    input_tokens_details: Option<()>,
    #[schema(value_type = Option<Object>)]
    output_tokens_details: Option<()>,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the hand-built response body
pub(crate) struct TurnUsageResponse {
    turns: Vec<TurnUsageJson>,
}

/// The usage of each turn of a line, in turn order (or of one turn).
#[utoipa::path(get, path = "/sessions/{session_id}/usage/turns", tag = "memory",
    params(("session_id" = String, Path, description = "The session (chat) id"), TurnUsageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The turns' usage", body = TurnUsageResponse),
        (status = 400, description = "Bad id or branch", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn get_turn_usage(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session): Path<Id>,
    Query(query): Query<TurnUsageQuery>,
) -> ApiResult<Response> {
    let line = branch_name(query.branch.as_deref())?;
    let turns = state.db.memory().turn_usage(&user, &session, line, query.turn).await?;
    let mut body = String::from("{\"turns\":[");
    for (index, usage) in turns.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"user_turn_number\":{},\"requests\":{},\"input_tokens\":{},\"output_tokens\":{},\
             \"total_tokens\":{},\"input_tokens_details\":{},\"output_tokens_details\":{}}}",
            usage.turn,
            usage.requests,
            usage.input_tokens,
            usage.output_tokens,
            usage.total_tokens,
            usage.input_tokens_details.as_deref().unwrap_or("null"),
            usage.output_tokens_details.as_deref().unwrap_or("null"),
        ));
    }
    body.push_str("]}");
    Ok(json_text(StatusCode::OK, body))
}
