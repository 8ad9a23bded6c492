//! Ids in paths, the list query (`limit`, the `after` cursor, `order`) and `Idempotency-Key`.
#![no_main]

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, Uri};
use chatstore::input::{ListQuery, idempotency_key, page_limit};
use libfuzzer_sys::fuzz_target;
use repositories::Id;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = Id::parse("session_id", text) {
            assert!(!id.is_empty() && id.len() <= Id::MAX_BYTES && !id.contains('\0'));
            assert_eq!(id.as_str(), text);
        }
        if let Ok(uri) = format!("/chats?{text}").parse::<Uri>()
            && let Ok(Query(query)) = Query::<ListQuery>::try_from_uri(&uri)
        {
            if let Ok(limit) = page_limit(query.limit) {
                assert!((1..=100).contains(&limit));
            }
            // The cursor is an id, checked as it was read.
            if let Some(after) = &query.after {
                assert!(Id::check(after).is_ok());
            }
        }
    }
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", value);
        if let Ok(Some(key)) = idempotency_key(&headers, &["{}"]) {
            assert!(!key.key.is_empty() && key.key.len() <= 255);
        }
    }
});
