//! Each kind of record: its line, how a page of it is read, how one is written.
//!
//! Import checks a record as the routes check what they store (ids, JSON objects, ChatKit
//! fields), and it checks that the record's parent is there, so a bad file is a
//! [`RepoError::Invalid`] rather than a constraint failure.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use entity::{
    chat, chat_tag, chatkit_attachment, chatkit_attachment_content, chatkit_item,
    chatkit_item_feedback, chatkit_thread, conversation_item, session_idempotency_key,
};
use sea_orm::sea_query::{Condition, Expr, ExprTrait, IntoColumnRef};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};

use super::export::ExportPage;
use super::{Cursor, RecordKind, memory};
use crate::chatkit::{StoredAttachment, StoredItem, StoredThread};
use crate::{Id, MAX_JSON_NESTING, Metadata, RepoError, RepoResult, Tags, nests_too_deep};

/// Longest chat title, in characters (as `POST /chats` allows).
const MAX_TITLE_CHARS: usize = 255;

/// A timestamp as records write it: RFC 3339, UTC, microseconds (what the database keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Time(pub(super) DateTime<Utc>);

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        let at = DateTime::parse_from_rfc3339(&text).map_err(|err| {
            serde::de::Error::custom(format!("{text:?} is not an RFC 3339 timestamp: {err}"))
        })?;
        Ok(Self(at.with_timezone(&Utc)))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ChatRecord<'a> {
    kind: Cow<'a, str>,
    chat_id: Id,
    title: Option<String>,
    is_active: bool,
    /// When it was soft-deleted (`null` while active).
    deleted_at: Option<Time>,
    created_at: Time,
    updated_at: Time,
    /// The metadata object's exact text.
    metadata: String,
    tags: Vec<String>,
    /// The position before the chat's first item: 0 unless a prune dropped items from the
    /// front (positions are kept, not renumbered, so that branches and usage still match).
    #[serde(default)]
    position_base: i64,
    /// The count of writes to the items, which a conditional replace compares with.
    #[serde(default = "first_revision")]
    revision: i64,
}

fn first_revision() -> i64 {
    1
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionItemRecord<'a> {
    kind: Cow<'a, str>,
    chat_id: Id,
    /// The chat's `position_base` + 1 for its first item; each item follows the one before.
    position: i64,
    created_at: Time,
    /// The item's exact JSON text.
    data: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyKeyRecord<'a> {
    kind: Cow<'a, str>,
    chat_id: Id,
    idempotency_key: String,
    request_hash: String,
    added: i64,
    created_at: Time,
}

#[derive(Debug, Serialize, Deserialize)]
struct ThreadRecord<'a> {
    kind: Cow<'a, str>,
    updated_at: Time,
    /// The stored thread's exact JSON text (its id, title and `created_at` are read from it).
    data: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ThreadItemRecord<'a> {
    kind: Cow<'a, str>,
    thread_id: Id,
    /// The stored item's exact JSON text.
    data: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct FeedbackRecord<'a> {
    kind: Cow<'a, str>,
    thread_id: Id,
    item_id: Id,
    /// `positive` or `negative`.
    value: String,
    updated_at: Time,
}

#[derive(Debug, Serialize, Deserialize)]
struct AttachmentRecord<'a> {
    kind: Cow<'a, str>,
    created_at: Time,
    updated_at: Time,
    /// The stored attachment's exact JSON text.
    data: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct AttachmentContentRecord<'a> {
    kind: Cow<'a, str>,
    attachment_id: Id,
    mime_type: String,
    created_at: Time,
    /// The bytes, base64 (standard alphabet, padded).
    content: String,
}

/// `line` as a record of type `T`.
pub(super) fn parse<'a, T: Deserialize<'a>>(kind: RecordKind, line: &'a str) -> RepoResult<T> {
    serde_json::from_str(line)
        .map_err(|err| RepoError::Invalid(format!("a bad {} record: {err}", kind.name())))
}

pub(super) fn invalid(message: impl Into<String>) -> RepoError {
    RepoError::Invalid(message.into())
}

/// Rows after the key `after` of `columns` (compared as one tuple, in index order).
pub(super) fn after<C: IntoColumnRef + Copy>(columns: &[C], after: Option<&Cursor>) -> Condition {
    let Some(values) = after else { return Condition::all() };
    let left = Expr::tuple(columns.iter().map(|column| Expr::col(*column)));
    let right = Expr::tuple(values.iter().cloned().map(Expr::val));
    Condition::all().add(left.gt(right))
}

/// A JSON object's text as the routes accept one: well-formed, an object, not too deep.
pub(super) fn check_object(what: &str, json: &str) -> RepoResult<()> {
    serde_json::from_str::<&serde_json::value::RawValue>(json)
        .map_err(|err| invalid(format!("{what} is not valid JSON: {err}")))?;
    if !json.starts_with('{') {
        return Err(invalid(format!("{what} is not a JSON object")));
    }
    if nests_too_deep(json.as_bytes()) {
        return Err(invalid(format!(
            "{what} nests more than {MAX_JSON_NESTING} arrays and objects"
        )));
    }
    Ok(())
}

/// Fails with `missing()` unless a row of `E` meets `condition` (a primary-key lookup).
async fn exists<E: EntityTrait>(
    txn: &DatabaseTransaction,
    condition: Condition,
    missing: impl FnOnce() -> String,
) -> RepoResult<()>
where
    E::Model: Sync,
{
    let found = E::find().filter(condition).count(txn).await?;
    if found == 0 { Err(invalid(missing())) } else { Ok(()) }
}

fn chat_key(user: &str, chat_id: &str) -> Condition {
    Condition::all().add(chat::Column::UserId.eq(user)).add(chat::Column::ChatId.eq(chat_id))
}

fn thread_key(user: &str, thread_id: &str) -> Condition {
    Condition::all()
        .add(chatkit_thread::Column::UserId.eq(user))
        .add(chatkit_thread::Column::ThreadId.eq(thread_id))
}

impl RecordKind {
    /// Up to `limit` records after `cursor`, in key order.
    pub(super) async fn export_page(
        self,
        txn: &DatabaseTransaction,
        user: &str,
        cursor: Option<&Cursor>,
        limit: u64,
    ) -> RepoResult<ExportPage> {
        let kind = Cow::Borrowed(self.name());
        let mut page = ExportPage::default();
        match self {
            Self::SessionBranch | Self::SessionBranchItem | Self::TurnUsage => {
                return memory::export_page(self, txn, user, cursor, limit).await;
            }
            Self::Chat => {
                let rows = chat::Entity::find()
                    .filter(chat::Column::UserId.eq(user))
                    .filter(after(&[chat::Column::ChatId], cursor))
                    .order_by_asc(chat::Column::ChatId)
                    .limit(limit)
                    .all(txn)
                    .await?;
                let mut ranges = chat_ranges(txn, user, &rows).await?.into_iter();
                for row in rows {
                    // Both lists are the same rows in `chat_id` order, from one snapshot.
                    let (position_base, revision) = ranges.next().unwrap_or((0, 1));
                    let tags: Vec<String> = serde_json::from_str(&row.tags)
                        .map_err(|err| invalid(format!("stored tags are not a list: {err}")))?;
                    let key = vec![row.chat_id.clone().into()];
                    let record = ChatRecord {
                        kind: kind.clone(),
                        chat_id: Id::parse("chat_id", row.chat_id)?,
                        title: row.title,
                        is_active: row.is_active,
                        deleted_at: row.deleted_at.map(Time),
                        created_at: Time(row.created_at),
                        updated_at: Time(row.updated_at),
                        metadata: row.metadata,
                        tags,
                        position_base,
                        revision,
                    };
                    page.push(&record, key)?;
                }
            }
            Self::SessionItem => {
                let columns =
                    [conversation_item::Column::ChatId, conversation_item::Column::Position];
                let rows = conversation_item::Entity::find()
                    .filter(conversation_item::Column::UserId.eq(user))
                    .filter(after(&columns, cursor))
                    .order_by_asc(columns[0])
                    .order_by_asc(columns[1])
                    .limit(limit)
                    .all(txn)
                    .await?;
                for row in rows {
                    let key = vec![row.chat_id.clone().into(), row.position.into()];
                    let record = SessionItemRecord {
                        kind: kind.clone(),
                        chat_id: Id::parse("chat_id", row.chat_id)?,
                        position: row.position,
                        created_at: Time(row.created_at),
                        data: row.data,
                    };
                    page.push(&record, key)?;
                }
            }
            Self::IdempotencyKey => {
                use session_idempotency_key::Column as C;
                let columns = [C::ChatId, C::IdempotencyKey];
                let rows = session_idempotency_key::Entity::find()
                    .filter(C::UserId.eq(user))
                    .filter(after(&columns, cursor))
                    .order_by_asc(columns[0])
                    .order_by_asc(columns[1])
                    .limit(limit)
                    .all(txn)
                    .await?;
                for row in rows {
                    let key = vec![row.chat_id.clone().into(), row.idempotency_key.clone().into()];
                    let record = IdempotencyKeyRecord {
                        kind: kind.clone(),
                        chat_id: Id::parse("chat_id", row.chat_id)?,
                        idempotency_key: row.idempotency_key,
                        request_hash: row.request_hash,
                        added: row.added,
                        created_at: Time(row.created_at),
                    };
                    page.push(&record, key)?;
                }
            }
            Self::Thread => {
                use chatkit_thread::Column as C;
                let rows = chatkit_thread::Entity::find()
                    .filter(C::UserId.eq(user))
                    .filter(after(&[C::ThreadId], cursor))
                    .order_by_asc(C::ThreadId)
                    .limit(limit)
                    .all(txn)
                    .await?;
                for row in rows {
                    let key = vec![row.thread_id.into()];
                    let record = ThreadRecord {
                        kind: kind.clone(),
                        updated_at: Time(row.updated_at),
                        data: row.data,
                    };
                    page.push(&record, key)?;
                }
            }
            Self::ThreadItem => {
                use chatkit_item::Column as C;
                // Insertion order, so that an import gives items that tie on `created_at`
                // the same order again.
                let rows = chatkit_item::Entity::find()
                    .filter(C::UserId.eq(user))
                    .filter(after(&[C::Seq], cursor))
                    .order_by_asc(C::Seq)
                    .limit(limit)
                    .all(txn)
                    .await?;
                for row in rows {
                    let key = vec![row.seq.into()];
                    let record = ThreadItemRecord {
                        kind: kind.clone(),
                        thread_id: Id::parse("thread_id", row.thread_id)?,
                        data: row.data,
                    };
                    page.push(&record, key)?;
                }
            }
            Self::Feedback => {
                use chatkit_item_feedback::Column as C;
                let columns = [C::ThreadId, C::ItemId];
                let rows = chatkit_item_feedback::Entity::find()
                    .filter(C::UserId.eq(user))
                    .filter(after(&columns, cursor))
                    .order_by_asc(columns[0])
                    .order_by_asc(columns[1])
                    .limit(limit)
                    .all(txn)
                    .await?;
                for row in rows {
                    let key = vec![row.thread_id.clone().into(), row.item_id.clone().into()];
                    let record = FeedbackRecord {
                        kind: kind.clone(),
                        thread_id: Id::parse("thread_id", row.thread_id)?,
                        item_id: Id::parse("item_id", row.item_id)?,
                        value: row.kind,
                        updated_at: Time(row.updated_at),
                    };
                    page.push(&record, key)?;
                }
            }
            Self::Attachment => {
                use chatkit_attachment::Column as C;
                let rows = chatkit_attachment::Entity::find()
                    .filter(C::UserId.eq(user))
                    .filter(after(&[C::AttachmentId], cursor))
                    .order_by_asc(C::AttachmentId)
                    .limit(limit)
                    .all(txn)
                    .await?;
                for row in rows {
                    let key = vec![row.attachment_id.into()];
                    let record = AttachmentRecord {
                        kind: kind.clone(),
                        created_at: Time(row.created_at),
                        updated_at: Time(row.updated_at),
                        data: row.data,
                    };
                    page.push(&record, key)?;
                }
            }
            Self::AttachmentContent => {
                use chatkit_attachment_content::Column as C;
                let rows = chatkit_attachment_content::Entity::find()
                    .filter(C::UserId.eq(user))
                    .filter(after(&[C::AttachmentId], cursor))
                    .order_by_asc(C::AttachmentId)
                    .limit(limit)
                    .all(txn)
                    .await?;
                for row in rows {
                    let key = vec![row.attachment_id.clone().into()];
                    let record = AttachmentContentRecord {
                        kind: kind.clone(),
                        attachment_id: Id::parse("attachment_id", row.attachment_id)?,
                        mime_type: row.mime_type,
                        created_at: Time(row.created_at),
                        content: BASE64.encode(&row.content),
                    };
                    page.push(&record, key)?;
                }
            }
        }
        Ok(page)
    }

    /// Writes the record `line` (of this kind) for `user`, replacing one with the same id.
    pub(super) async fn import(
        self,
        txn: &DatabaseTransaction,
        user: &str,
        line: &str,
    ) -> RepoResult<()> {
        match self {
            Self::SessionBranch | Self::SessionBranchItem | Self::TurnUsage => {
                memory::import(self, txn, user, line).await
            }
            Self::Chat => import_chat(txn, user, parse(self, line)?).await,
            Self::SessionItem => insert_session_items(txn, user, &[session_item(line)?]).await,
            Self::IdempotencyKey => {
                let record: IdempotencyKeyRecord<'_> = parse(self, line)?;
                let chat_id = record.chat_id.as_str();
                exists::<chat::Entity>(txn, chat_key(user, chat_id), || {
                    format!("no chat {chat_id:?} before this idempotency key")
                })
                .await?;
                if record.idempotency_key.is_empty() || record.idempotency_key.contains('\0') {
                    return Err(invalid("an idempotency key must be non-empty, without NUL"));
                }
                use session_idempotency_key::Column as C;
                session_idempotency_key::Entity::delete_many()
                    .filter(C::UserId.eq(user))
                    .filter(C::ChatId.eq(chat_id))
                    .filter(C::IdempotencyKey.eq(&record.idempotency_key))
                    .exec(txn)
                    .await?;
                session_idempotency_key::Entity::insert(session_idempotency_key::ActiveModel {
                    user_id: Set(user.to_owned()),
                    chat_id: Set(record.chat_id.into_string()),
                    idempotency_key: Set(record.idempotency_key),
                    request_hash: Set(record.request_hash),
                    added: Set(record.added),
                    created_at: Set(record.created_at.0),
                })
                .exec_without_returning(txn)
                .await?;
                Ok(())
            }
            Self::Thread => {
                let record: ThreadRecord<'_> = parse(self, line)?;
                let stored = StoredThread::parse(&record.data)?;
                // A thread replaced is replaced whole: its items and their feedback go too
                // (the records after it bring them back).
                chatkit_thread::Entity::delete_many()
                    .filter(thread_key(user, &stored.id))
                    .exec(txn)
                    .await?;
                chatkit_thread::Entity::insert(chatkit_thread::ActiveModel {
                    user_id: Set(user.to_owned()),
                    thread_id: Set(stored.id),
                    title: Set(stored.title),
                    created_at: Set(stored.created_at),
                    updated_at: Set(record.updated_at.0),
                    data: Set(stored.json),
                })
                .exec_without_returning(txn)
                .await?;
                Ok(())
            }
            Self::ThreadItem => {
                let record: ThreadItemRecord<'_> = parse(self, line)?;
                let thread_id = record.thread_id.as_str();
                let stored = StoredItem::parse(thread_id, &record.data)?;
                exists::<chatkit_thread::Entity>(txn, thread_key(user, thread_id), || {
                    format!("no thread {thread_id:?} before this item")
                })
                .await?;
                use chatkit_item::Column as C;
                chatkit_item::Entity::delete_many()
                    .filter(C::UserId.eq(user))
                    .filter(C::ThreadId.eq(thread_id))
                    .filter(C::ItemId.eq(&stored.id))
                    .exec(txn)
                    .await?;
                chatkit_item::Entity::insert(chatkit_item::ActiveModel {
                    user_id: Set(user.to_owned()),
                    thread_id: Set(stored.thread_id),
                    item_id: Set(stored.id),
                    item_type: Set(stored.item_type),
                    created_at: Set(stored.created_at),
                    data: Set(stored.json),
                    ..Default::default()
                })
                .exec_without_returning(txn)
                .await?;
                Ok(())
            }
            Self::Feedback => {
                let record: FeedbackRecord<'_> = parse(self, line)?;
                if !matches!(record.value.as_str(), "positive" | "negative") {
                    return Err(invalid("feedback `value` must be \"positive\" or \"negative\""));
                }
                use chatkit_item::Column as C;
                let (thread_id, item_id) = (record.thread_id.as_str(), record.item_id.as_str());
                let item = Condition::all()
                    .add(C::UserId.eq(user))
                    .add(C::ThreadId.eq(thread_id))
                    .add(C::ItemId.eq(item_id));
                exists::<chatkit_item::Entity>(txn, item, || {
                    format!("no item {item_id:?} in thread {thread_id:?} before this feedback")
                })
                .await?;
                use chatkit_item_feedback::Column as F;
                chatkit_item_feedback::Entity::delete_many()
                    .filter(F::UserId.eq(user))
                    .filter(F::ThreadId.eq(thread_id))
                    .filter(F::ItemId.eq(item_id))
                    .exec(txn)
                    .await?;
                chatkit_item_feedback::Entity::insert(chatkit_item_feedback::ActiveModel {
                    user_id: Set(user.to_owned()),
                    thread_id: Set(record.thread_id.into_string()),
                    item_id: Set(record.item_id.into_string()),
                    kind: Set(record.value),
                    updated_at: Set(record.updated_at.0),
                })
                .exec_without_returning(txn)
                .await?;
                Ok(())
            }
            Self::Attachment => {
                let record: AttachmentRecord<'_> = parse(self, line)?;
                let stored = StoredAttachment::parse(&record.data)?;
                use chatkit_attachment::Column as C;
                chatkit_attachment::Entity::delete_many()
                    .filter(C::UserId.eq(user))
                    .filter(C::AttachmentId.eq(&stored.id))
                    .exec(txn)
                    .await?;
                chatkit_attachment::Entity::insert(chatkit_attachment::ActiveModel {
                    user_id: Set(user.to_owned()),
                    attachment_id: Set(stored.id),
                    thread_id: Set(stored.thread_id),
                    name: Set(stored.name),
                    mime_type: Set(stored.mime_type),
                    created_at: Set(record.created_at.0),
                    updated_at: Set(record.updated_at.0),
                    data: Set(stored.json),
                })
                .exec_without_returning(txn)
                .await?;
                Ok(())
            }
            Self::AttachmentContent => {
                let record: AttachmentContentRecord<'_> = parse(self, line)?;
                let bytes = BASE64
                    .decode(record.content.as_bytes())
                    .map_err(|err| invalid(format!("`content` is not base64: {err}")))?;
                if record.mime_type.is_empty() || record.mime_type.contains('\0') {
                    return Err(invalid("`mime_type` must be non-empty, without NUL"));
                }
                let attachment_id = record.attachment_id.as_str();
                use chatkit_attachment::Column as A;
                let attachment =
                    Condition::all().add(A::UserId.eq(user)).add(A::AttachmentId.eq(attachment_id));
                exists::<chatkit_attachment::Entity>(txn, attachment, || {
                    format!("no attachment {attachment_id:?} before its content")
                })
                .await?;
                use chatkit_attachment_content::Column as C;
                chatkit_attachment_content::Entity::delete_many()
                    .filter(C::UserId.eq(user))
                    .filter(C::AttachmentId.eq(attachment_id))
                    .exec(txn)
                    .await?;
                let byte_size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
                chatkit_attachment_content::Entity::insert(
                    chatkit_attachment_content::ActiveModel {
                        user_id: Set(user.to_owned()),
                        attachment_id: Set(record.attachment_id.into_string()),
                        mime_type: Set(record.mime_type),
                        byte_size: Set(byte_size),
                        content: Set(bytes),
                        created_at: Set(record.created_at.0),
                    },
                )
                .exec_without_returning(txn)
                .await?;
                Ok(())
            }
        }
    }
}

/// A chat replaces the user's chat of that id whole (its items, tags and idempotency keys
/// go; the records after it bring theirs). It starts with no items: each `session_item`
/// record after it adds one.
async fn import_chat(
    txn: &DatabaseTransaction,
    user: &str,
    record: ChatRecord<'_>,
) -> RepoResult<()> {
    if let Some(title) = &record.title {
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(invalid(format!("title must be at most {MAX_TITLE_CHARS} characters")));
        }
        if title.contains('\0') {
            return Err(invalid("title must not contain NUL characters"));
        }
    }
    check_object("metadata", &record.metadata)?;
    let metadata = Metadata::parse(&record.metadata)?;
    let tags = Tags::parse(record.tags)?;
    let chat_id = record.chat_id.into_string();
    // A soft delete has a time and an active chat has none, whatever the record says.
    let deleted_at = match (record.is_active, record.deleted_at) {
        (true, _) => None,
        (false, at) => Some(at.unwrap_or(record.updated_at).0),
    };
    if record.position_base < 0 || record.revision < 1 {
        return Err(invalid(
            "a chat needs a `position_base` of 0 or more and a `revision` of 1 or more",
        ));
    }
    chat::Entity::delete_many().filter(chat_key(user, &chat_id)).exec(txn).await?;
    chat::Entity::insert(chat::ActiveModel {
        user_id: Set(user.to_owned()),
        chat_id: Set(chat_id.clone()),
        title: Set(record.title),
        is_active: Set(record.is_active),
        item_count: Set(0),
        created_at: Set(record.created_at.0),
        updated_at: Set(record.updated_at.0),
        metadata: Set(metadata.as_str().to_owned()),
        tags: Set(tags.to_json()),
        deleted_at: Set(deleted_at),
    })
    .exec_without_returning(txn)
    .await?;
    // Bookkeeping columns of this crate, not fields of the chat entity.
    txn.execute_raw(sea_orm::Statement::from_sql_and_values(
        txn.get_database_backend(),
        "UPDATE chats SET position_base = $3, revision = $4 WHERE user_id = $1 AND chat_id = $2",
        [user.into(), chat_id.clone().into(), record.position_base.into(), record.revision.into()],
    ))
    .await?;
    if !tags.is_empty() {
        let rows = tags.as_slice().iter().map(|tag| chat_tag::ActiveModel {
            user_id: Set(user.to_owned()),
            chat_id: Set(chat_id.clone()),
            tag: Set(tag.clone()),
        });
        chat_tag::Entity::insert_many(rows).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// A `session_item` record, checked, waiting to be written with the items after it.
#[derive(Debug)]
pub(super) struct SessionItemRow {
    pub(super) chat_id: String,
    pub(super) position: i64,
    created_at: DateTime<Utc>,
    data: String,
}

/// Parses and checks a `session_item` record.
pub(super) fn session_item(line: &str) -> RepoResult<SessionItemRow> {
    let record: SessionItemRecord<'_> = parse(RecordKind::SessionItem, line)?;
    check_object("the item's `data`", &record.data)?;
    Ok(SessionItemRow {
        chat_id: record.chat_id.into_string(),
        position: record.position,
        created_at: record.created_at.0,
        data: record.data,
    })
}

/// Writes consecutive items of one chat (positions `rows[0].position`, +1, +2, ...), which
/// must follow the chat's last item, so that a chat's positions stay exactly
/// `position_base + 1 ..= position_base + item_count`. One statement grows the chat, one inserts the items.
pub(super) async fn insert_session_items(
    txn: &DatabaseTransaction,
    user: &str,
    rows: &[SessionItemRow],
) -> RepoResult<()> {
    let Some(first) = rows.first() else { return Ok(()) };
    let (chat_id, position) = (first.chat_id.as_str(), first.position);
    let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let grown = chat::Entity::update_many()
        .col_expr(chat::Column::ItemCount, Expr::col(chat::Column::ItemCount).add(count))
        .filter(chat_key(user, chat_id))
        .filter(
            Expr::cust("position_base")
                .add(Expr::col(chat::Column::ItemCount))
                .eq(position.saturating_sub(1)),
        )
        .exec(txn)
        .await?;
    if grown.rows_affected == 0 {
        let stored: Option<i64> = chat::Entity::find()
            .filter(chat_key(user, chat_id))
            .select_only()
            .expr(Expr::cust("position_base + item_count"))
            .into_tuple()
            .one(txn)
            .await?;
        return Err(match stored {
            None => invalid(format!("no chat {chat_id:?} before this item")),
            Some(stored) => invalid(format!(
                "position {position} does not follow chat {chat_id:?}'s last item (position \
                 {stored}): a chat's items come in order, from its position_base + 1"
            )),
        });
    }
    let models = rows.iter().map(|row| conversation_item::ActiveModel {
        user_id: Set(user.to_owned()),
        chat_id: Set(row.chat_id.clone()),
        position: Set(row.position),
        data: Set(row.data.clone()),
        created_at: Set(row.created_at),
    });
    conversation_item::Entity::insert_many(models).exec_without_returning(txn).await?;
    Ok(())
}

/// `(position_base, revision)` of each chat of `rows` (a page in `chat_id` order), in the
/// same order: columns this crate keeps outside the chat entity.
async fn chat_ranges(
    txn: &DatabaseTransaction,
    user: &str,
    rows: &[chat::Model],
) -> RepoResult<Vec<(i64, i64)>> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(Vec::new()) };
    let found = txn
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            txn.get_database_backend(),
            "SELECT position_base, revision FROM chats WHERE user_id = $1 AND chat_id >= $2 \
             AND chat_id <= $3 ORDER BY chat_id",
            [user.into(), first.chat_id.clone().into(), last.chat_id.clone().into()],
        ))
        .await?;
    found
        .iter()
        .map(|row| {
            Ok((row.try_get::<i64>("", "position_base")?, row.try_get::<i64>("", "revision")?))
        })
        .collect()
}
