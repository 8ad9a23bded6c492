//! `POST /sessions/{id}/items`: the body as the handler reads it (`AddItemsRequest`, by
//! serde_json as `axum::Json` does), then the object check and the idempotency digest.
#![no_main]

use axum::http::HeaderMap;
use chatstore::input::{AddItemsRequest, idempotency_key, object_items};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(request) = serde_json::from_slice::<AddItemsRequest>(body) else { return };
    let Ok(items) = object_items("items", &request.items) else { return };
    // Items are stored as the exact text received, and each one is a JSON object. (Not
    // necessarily one `serde_json::Value` reads: lone surrogate escapes are kept on purpose.)
    for item in &items {
        assert!(item.starts_with('{') && item.ends_with('}'), "a non-object item: {item}");
        let raw: Box<serde_json::value::RawValue> =
            serde_json::from_str(item).expect("an item is JSON text on its own");
        assert_eq!(raw.get(), *item);
    }
    let mut headers = HeaderMap::new();
    headers.insert("idempotency-key", "retry-1".parse().expect("a valid header"));
    let key = idempotency_key(&headers, &items).expect("a valid key").expect("a key");
    assert_eq!(key.request_hash.len(), 64, "a SHA-256 hex digest");
});
