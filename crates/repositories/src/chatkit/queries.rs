//! [`DbStore`]: the ChatKit store's statements on the database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use entity::{chatkit_attachment, chatkit_attachment_content, chatkit_item, chatkit_thread};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QuerySelect, QueryTrait,
    Select, Statement,
};

use super::objects::{check_id, check_ids, invalid, thread_not_found};
use super::{Saved, SortOrder, Store, StoredAttachment, StoredItem, StoredObject, StoredThread};
use crate::page::{finish_page, keyset_query};
use crate::sessions::now;
use crate::{Db, Page, RepoError, RepoResult};

/// [`Store`] over the database. Cheap to clone (it holds the pool).
#[derive(Debug, Clone)]
pub struct DbStore {
    db: Db,
}

impl DbStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Loads a thread, lets `edit` change its JSON, and saves it, in one transaction that
    /// holds the thread's row lock: a save that lands between the read and the write (another
    /// field changed by another request) is not lost. The id cannot change. `NotFound` when
    /// the user has no such thread.
    pub async fn update_thread(
        &self,
        thread_id: &str,
        user: &str,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> RepoResult<StoredThread> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        let (_writer, txn) = self.db.begin_write().await?;
        let current = lock_thread(&txn, user, thread_id, Lock::Exclusive).await?;
        let mut thread: serde_json::Value = serde_json::from_str(&current.json)
            .map_err(|err| RepoError::Invalid(format!("stored thread is not JSON: {err}")))?;
        edit(&mut thread);
        thread["id"] = serde_json::Value::String(thread_id.to_owned());
        let stored = StoredThread::parse(&thread.to_string())?;
        chatkit_thread::Entity::update_many()
            .col_expr(chatkit_thread::Column::Title, Expr::value(stored.title.clone()))
            .col_expr(chatkit_thread::Column::CreatedAt, Expr::value(stored.created_at))
            .col_expr(chatkit_thread::Column::UpdatedAt, Expr::value(now()))
            .col_expr(chatkit_thread::Column::Data, Expr::value(stored.json.clone()))
            .filter(chatkit_thread::Column::UserId.eq(user))
            .filter(chatkit_thread::Column::ThreadId.eq(thread_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(stored)
    }
}

impl Db {
    /// The ChatKit store on this database.
    pub fn chatkit(&self) -> DbStore {
        DbStore::new(self.clone())
    }
}

fn check_limit(limit: u64) -> RepoResult<()> {
    if limit == 0 { Err(invalid("limit must be at least 1".into())) } else { Ok(()) }
}

/// The cursor a stored object is named by in the next page's `after`.
fn id_of<T: StoredObject>(row: &T) -> String {
    row.id().to_owned()
}

pub(super) fn page_size(limit: u64) -> u64 {
    limit.saturating_add(1)
}

pub(super) fn thread_of(user: &str, thread_id: &str) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(chatkit_item::Column::UserId.eq(user))
        .add(chatkit_item::Column::ThreadId.eq(thread_id))
}

/// `rows` threads after the thread `after` (exclusive), in `order`, by
/// `(created_at, thread_id)`.
fn threads_page_query(
    user: &str,
    after: Option<&str>,
    order: SortOrder,
    rows: u64,
) -> Select<chatkit_thread::Entity> {
    let cursor = after.map(|after| {
        vec![
            (chatkit_thread::Column::UserId, user.into()),
            (chatkit_thread::Column::ThreadId, after.into()),
        ]
    });
    keyset_query(
        chatkit_thread::Entity::find().filter(chatkit_thread::Column::UserId.eq(user)),
        [chatkit_thread::Column::CreatedAt, chatkit_thread::Column::ThreadId],
        cursor,
        order,
        rows,
    )
}

/// `rows` items of a thread after the item `after` (exclusive), in `order`, by
/// `(created_at, seq)`.
pub(super) fn items_page_query(
    user: &str,
    thread_id: &str,
    after: Option<&str>,
    order: SortOrder,
    rows: u64,
) -> Select<chatkit_item::Entity> {
    let cursor = after.map(|after| {
        vec![
            (chatkit_item::Column::UserId, user.into()),
            (chatkit_item::Column::ThreadId, thread_id.into()),
            (chatkit_item::Column::ItemId, after.into()),
        ]
    });
    keyset_query(
        chatkit_item::Entity::find().filter(thread_of(user, thread_id)),
        [chatkit_item::Column::CreatedAt, chatkit_item::Column::Seq],
        cursor,
        order,
        rows,
    )
}

/// The page key of an item named by a cursor.
fn item_cursor_query(user: &str, thread_id: &str, item_id: &str) -> Select<chatkit_item::Entity> {
    chatkit_item::Entity::find()
        .select_only()
        .column(chatkit_item::Column::CreatedAt)
        .column(chatkit_item::Column::Seq)
        .filter(thread_of(user, thread_id))
        .filter(chatkit_item::Column::ItemId.eq(item_id))
}

/// The page key of a thread named by a cursor.
fn thread_cursor_query(user: &str, thread_id: &str) -> Select<chatkit_thread::Entity> {
    chatkit_thread::Entity::find_by_id((user.to_owned(), thread_id.to_owned()))
        .select_only()
        .column(chatkit_thread::Column::CreatedAt)
}

/// The read statements of this module, for checking their query plans.
pub(crate) fn read_statements(backend: DbBackend) -> Vec<(&'static str, Statement)> {
    vec![
        (
            "chatkit threads page",
            threads_page_query("u1", None, SortOrder::Desc, 21).build(backend),
        ),
        (
            "chatkit threads page after (asc)",
            threads_page_query("u1", Some("thr_1"), SortOrder::Asc, 21).build(backend),
        ),
        (
            "chatkit threads page after (desc)",
            threads_page_query("u1", Some("thr_1"), SortOrder::Desc, 21).build(backend),
        ),
        ("chatkit threads cursor", thread_cursor_query("u1", "thr_1").build(backend)),
        (
            "chatkit items page",
            items_page_query("u1", "thr_1", None, SortOrder::Asc, 21).build(backend),
        ),
        (
            "chatkit items page after (asc)",
            items_page_query("u1", "thr_1", Some("msg_1"), SortOrder::Asc, 21).build(backend),
        ),
        (
            "chatkit items page after (desc)",
            items_page_query("u1", "thr_1", Some("msg_1"), SortOrder::Desc, 21).build(backend),
        ),
        ("chatkit items cursor", item_cursor_query("u1", "thr_1", "msg_1").build(backend)),
    ]
}

impl DbStore {
    /// `add_thread_item` and `save_item`: both upsert by `(user, thread, item id)`.
    async fn upsert_item(
        &self,
        thread_id: &str,
        item: &str,
        user: &str,
    ) -> RepoResult<Saved<StoredItem>> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        let stored = StoredItem::parse(thread_id, item)?;
        if let Some(upserted) = self.upsert_item_on_held(&stored, user).await {
            let (_thread, created) = upserted?;
            return Ok(Saved { stored, created });
        }
        let (_writer, txn) = self.db.begin_write().await?;
        lock_thread(&txn, user, thread_id, Lock::Shared).await?;
        let created = put_item(&txn, user, &stored).await?;
        txn.commit().await?;
        self.db.search_index().wake();
        Ok(Saved { stored, created })
    }
}

/// How a writer holds its thread's row until it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lock {
    /// The thread cannot be deleted meanwhile (item writes).
    Shared,
    /// Nor can another step that reads and rewrites the thread's items run meanwhile.
    Exclusive,
}

/// Locks the user's thread row in `txn` and answers it; `NotFound` when there is none.
pub(super) async fn lock_thread(
    txn: &DatabaseTransaction,
    user: &str,
    thread_id: &str,
    lock: Lock,
) -> RepoResult<StoredThread> {
    let query = chatkit_thread::Entity::find_by_id((user.to_owned(), thread_id.to_owned()));
    let query = match lock {
        Lock::Shared => query.lock_shared(),
        Lock::Exclusive => query.lock_exclusive(),
    };
    query.one(txn).await?.map(StoredThread::from).ok_or_else(|| thread_not_found(thread_id))
}

/// Upserts an item of a thread `txn` has locked; whether it created it.
pub(super) async fn put_item(
    txn: &DatabaseTransaction,
    user: &str,
    stored: &StoredItem,
) -> RepoResult<bool> {
    let existing: Option<i64> = chatkit_item::Entity::find()
        .select_only()
        .column(chatkit_item::Column::Seq)
        .filter(thread_of(user, &stored.thread_id))
        .filter(chatkit_item::Column::ItemId.eq(stored.id.as_str()))
        .into_tuple()
        .one(txn)
        .await?;
    chatkit_item::Entity::insert(chatkit_item::ActiveModel {
        seq: NotSet,
        user_id: Set(user.to_owned()),
        thread_id: Set(stored.thread_id.clone()),
        item_id: Set(stored.id.clone()),
        item_type: Set(stored.item_type.clone()),
        created_at: Set(stored.created_at),
        data: Set(stored.json.clone()),
    })
    .on_conflict(
        // A repeat keeps its `seq`, hence its place among items of equal `created_at`.
        OnConflict::columns([
            chatkit_item::Column::UserId,
            chatkit_item::Column::ThreadId,
            chatkit_item::Column::ItemId,
        ])
        .update_columns([
            chatkit_item::Column::ItemType,
            chatkit_item::Column::CreatedAt,
            chatkit_item::Column::Data,
        ])
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(existing.is_none())
}

/// Upserts attachment metadata in `txn`; whether it created it.
pub(super) async fn put_attachment(
    txn: &DatabaseTransaction,
    user: &str,
    stored: &StoredAttachment,
) -> RepoResult<bool> {
    let now = now();
    let existing: Option<String> =
        chatkit_attachment::Entity::find_by_id((user.to_owned(), stored.id.clone()))
            .select_only()
            .column(chatkit_attachment::Column::AttachmentId)
            .into_tuple()
            .one(txn)
            .await?;
    chatkit_attachment::Entity::insert(chatkit_attachment::ActiveModel {
        user_id: Set(user.to_owned()),
        attachment_id: Set(stored.id.clone()),
        thread_id: Set(stored.thread_id.clone()),
        name: Set(stored.name.clone()),
        mime_type: Set(stored.mime_type.clone()),
        created_at: Set(now),
        updated_at: Set(now),
        data: Set(stored.json.clone()),
    })
    .on_conflict(
        // `created_at` stays the first save's.
        OnConflict::columns([
            chatkit_attachment::Column::UserId,
            chatkit_attachment::Column::AttachmentId,
        ])
        .update_columns([
            chatkit_attachment::Column::ThreadId,
            chatkit_attachment::Column::Name,
            chatkit_attachment::Column::MimeType,
            chatkit_attachment::Column::UpdatedAt,
            chatkit_attachment::Column::Data,
        ])
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(existing.is_none())
}

#[async_trait]
impl Store for DbStore {
    async fn load_thread(&self, thread_id: &str, user: &str) -> RepoResult<StoredThread> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        if let Some(thread) = self.load_thread_on_held(thread_id, user).await {
            return thread;
        }
        chatkit_thread::Entity::find_by_id((user.to_owned(), thread_id.to_owned()))
            .one(self.db.connection())
            .await?
            .map(StoredThread::from)
            .ok_or_else(|| thread_not_found(thread_id))
    }

    async fn save_thread(&self, thread: &str, user: &str) -> RepoResult<Saved<StoredThread>> {
        check_ids(&[("user id", user)])?;
        let stored = StoredThread::parse(thread)?;
        let now = now();
        let (_writer, txn) = self.db.begin_write().await?;
        let existing: Option<String> =
            chatkit_thread::Entity::find_by_id((user.to_owned(), stored.id.clone()))
                .select_only()
                .column(chatkit_thread::Column::ThreadId)
                .into_tuple()
                .one(&txn)
                .await?;
        chatkit_thread::Entity::insert(chatkit_thread::ActiveModel {
            user_id: Set(user.to_owned()),
            thread_id: Set(stored.id.clone()),
            title: Set(stored.title.clone()),
            created_at: Set(stored.created_at),
            updated_at: Set(now),
            data: Set(stored.json.clone()),
        })
        .on_conflict(
            OnConflict::columns([chatkit_thread::Column::UserId, chatkit_thread::Column::ThreadId])
                .update_columns([
                    chatkit_thread::Column::Title,
                    chatkit_thread::Column::CreatedAt,
                    chatkit_thread::Column::UpdatedAt,
                    chatkit_thread::Column::Data,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(Saved { stored, created: existing.is_none() })
    }

    async fn load_thread_items(
        &self,
        thread_id: &str,
        after: Option<&str>,
        limit: u64,
        order: SortOrder,
        user: &str,
    ) -> RepoResult<Page<StoredItem>> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        if let Some(after) = after {
            check_id("after", after)?;
        }
        check_limit(limit)?;
        let connection = self.db.connection();
        let rows = items_page_query(user, thread_id, after, order, page_size(limit))
            .all(connection)
            .await?;
        let cursor_exists = async || {
            let after = after.unwrap_or_default();
            let key: Option<(DateTime<Utc>, i64)> =
                item_cursor_query(user, thread_id, after).into_tuple().one(connection).await?;
            Ok(key.is_some())
        };
        let rows = rows.into_iter().map(StoredItem::from).collect();
        finish_page(rows, limit, after, "item of this thread", cursor_exists, id_of).await
    }

    async fn save_attachment(
        &self,
        attachment: &str,
        user: &str,
    ) -> RepoResult<Saved<StoredAttachment>> {
        check_ids(&[("user id", user)])?;
        let stored = StoredAttachment::parse(attachment)?;
        let (_writer, txn) = self.db.begin_write().await?;
        let created = put_attachment(&txn, user, &stored).await?;
        txn.commit().await?;
        Ok(Saved { stored, created })
    }

    async fn load_attachment(
        &self,
        attachment_id: &str,
        user: &str,
    ) -> RepoResult<StoredAttachment> {
        check_ids(&[("attachment id", attachment_id), ("user id", user)])?;
        chatkit_attachment::Entity::find_by_id((user.to_owned(), attachment_id.to_owned()))
            .one(self.db.connection())
            .await?
            .map(StoredAttachment::from)
            .ok_or_else(|| RepoError::NotFound(format!("attachment {attachment_id:?} not found")))
    }

    async fn delete_attachment(&self, attachment_id: &str, user: &str) -> RepoResult<()> {
        check_ids(&[("attachment id", attachment_id), ("user id", user)])?;
        let (_writer, txn) = self.db.begin_write().await?;
        // The foreign key cascades too; deleting the bytes first does not depend on it.
        chatkit_attachment_content::Entity::delete_many()
            .filter(chatkit_attachment_content::Column::UserId.eq(user))
            .filter(chatkit_attachment_content::Column::AttachmentId.eq(attachment_id))
            .exec(&txn)
            .await?;
        chatkit_attachment::Entity::delete_many()
            .filter(chatkit_attachment::Column::UserId.eq(user))
            .filter(chatkit_attachment::Column::AttachmentId.eq(attachment_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn load_threads(
        &self,
        limit: u64,
        after: Option<&str>,
        order: SortOrder,
        user: &str,
    ) -> RepoResult<Page<StoredThread>> {
        check_ids(&[("user id", user)])?;
        if let Some(after) = after {
            check_id("after", after)?;
        }
        check_limit(limit)?;
        let connection = self.db.connection();
        let rows = threads_page_query(user, after, order, page_size(limit)).all(connection).await?;
        let cursor_exists = async || {
            let after = after.unwrap_or_default();
            let created_at: Option<DateTime<Utc>> =
                thread_cursor_query(user, after).into_tuple().one(connection).await?;
            Ok(created_at.is_some())
        };
        let rows = rows.into_iter().map(StoredThread::from).collect();
        finish_page(rows, limit, after, "thread", cursor_exists, id_of).await
    }

    async fn add_thread_item(
        &self,
        thread_id: &str,
        item: &str,
        user: &str,
    ) -> RepoResult<Saved<StoredItem>> {
        self.upsert_item(thread_id, item, user).await
    }

    async fn save_item(
        &self,
        thread_id: &str,
        item: &str,
        user: &str,
    ) -> RepoResult<Saved<StoredItem>> {
        self.upsert_item(thread_id, item, user).await
    }

    async fn load_item(
        &self,
        thread_id: &str,
        item_id: &str,
        user: &str,
    ) -> RepoResult<StoredItem> {
        check_ids(&[("thread id", thread_id), ("item id", item_id), ("user id", user)])?;
        chatkit_item::Entity::find()
            .filter(thread_of(user, thread_id))
            .filter(chatkit_item::Column::ItemId.eq(item_id))
            .one(self.db.connection())
            .await?
            .map(StoredItem::from)
            .ok_or_else(|| {
                RepoError::NotFound(format!("item {item_id:?} not found in thread {thread_id:?}"))
            })
    }

    async fn delete_thread(&self, thread_id: &str, user: &str) -> RepoResult<()> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        let _writer = self.db.write_guard().await;
        // One statement: the thread row first, then its items and their feedback through the
        // foreign keys' cascade. Item writers lock the thread row before their item, so both
        // take their locks in the same order and cannot deadlock.
        chatkit_thread::Entity::delete_many()
            .filter(chatkit_thread::Column::UserId.eq(user))
            .filter(chatkit_thread::Column::ThreadId.eq(thread_id))
            .exec(self.db.connection())
            .await?;
        Ok(())
    }

    async fn delete_thread_item(
        &self,
        thread_id: &str,
        item_id: &str,
        user: &str,
    ) -> RepoResult<()> {
        check_ids(&[("thread id", thread_id), ("item id", item_id), ("user id", user)])?;
        let _writer = self.db.write_guard().await;
        chatkit_item::Entity::delete_many()
            .filter(thread_of(user, thread_id))
            .filter(chatkit_item::Column::ItemId.eq(item_id))
            .exec(self.db.connection())
            .await?;
        Ok(())
    }
}
