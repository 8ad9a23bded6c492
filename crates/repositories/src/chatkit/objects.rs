//! The stored form of ChatKit objects: what the store reads out of their JSON text, and the
//! checks that text must pass before it is written.

use chrono::{DateTime, Datelike, Utc};
use entity::{chatkit_attachment, chatkit_item, chatkit_thread};

use super::iso_time::parse_iso_timestamp;
use super::stored;
use crate::{RepoError, RepoResult};

/// A stored ChatKit object: its id and its exact JSON text.
pub trait StoredObject {
    fn id(&self) -> &str;
    fn json(&self) -> &str;
}

/// Thread metadata as stored (`ThreadMetadata` JSON, without any `items`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredThread {
    pub id: String,
    pub title: Option<String>,
    /// `created_at`, normalised to UTC (naive values taken as UTC); the text keeps the original.
    pub created_at: DateTime<Utc>,
    pub json: String,
}

/// A thread item as stored (`ThreadItem` JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    pub id: String,
    pub thread_id: String,
    /// The item's `type` (`user_message`, `hidden_context_item`, ...).
    pub item_type: String,
    pub created_at: DateTime<Utc>,
    pub json: String,
}

/// Attachment metadata as stored (`Attachment` JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    pub id: String,
    pub thread_id: Option<String>,
    pub name: String,
    pub mime_type: String,
    pub json: String,
}

impl StoredObject for StoredThread {
    fn id(&self) -> &str {
        &self.id
    }
    fn json(&self) -> &str {
        &self.json
    }
}

impl StoredObject for StoredItem {
    fn id(&self) -> &str {
        &self.id
    }
    fn json(&self) -> &str {
        &self.json
    }
}

impl StoredObject for StoredAttachment {
    fn id(&self) -> &str {
        &self.id
    }
    fn json(&self) -> &str {
        &self.json
    }
}

/// What an upsert stored, and whether it created the object (`false`: it replaced one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved<T> {
    pub stored: T,
    pub created: bool,
}

pub(super) fn invalid(message: String) -> RepoError {
    RepoError::Invalid(message)
}

/// The error for a thread the user does not have.
pub(super) fn thread_not_found(thread_id: &str) -> RepoError {
    RepoError::NotFound(format!("thread {thread_id:?} not found"))
}

/// The text without surrounding JSON whitespace.
fn trim_json(json: &str) -> &str {
    json.trim_matches([' ', '\t', '\n', '\r'])
}

/// Ids follow the one rule of [`crate::Id`].
pub(super) fn check_id(what: &str, id: &str) -> RepoResult<()> {
    crate::Id::check(id).map_err(|reason| invalid(format!("{what} {reason}")))
}

pub(super) fn check_ids(ids: &[(&str, &str)]) -> RepoResult<()> {
    ids.iter().try_for_each(|(what, id)| check_id(what, id))
}

/// A decoded string for an informational column: NUL (unstorable in PostgreSQL text) becomes
/// U+FFFD there; the JSON text keeps the original escape.
fn column_text(text: String) -> String {
    if text.contains('\0') { text.replace('\0', "\u{FFFD}") } else { text }
}

fn parse_created_at(what: &str, value: Option<serde_json::Value>) -> RepoResult<DateTime<Utc>> {
    let text = stored::required_string(what, "created_at", value).map_err(invalid)?;
    let at = parse_iso_timestamp(&text).map_err(|reason| {
        invalid(format!(
            "the {what}'s `created_at` ({text:?}) is not an ISO 8601 timestamp: {reason}"
        ))
    })?;
    // Python's datetime stops there too; and outside it, the text SQLite compares would sort
    // wrongly (a fifth year digit, or year 0).
    if !(1..=9999).contains(&at.year()) {
        return Err(invalid(format!(
            "the {what}'s `created_at` ({text:?}) is outside years 1 to 9999 in UTC"
        )));
    }
    Ok(at)
}

/// The whole text must be JSON that parses, not only the fields read out of it: a lone
/// surrogate escape deep inside would otherwise break every later read that parses it.
fn check_well_formed(what: &str, json: &str) -> RepoResult<()> {
    serde_json::from_str::<serde_json::Value>(json)
        .map(drop)
        .map_err(|err| invalid(format!("the {what} is not valid JSON: {err}")))
}

impl StoredThread {
    /// Validates `ThreadMetadata` (or `Thread`) JSON: an object with a string `id`, an ISO
    /// 8601 `created_at`, and a `title` that is a string, `null` or absent. An `items` key is
    /// dropped from the text; every other byte is kept.
    pub fn parse(json: &str) -> RepoResult<Self> {
        let json = trim_json(json);
        check_well_formed("thread", json)?;
        let fields = stored::fields("thread", json).map_err(invalid)?;
        let id = stored::required_string("thread", "id", fields.id).map_err(invalid)?;
        check_id("the thread's `id`", &id)?;
        let created_at = parse_created_at("thread", fields.created_at)?;
        let title = stored::optional_string("thread", "title", fields.title)
            .map_err(invalid)?
            .map(column_text);
        let json = stored::without_top_level_key(json, "items").map_err(invalid)?.into_owned();
        Ok(Self { id, title, created_at, json })
    }
}

impl StoredItem {
    /// Validates `ThreadItem` JSON of thread `thread_id`: an object with a string `id`, a
    /// non-empty string `type` (any: newer SDKs add types), an ISO 8601 `created_at`, and a
    /// `thread_id` that is a string, `null` or absent. The item's own `thread_id` may name
    /// another thread: the SDK's stores file an item under the thread it is written to and
    /// return it as given, so this one does too.
    pub fn parse(thread_id: &str, json: &str) -> RepoResult<Self> {
        let json = trim_json(json);
        check_well_formed("item", json)?;
        let fields = stored::fields("item", json).map_err(invalid)?;
        let id = stored::required_string("item", "id", fields.id).map_err(invalid)?;
        check_id("the item's `id`", &id)?;
        let item_type =
            column_text(stored::required_string("item", "type", fields.kind).map_err(invalid)?);
        let created_at = parse_created_at("item", fields.created_at)?;
        stored::optional_string("item", "thread_id", fields.thread_id).map_err(invalid)?;
        Ok(Self {
            id,
            thread_id: thread_id.to_owned(),
            item_type,
            created_at,
            json: json.to_owned(),
        })
    }
}

impl StoredAttachment {
    /// Validates `Attachment` JSON: an object with string `id`, `type`, `name` and
    /// `mime_type`, and a `thread_id` that is a string, `null` or absent.
    pub fn parse(json: &str) -> RepoResult<Self> {
        let json = trim_json(json);
        check_well_formed("attachment", json)?;
        let fields = stored::fields("attachment", json).map_err(invalid)?;
        let id = stored::required_string("attachment", "id", fields.id).map_err(invalid)?;
        check_id("the attachment's `id`", &id)?;
        stored::required_string("attachment", "type", fields.kind).map_err(invalid)?;
        let name = column_text(
            stored::required_string("attachment", "name", fields.name).map_err(invalid)?,
        );
        let mime_type = column_text(
            stored::required_string("attachment", "mime_type", fields.mime_type)
                .map_err(invalid)?,
        );
        let thread_id = stored::optional_string("attachment", "thread_id", fields.thread_id)
            .map_err(invalid)?;
        if let Some(thread_id) = &thread_id {
            check_id("the attachment's `thread_id`", thread_id)?;
        }
        Ok(Self { id, thread_id, name, mime_type, json: json.to_owned() })
    }
}

impl From<chatkit_thread::Model> for StoredThread {
    fn from(row: chatkit_thread::Model) -> Self {
        Self { id: row.thread_id, title: row.title, created_at: row.created_at, json: row.data }
    }
}

impl From<chatkit_item::Model> for StoredItem {
    fn from(row: chatkit_item::Model) -> Self {
        Self {
            id: row.item_id,
            thread_id: row.thread_id,
            item_type: row.item_type,
            created_at: row.created_at,
            json: row.data,
        }
    }
}

impl From<chatkit_attachment::Model> for StoredAttachment {
    fn from(row: chatkit_attachment::Model) -> Self {
        Self {
            id: row.attachment_id,
            thread_id: row.thread_id,
            name: row.name,
            mime_type: row.mime_type,
            json: row.data,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn thread_parse_drops_items_and_keeps_the_rest_verbatim() {
        let json = r#" {"title": null, "id": "thr_1", "created_at": "2025-10-06T12:00:00.123456", "status": {"type": "active"}, "items": {"data": [], "has_more": false, "after": null}, "metadata": {}} "#;
        let thread = StoredThread::parse(json).unwrap();
        assert_eq!(thread.id, "thr_1");
        assert_eq!(thread.title, None);
        assert_eq!(
            thread.json,
            r#"{"title": null, "id": "thr_1", "created_at": "2025-10-06T12:00:00.123456", "status": {"type": "active"}, "metadata": {}}"#
        );
        assert_eq!(thread.created_at.to_rfc3339(), "2025-10-06T12:00:00.123456+00:00");
    }

    #[test]
    fn malformed_objects_are_invalid() {
        let bad_threads = [
            "[]",
            "\"x\"",
            "{",
            r#"{"created_at":"2025-10-06"}"#,
            r#"{"id":"","created_at":"2025-10-06"}"#,
            r#"{"id":7,"created_at":"2025-10-06"}"#,
            r#"{"id":"t"}"#,
            r#"{"id":"t","created_at":"yesterday"}"#,
            r#"{"id":"t","created_at":1760000000}"#,
            r#"{"id":"t","created_at":"2025-10-06","title":5}"#,
            r#"{"id":"a\u0000b","created_at":"2025-10-06"}"#,
            r#"{"id":"t","id":"u","created_at":"2025-10-06"}"#,
        ];
        for json in bad_threads {
            assert!(matches!(StoredThread::parse(json), Err(RepoError::Invalid(_))), "{json}");
        }
        let bad_items = [
            r#"{"type":"end_of_turn","created_at":"2025-10-06"}"#,
            r#"{"id":"m","created_at":"2025-10-06"}"#,
            r#"{"id":"m","type":"","created_at":"2025-10-06"}"#,
            r#"{"id":"m","type":"end_of_turn"}"#,
            r#"{"id":"m","type":"end_of_turn","created_at":"2025-10-06","thread_id":3}"#,
        ];
        for json in bad_items {
            assert!(matches!(StoredItem::parse("t", json), Err(RepoError::Invalid(_))), "{json}");
        }
        let bad_attachments = [
            r#"{"name":"a","mime_type":"text/plain","type":"file"}"#,
            r#"{"id":"a","mime_type":"text/plain","type":"file"}"#,
            r#"{"id":"a","name":"a","type":"file"}"#,
            r#"{"id":"a","name":"a","mime_type":"text/plain"}"#,
            r#"{"id":"a","name":"a","mime_type":"text/plain","type":"file","thread_id":3}"#,
        ];
        for json in bad_attachments {
            assert!(matches!(StoredAttachment::parse(json), Err(RepoError::Invalid(_))), "{json}");
        }
    }
}
