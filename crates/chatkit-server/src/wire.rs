//! ChatKit's wire form: what `ChatKitServer` sends, derived from the stored form.
//!
//! `ChatKitServer._serialize` dumps with `exclude_none` (every `null` dropped, at every depth)
//! and without attachment `metadata`; `_to_thread_response` rebuilds each thread without its
//! `metadata` (so clients always see `{}`) and without hidden-context items.

use repositories::Page;
use repositories::chatkit::StoredObject;
use serde_json::{Map, Value};

/// Item types the server stores but never sends.
const HIDDEN_ITEM_TYPES: [&str; 2] = ["hidden_context_item", "sdk_hidden_context"];

/// Whether a stored item is one the client never sees.
pub fn is_hidden(item: &Value) -> bool {
    item.get("type").and_then(Value::as_str).is_some_and(|kind| HIDDEN_ITEM_TYPES.contains(&kind))
}

/// Fields whose values are free-form JSON (`dict` or `Any` in `chatkit.types`: a client tool
/// call's `arguments` and `output`, a tag's or an entity source's `data`), not models.
const FREE_FORM_FIELDS: [&str; 3] = ["arguments", "output", "data"];

/// Drops `null` model fields at every depth, as pydantic's `exclude_none` does. Nulls inside
/// free-form values are data, not unset fields, so they stay.
pub fn drop_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, value)| {
                    if FREE_FORM_FIELDS.contains(&key.as_str()) {
                        (key, value)
                    } else {
                        (key, drop_nulls(value))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(drop_nulls).collect()),
        other => other,
    }
}

/// An attachment as sent: no `metadata`, no nulls.
pub fn attachment(mut attachment: Value) -> Value {
    if let Value::Object(map) = &mut attachment {
        map.remove("metadata");
    }
    drop_nulls(attachment)
}

/// An item as sent: the attachments of a user message lose their `metadata`; no nulls.
pub fn item(mut item: Value) -> Value {
    if let Some(Value::Array(attachments)) = item.get_mut("attachments") {
        for entry in attachments.iter_mut() {
            *entry = attachment(std::mem::take(entry));
        }
    }
    drop_nulls(item)
}

/// The fields `_to_thread_response` copies into the `Thread` it sends.
const THREAD_FIELDS: [&str; 5] = ["title", "id", "created_at", "status", "allowed_image_domains"];

/// A thread as sent, with `items` (a page already in wire form).
pub fn thread(stored: &Value, items: Value) -> Value {
    let mut out = Map::new();
    for field in THREAD_FIELDS {
        if let Some(value) = stored.get(field) {
            out.insert(field.to_owned(), value.clone());
        }
    }
    out.entry("status").or_insert_with(|| serde_json::json!({ "type": "active" }));
    out.insert("metadata".to_owned(), Value::Object(Map::new()));
    out.insert("items".to_owned(), items);
    drop_nulls(Value::Object(out))
}

/// A page in wire form: `after` disappears when it is `null`.
pub fn page(data: Vec<Value>, has_more: bool, after: Option<String>) -> Value {
    let mut out = Map::new();
    out.insert("data".to_owned(), Value::Array(data));
    out.insert("has_more".to_owned(), Value::Bool(has_more));
    if let Some(after) = after {
        out.insert("after".to_owned(), Value::String(after));
    }
    Value::Object(out)
}

/// The empty items page threads carry outside `threads.get_by_id`.
pub fn empty_page() -> Value {
    page(Vec::new(), false, None)
}

/// `{"data":[...],"has_more":bool,"after":string|null}` (`chatkit.types.Page`) in stored
/// form, as the HTTP store routes answer: the elements' stored text as is, never re-encoded.
pub fn stored_page<T: StoredObject>(page: &Page<T>) -> String {
    let size: usize = page.data.iter().map(|row| row.json().len() + 1).sum();
    let mut out = String::with_capacity(size + 64);
    out.push_str("{\"data\":[");
    for (index, row) in page.data.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(row.json());
    }
    out.push_str("],\"has_more\":");
    out.push_str(if page.has_more { "true" } else { "false" });
    out.push_str(",\"after\":");
    match &page.after {
        Some(after) => out.push_str(&serde_json::Value::from(after.as_str()).to_string()),
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use repositories::chatkit::StoredAttachment;
    use serde_json::json;

    use super::*;

    #[test]
    fn null_fields_go_at_every_depth_and_empty_containers_stay() {
        let stored = json!({"a": null, "b": [{"c": null, "d": 1}, null], "e": {}, "f": []});
        assert_eq!(drop_nulls(stored), json!({"b": [{"d": 1}, null], "e": {}, "f": []}));
    }

    #[test]
    fn nulls_inside_free_form_values_are_data_and_stay() {
        let stored = json!({"type": "client_tool_call", "arguments": {"a": null, "l": [null, {"b": null}]},
            "output": {"x": null}, "content": [{"type": "input_tag", "data": {"k": null}, "group": null}],
            "nothing": {"output": null}});
        assert_eq!(
            drop_nulls(stored),
            json!({"type": "client_tool_call", "arguments": {"a": null, "l": [null, {"b": null}]},
                "output": {"x": null}, "content": [{"type": "input_tag", "data": {"k": null}}], "nothing": {}})
        );
    }

    #[test]
    fn threads_lose_metadata_and_unknown_fields_and_default_their_status() {
        let stored = json!({"title": null, "id": "thr_1", "created_at": "2025-10-06T12:00:00.123456",
            "allowed_image_domains": null, "metadata": {"secret": 1}, "extra": true});
        assert_eq!(
            thread(&stored, empty_page()),
            json!({"id": "thr_1", "created_at": "2025-10-06T12:00:00.123456",
                "status": {"type": "active"}, "metadata": {}, "items": {"data": [], "has_more": false}})
        );
    }

    #[test]
    fn user_message_attachments_lose_their_metadata() {
        let stored = json!({"id": "msg_1", "type": "user_message", "quoted_text": null,
            "attachments": [{"id": "atc_1", "metadata": {"s3": "k"}, "upload_descriptor": null, "type": "file"}]});
        assert_eq!(
            item(stored),
            json!({"id": "msg_1", "type": "user_message", "attachments": [{"id": "atc_1", "type": "file"}]})
        );
        assert!(is_hidden(&json!({"type": "sdk_hidden_context"})));
        assert!(!is_hidden(&json!({"type": "assistant_message"})));
    }

    #[test]
    fn pages_are_encoded_from_the_stored_text() {
        let item = |id: &str, json: &str| StoredAttachment {
            id: id.into(),
            thread_id: None,
            name: "n".into(),
            mime_type: "m".into(),
            json: json.into(),
        };
        let rows =
            vec![item("a", r#"{"id": "a"}"#), item("b\"c", r#"{"id":"b\"c"}"#), item("d", "{}")];
        let page = Page::from_rows(rows, 2, |row| row.id.clone());
        assert_eq!(
            stored_page(&page),
            r#"{"data":[{"id": "a"},{"id":"b\"c"}],"has_more":true,"after":"b\"c"}"#
        );
        let last = Page::from_rows(vec![item("a", r#"{"id": "a"}"#)], 2, |row| row.id.clone());
        assert_eq!(stored_page(&last), r#"{"data":[{"id": "a"}],"has_more":false,"after":null}"#);
    }
}
