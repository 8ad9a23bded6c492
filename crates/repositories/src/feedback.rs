//! Feedback users give on ChatKit thread items (`items.feedback`).

use entity::{chatkit_item, chatkit_item_feedback};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};

use crate::sessions::now;
use crate::{Db, RepoError, RepoResult};

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
    /// Records `kind` (`positive` or `negative`) on each item, replacing earlier feedback.
    /// Every item must exist in the user's thread, else nothing is recorded.
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
        let _writer = self.db.write_guard().await;
        let txn = self.db.connection().begin().await?;
        let found = chatkit_item::Entity::find()
            .filter(chatkit_item::Column::UserId.eq(user))
            .filter(chatkit_item::Column::ThreadId.eq(thread_id))
            .filter(chatkit_item::Column::ItemId.is_in(item_ids.iter().map(String::as_str)))
            .all(&txn)
            .await?;
        if let Some(missing) =
            item_ids.iter().find(|id| !found.iter().any(|item| &item.item_id == *id))
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
                item_id: sea_orm::Set(item_id.clone()),
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
