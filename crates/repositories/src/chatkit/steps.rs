//! The ChatKit protocol's steps that write more than one row, each one transaction or one
//! statement, so that neither a crash nor a concurrent request ever finds a step half done.

use entity::chatkit_item;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::objects::{check_ids, invalid};
use super::queries::{Lock, items_page_query, lock_thread, put_attachment, put_item, thread_of};
use super::{DbStore, Saved, StoredAttachment, StoredItem, StoredThread};
use crate::page::keyset_after;
use crate::{Order, RepoResult};

/// What a step makes of a thread's newest items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemChanges {
    /// Items to upsert, as stored-form JSON text.
    pub save: Vec<String>,
    /// Ids of items to delete.
    pub delete: Vec<String>,
}

impl DbStore {
    /// Stores a new item together with attachment metadata (a user message and the
    /// attachments it sends, their `thread_id` set), in one transaction, and answers the
    /// thread with it: a turn needs both, and on PostgreSQL, without attachments, gets them in
    /// one statement. The thread must exist.
    pub async fn add_item_with_attachments(
        &self,
        thread_id: &str,
        item: &str,
        attachments: &[String],
        user: &str,
    ) -> RepoResult<(StoredThread, Saved<StoredItem>)> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        let stored = StoredItem::parse(thread_id, item)?;
        let attachments = attachments
            .iter()
            .map(|attachment| StoredAttachment::parse(attachment))
            .collect::<RepoResult<Vec<_>>>()?;
        if attachments.is_empty()
            && let Some(upserted) = self.upsert_item_on_held(&stored, user).await
        {
            let (thread, created) = upserted?;
            return Ok((thread, Saved { stored, created }));
        }
        let (_writer, txn) = self.db().begin_write().await?;
        let thread = lock_thread(&txn, user, thread_id, Lock::Shared).await?;
        for attachment in &attachments {
            put_attachment(&txn, user, attachment).await?;
        }
        let created = put_item(&txn, user, &stored).await?;
        txn.commit().await?;
        self.db().search_index().wake();
        Ok((thread, Saved { stored, created }))
    }

    /// Deletes every item that comes after `item_id` in the thread's order (`created_at`, then
    /// insertion), in one statement; nothing when `item_id` names no item of the thread. How
    /// many items went.
    pub async fn delete_items_after(
        &self,
        thread_id: &str,
        item_id: &str,
        user: &str,
    ) -> RepoResult<u64> {
        check_ids(&[("thread id", thread_id), ("item id", item_id), ("user id", user)])?;
        let cursor = vec![
            (chatkit_item::Column::UserId, user.into()),
            (chatkit_item::Column::ThreadId, thread_id.into()),
            (chatkit_item::Column::ItemId, item_id.into()),
        ];
        let newer = keyset_after::<chatkit_item::Entity>(
            [chatkit_item::Column::CreatedAt, chatkit_item::Column::Seq],
            cursor,
            Order::Asc,
        );
        let _writer = self.db().write_guard().await;
        let deleted = chatkit_item::Entity::delete_many()
            .filter(thread_of(user, thread_id))
            .filter(newer)
            .exec(self.db().connection())
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Reads the thread's newest `count` items (newest first) and applies what `edit` makes of
    /// them, in one transaction that holds the thread's row lock: another step on the same
    /// thread waits, and a failure part-way keeps nothing. `edit` failing changes nothing. The
    /// thread must exist.
    pub async fn edit_newest_items(
        &self,
        thread_id: &str,
        user: &str,
        count: u64,
        edit: impl FnOnce(&[StoredItem]) -> RepoResult<ItemChanges>,
    ) -> RepoResult<()> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        if count == 0 {
            return Err(invalid("count must be at least 1".into()));
        }
        let (_writer, txn) = self.db().begin_write().await?;
        lock_thread(&txn, user, thread_id, Lock::Exclusive).await?;
        let newest: Vec<StoredItem> = items_page_query(user, thread_id, None, Order::Desc, count)
            .all(&txn)
            .await?
            .into_iter()
            .map(StoredItem::from)
            .collect();
        let changes = edit(&newest)?;
        let saved = changes
            .save
            .iter()
            .map(|item| StoredItem::parse(thread_id, item))
            .collect::<RepoResult<Vec<_>>>()?;
        for item in &saved {
            put_item(&txn, user, item).await?;
        }
        if !changes.delete.is_empty() {
            chatkit_item::Entity::delete_many()
                .filter(thread_of(user, thread_id))
                .filter(chatkit_item::Column::ItemId.is_in(changes.delete))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        if !saved.is_empty() {
            self.db().search_index().wake();
        }
        Ok(())
    }
}
