//! The HTTP routes, one module per section of `API.md`.

use axum::Router;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use repositories::{MAX_JSON_NESTING, Order, nests_too_deep};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::settings::Settings;
use crate::state::AppState;

pub(crate) mod attachment_content;
pub(crate) mod chatkit;
pub(crate) mod chats;
pub(crate) mod console;
pub(crate) mod data;
pub(crate) mod health;
pub(crate) mod memory;
pub(crate) mod run;
pub(crate) mod search;
pub(crate) mod sessions;
pub(crate) mod threads;

/// Page sizes a list accepts, and the default.
const PAGE_LIMITS: std::ops::RangeInclusive<i64> = 1..=100;
const DEFAULT_PAGE_LIMIT: u64 = 20;

/// Every route of the API (the documentation routes are added by `startup`).
pub(crate) fn router(settings: &Settings) -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(attachment_content::router(settings.attachments.max_bytes))
        .merge(sessions::router())
        .merge(memory::router())
        .merge(chats::router())
        .merge(chatkit::router())
        .merge(run::router())
        .merge(threads::router())
        .merge(console::router())
        .merge(data::router())
        .merge(search::router())
}

/// The body of a streamed read whose chunks a producer task sends through `receiver`. It ends
/// cleanly only when the producer set `completed`; otherwise it ends in an error (`cut_off`),
/// so the client sees a cut-off read rather than a short one.
pub(crate) fn producer_body(
    mut receiver: tokio::sync::mpsc::Receiver<axum::body::Bytes>,
    completed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut_off: &'static str,
) -> axum::body::Body {
    use std::sync::atomic::Ordering;
    use std::task::Poll;
    let mut failed = false;
    let body = futures::stream::poll_fn(move |cx| match receiver.poll_recv(cx) {
        Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(chunk))),
        Poll::Ready(None) if !failed && !completed.load(Ordering::Acquire) => {
            failed = true;
            Poll::Ready(Some(Err(std::io::Error::other(cut_off))))
        }
        Poll::Ready(None) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    });
    axum::body::Body::from_stream(body)
}

/// A JSON response whose body is `text` as is (stored JSON, never re-encoded).
pub(crate) fn json_text(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// The texts of conversation items, which must all be JSON objects nested no deeper than
/// [`MAX_JSON_NESTING`].
pub fn object_items<'a>(field: &str, items: &'a [Box<RawValue>]) -> ApiResult<Vec<&'a str>> {
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let text = item.get();
            if !text.starts_with('{') {
                Err(ApiError::invalid(format!("{field}[{index}] is not a JSON object")))
            } else if nests_too_deep(text.as_bytes()) {
                Err(ApiError::invalid(format!(
                    "{field}[{index}] nests more than {MAX_JSON_NESTING} arrays and objects"
                )))
            } else {
                Ok(text)
            }
        })
        .collect()
}

/// The `order` of every HTTP list.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PageOrder {
    Asc,
    Desc,
}

impl From<PageOrder> for Order {
    fn from(order: PageOrder) -> Self {
        match order {
            PageOrder::Asc => Self::Asc,
            PageOrder::Desc => Self::Desc,
        }
    }
}

/// The `limit` of every HTTP list: 1 to 100, 20 when absent.
pub fn page_limit(limit: Option<i64>) -> ApiResult<u64> {
    match limit {
        None => Ok(DEFAULT_PAGE_LIMIT),
        Some(limit) if PAGE_LIMITS.contains(&limit) => Ok(limit.unsigned_abs()),
        Some(limit) => Err(ApiError::invalid(format!(
            "limit must be between {} and {} (got {limit})",
            PAGE_LIMITS.start(),
            PAGE_LIMITS.end()
        ))),
    }
}
