//! The HTTP routes, one module per section of `API.md`.

use axum::Router;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use repositories::Order;
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::settings::Settings;
use crate::state::AppState;

pub(crate) mod attachment_content;
pub(crate) mod chatkit;
pub(crate) mod chats;
pub(crate) mod health;
pub(crate) mod run;
pub(crate) mod sessions;
pub(crate) mod threads;

/// The most arrays and objects a stored JSON value may nest: serde_json's own limit (it reads
/// 127 levels and refuses the 128th), which ChatKit bodies already meet by being parsed. A
/// value nested deeper could be stored but never read back by serde_json, nor by the Python
/// client's `json.loads` once deep enough, so one request would poison a conversation.
pub(crate) const MAX_JSON_NESTING: usize = 127;

/// Page sizes a list accepts, and the default.
const PAGE_LIMITS: std::ops::RangeInclusive<i64> = 1..=100;
const DEFAULT_PAGE_LIMIT: u64 = 20;

/// Every route of the API (the documentation routes are added by `startup`).
pub(crate) fn router(settings: &Settings) -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(attachment_content::router(settings.attachments.max_bytes))
        .merge(sessions::router())
        .merge(chats::router())
        .merge(chatkit::router())
        .merge(run::router())
        .merge(threads::router())
}

/// A JSON response whose body is `text` as is (stored JSON, never re-encoded).
pub(crate) fn json_text(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// The texts of conversation items, which must all be JSON objects nested no deeper than
/// [`MAX_JSON_NESTING`].
pub(crate) fn object_items<'a>(field: &str, items: &'a [Box<RawValue>]) -> ApiResult<Vec<&'a str>> {
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let text = item.get();
            if !text.starts_with('{') {
                Err(ApiError::invalid(format!("{field}[{index}] is not a JSON object")))
            } else if nests_too_deep(text) {
                Err(ApiError::invalid(format!(
                    "{field}[{index}] nests more than {MAX_JSON_NESTING} arrays and objects"
                )))
            } else {
                Ok(text)
            }
        })
        .collect()
}

/// Whether valid JSON `text` nests more than [`MAX_JSON_NESTING`] arrays and objects. It
/// counts brackets outside strings, so the exact text kept for storage is never parsed into
/// values or written again.
fn nests_too_deep(text: &str) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_NESTING {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The `order` of every HTTP list.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PageOrder {
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
pub(crate) fn page_limit(limit: Option<i64>) -> ApiResult<u64> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn nesting_is_counted_as_serde_json_counts_it() {
        for levels in [1, 2, MAX_JSON_NESTING - 1, MAX_JSON_NESTING, MAX_JSON_NESTING + 1, 5000] {
            let text = nested(levels);
            let serde_reads_it = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            assert_eq!(!nests_too_deep(&text), serde_reads_it, "{levels} levels");
        }
        assert!(!nests_too_deep(&nested(MAX_JSON_NESTING)));
        assert!(nests_too_deep(&nested(MAX_JSON_NESTING + 1)));
    }

    #[test]
    fn brackets_in_strings_and_escapes_do_not_count() {
        let deep_looking = format!(r#"{{"a": "{}", "b": "\"[{{", "c": [1]}}"#, "[{".repeat(300));
        assert!(!nests_too_deep(&deep_looking));
        let escaped_backslash = format!(r#"{{"a": "\\\\", "b": {}}}"#, nested(MAX_JSON_NESTING));
        assert!(nests_too_deep(&escaped_backslash), "the string ends before the brackets");
        let objects =
            format!("{}1{}", r#"{"k":"#.repeat(MAX_JSON_NESTING), "}".repeat(MAX_JSON_NESTING));
        assert!(!nests_too_deep(&objects));
        assert!(nests_too_deep(&format!("[{objects}]")));
    }
}
