//! Feedback users give on ChatKit thread items (`items.feedback`).

use entity::{chatkit_item, chatkit_item_feedback, chatkit_thread};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::sessions::now;
use crate::{Db, RepoError, RepoResult};

/// Most items one `items.feedback` request may name.
pub(crate) const MAX_FEEDBACK_ITEMS: usize = 100;

/// Feedback operations of one database.
#[derive(Debug, Clone, Copy)]
pub struct Feedback<'a> {
    db: &'a Db,
}

impl Db {
    pub fn feedback(&self) -> Feedback<'_> {
        Feedback { db: self }
    }
}

impl Feedback<'_> {
    /// Records `kind` (`positive` or `negative`) on each item (at most
    /// [`MAX_FEEDBACK_ITEMS`]), replacing earlier feedback. The thread and every item must
    /// exist for the user, else nothing is recorded.
    pub async fn record(
        &self,
        user: &str,
        thread_id: &str,
        item_ids: &[String],
        kind: &str,
    ) -> RepoResult<()> {
        if !matches!(kind, "positive" | "negative") {
            return Err(RepoError::Invalid(format!(
                "kind must be positive or negative, not {kind:?}"
            )));
        }
        let mut item_ids: Vec<&str> = item_ids.iter().map(String::as_str).collect();
        item_ids.sort_unstable();
        item_ids.dedup();
        if item_ids.is_empty() || item_ids.len() > MAX_FEEDBACK_ITEMS {
            return Err(RepoError::Invalid(format!(
                "item_ids must name 1 to {MAX_FEEDBACK_ITEMS} items"
            )));
        }
        for id in std::iter::once(thread_id).chain(item_ids.iter().copied()) {
            if id.is_empty() || id.contains('\0') {
                return Err(RepoError::Invalid("ids must be non-empty and without NUL".into()));
            }
        }
        let (_writer, txn) = self.db.begin_write().await?;
        // The thread row first, as every item writer does, so none of them can deadlock with
        // this; while it is share-locked, neither the thread nor its items can be deleted.
        let thread = chatkit_thread::Entity::find_by_id((user.to_owned(), thread_id.to_owned()))
            .lock_shared()
            .one(&txn)
            .await?;
        if thread.is_none() {
            return Err(RepoError::NotFound(format!("no thread {thread_id:?}")));
        }
        let found = chatkit_item::Entity::find()
            .filter(chatkit_item::Column::UserId.eq(user))
            .filter(chatkit_item::Column::ThreadId.eq(thread_id))
            .filter(chatkit_item::Column::ItemId.is_in(item_ids.iter().copied()))
            .all(&txn)
            .await?;
        if let Some(missing) =
            item_ids.iter().find(|id| !found.iter().any(|item| item.item_id == **id))
        {
            return Err(RepoError::NotFound(format!(
                "no item {missing:?} in thread {thread_id:?}"
            )));
        }
        let now = now();
        for item_id in item_ids {
            let row = chatkit_item_feedback::ActiveModel {
                user_id: sea_orm::Set(user.to_owned()),
                thread_id: sea_orm::Set(thread_id.to_owned()),
                item_id: sea_orm::Set(item_id.to_owned()),
                kind: sea_orm::Set(kind.to_owned()),
                updated_at: sea_orm::Set(now),
            };
            chatkit_item_feedback::Entity::insert(row)
                .on_conflict(
                    OnConflict::columns([
                        chatkit_item_feedback::Column::UserId,
                        chatkit_item_feedback::Column::ThreadId,
                        chatkit_item_feedback::Column::ItemId,
                    ])
                    .update_columns([
                        chatkit_item_feedback::Column::Kind,
                        chatkit_item_feedback::Column::UpdatedAt,
                    ])
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// The feedback recorded on the items of one thread.
    pub async fn of_thread(
        &self,
        user: &str,
        thread_id: &str,
    ) -> RepoResult<Vec<chatkit_item_feedback::Model>> {
        Ok(chatkit_item_feedback::Entity::find()
            .filter(chatkit_item_feedback::Column::UserId.eq(user))
            .filter(chatkit_item_feedback::Column::ThreadId.eq(thread_id))
            .order_by_asc(chatkit_item_feedback::Column::ItemId)
            .all(self.db.connection())
            .await?)
    }
}
