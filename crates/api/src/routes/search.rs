//! `GET /search`: full-text search over the caller's conversations.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::SecondsFormat;
use repositories::{ItemRef, SearchCursor, SearchHit, SearchKind, SearchRequest, SearchText};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Query};
use crate::routes::page_limit;
use crate::state::AppState;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(search),
    components(schemas(SearchPage, Hit, HitItemRef, HitKind)),
    tags((name = "search", description = "Full-text search over the caller's session items, \
        chat titles, ChatKit thread titles and thread items"))
)]
pub(crate) struct Doc;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/search", get(search))
}

/// Where to look.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum KindParam {
    All,
    Sessions,
    Threads,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// The words to find (1 to 1,000 characters, at least one letter or digit). Every word
    /// must match, case and accents aside; the last one also matches as the start of a word.
    #[param(min_length = 1, max_length = 1000)]
    q: String,
    /// `all` (default), `sessions` (chats: their titles and session items) or `threads`
    /// (ChatKit threads: their titles and items).
    #[param(inline)]
    kind: Option<KindParam>,
    /// Include the hits of soft-deleted chats.
    #[serde(default)]
    include_inactive: bool,
    /// 1 to 100; default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The `after` of the previous page (opaque), for the next one.
    after: Option<String>,
}

/// A page of hits, best first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SearchPage {
    data: Vec<Hit>,
    has_more: bool,
    /// Pass as `after` (with the same `q`, `kind` and `include_inactive`) for the next page,
    /// when `has_more`.
    after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HitKind {
    /// A chat (`conversation_id` is its `chat_id`, the agent session of the same id).
    Session,
    /// A ChatKit thread.
    Thread,
}

/// One text that matched.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Hit {
    kind: HitKind,
    /// The chat id or thread id.
    conversation_id: String,
    /// The conversation's title, if it has one.
    title: Option<String>,
    /// The item that matched; `null` when the title did.
    item_ref: Option<HitItemRef>,
    /// A short excerpt of the text around the words found, without markup.
    snippet: String,
    /// Larger is better. Comparable only within one search (PostgreSQL's `ts_rank`, SQLite's
    /// negated `bm25`).
    score: f64,
    /// RFC 3339, UTC: when the item was written; for a title, when the conversation was made.
    created_at: String,
}

/// Where the hit is inside its conversation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum HitItemRef {
    /// A session item, by its position (1 is the oldest).
    Position { position: i64 },
    /// A ChatKit thread item, by its id.
    ItemId { item_id: String },
}

impl From<SearchHit> for Hit {
    fn from(hit: SearchHit) -> Self {
        let kind = if hit.kind == "thread" { HitKind::Thread } else { HitKind::Session };
        let item_ref = match hit.item_ref {
            ItemRef::Title => None,
            ItemRef::Position(position) => Some(HitItemRef::Position { position }),
            ItemRef::ItemId(item_id) => Some(HitItemRef::ItemId { item_id }),
        };
        Self {
            kind,
            conversation_id: hit.conversation_id,
            title: hit.title,
            item_ref,
            snippet: hit.snippet,
            score: hit.score,
            created_at: hit.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        }
    }
}

/// Finds the caller's conversations by what was said in them, best match first.
///
/// Text is taken from message `content` (a string, or its `input_text` and `output_text`
/// parts) of session and ChatKit thread items, and from chat and thread titles. Matching
/// ignores case and accents; words are found whole, except the last word of `q`, which also
/// matches as a prefix. Text written without spaces between words (Chinese, Japanese, Thai)
/// is indexed as whole runs, so only a run's start finds it (see the README).
#[utoipa::path(get, path = "/search", tag = "search", params(SearchQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of hits", body = SearchPage),
        (status = 400, description = "Empty or too long `q`, bad `kind`, `limit` or `after`", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "Search is switched off on this server (`search.enabled = false`)", body = ErrorBody),
    ))]
pub(crate) async fn search(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<SearchPage>> {
    if !state.settings.search.enabled {
        return Err(ApiError::not_found(
            "search is switched off on this server (search.enabled = false)",
        ));
    }
    let request = SearchRequest {
        text: SearchText::parse(&query.q)?,
        kind: match query.kind.unwrap_or(KindParam::All) {
            KindParam::All => SearchKind::All,
            KindParam::Sessions => SearchKind::Sessions,
            KindParam::Threads => SearchKind::Threads,
        },
        include_inactive: query.include_inactive,
        after: query.after.as_deref().map(SearchCursor::parse).transpose()?,
        limit: page_limit(query.limit)?,
    };
    let page = state.db.search().find(&user, &request).await?;
    Ok(Json(SearchPage {
        data: page.data.into_iter().map(Hit::from).collect(),
        has_more: page.has_more,
        after: page.after,
    }))
}
