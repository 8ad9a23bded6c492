//! Inputs the fuzz targets (`fuzz/`, `just fuzz`) found, kept as tests of the real server.

use chatstore_tests::{Backend, dual_backend_tests, with_app};

/// `session_items`: an item whose key holds a lone surrogate escape (`\ud83c` then `e`),
/// with tabs, CRs and blank lines between its tokens. The server keeps it, as every item, as
/// the exact text sent; the target had wrongly required it to parse as a `serde_json::Value`,
/// which refuses lone surrogates.
const LONE_SURROGATE_KEY_ITEM: &str = "{\t\";r\\t}\\\\ud83cr\\t}p\\ud83ce\"\n\n\n\n:\n\n\r\n32\t}";

async fn a_lone_surrogate_key_with_odd_whitespace_is_kept_byte_for_byte(backend: Backend) {
    with_app(backend, async |app| {
        let body = format!("{{\"items\":[{LONE_SURROGATE_KEY_ITEM}]}}");
        let added = app.post("/sessions/fuzzed/items", "alice", &body).await;
        assert_eq!((added.status, added.text.as_str()), (200, r#"{"added":1}"#));
        let read = app.get("/sessions/fuzzed/items", "alice").await;
        assert_eq!(read.status, 200, "{}", read.text);
        assert_eq!(read.text, format!("{{\"items\":[{LONE_SURROGATE_KEY_ITEM}]}}"));
    })
    .await;
}

dual_backend_tests!(a_lone_surrogate_key_with_odd_whitespace_is_kept_byte_for_byte);
