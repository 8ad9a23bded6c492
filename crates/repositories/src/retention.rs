//! Retention: hard-deleting what has been idle, or soft-deleted, for too long.
//!
//! Each call deletes one small batch across all users in one short statement (its locks
//! last that long), so the sweeper that loops over them never holds up the writers.

use chrono::{DateTime, Utc};
use entity::{chat, chatkit_item, chatkit_thread};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query, SelectStatement};
use sea_orm::{ColumnTrait, ConnectionTrait};

use crate::{Db, RepoResult};

/// The retention deletes of one database.
#[derive(Debug, Clone, Copy)]
pub struct Retention<'a> {
    db: &'a Db,
}

impl Db {
    pub fn retention(&self) -> Retention<'_> {
        Retention { db: self }
    }
}

impl Retention<'_> {
    /// Deletes up to `batch` chats soft-deleted before `cutoff`, with their items, tags and
    /// idempotency keys; returns how many chats went.
    pub async fn delete_inactive_chats(
        &self,
        cutoff: DateTime<Utc>,
        batch: u64,
    ) -> RepoResult<u64> {
        let victims = Query::select()
            .columns([chat::Column::UserId, chat::Column::ChatId])
            .from(chat::Entity)
            .and_where(chat::Column::IsActive.eq(false))
            .and_where(chat::Column::DeletedAt.lt(cutoff))
            .limit(batch)
            .to_owned();
        self.delete_chats(victims).await
    }

    /// Deletes up to `batch` chats (active or not) last updated before `cutoff`.
    pub async fn delete_idle_chats(&self, cutoff: DateTime<Utc>, batch: u64) -> RepoResult<u64> {
        let victims = Query::select()
            .columns([chat::Column::UserId, chat::Column::ChatId])
            .from(chat::Entity)
            .and_where(chat::Column::UpdatedAt.lt(cutoff))
            .limit(batch)
            .to_owned();
        self.delete_chats(victims).await
    }

    /// Deletes up to `batch` ChatKit threads, with their items and feedback, that were last
    /// saved before `cutoff` and have no item created since. (Adding an item does not save
    /// its thread, so a thread is idle only when its items are too.)
    pub async fn delete_idle_threads(&self, cutoff: DateTime<Utc>, batch: u64) -> RepoResult<u64> {
        let (thread, item) = (Alias::new("t"), Alias::new("i"));
        let recent_item = Query::select()
            .expr(Expr::val(1))
            .from_as(chatkit_item::Entity, item.clone())
            .and_where(
                Expr::col((item.clone(), chatkit_item::Column::UserId))
                    .equals((thread.clone(), chatkit_thread::Column::UserId)),
            )
            .and_where(
                Expr::col((item.clone(), chatkit_item::Column::ThreadId))
                    .equals((thread.clone(), chatkit_thread::Column::ThreadId)),
            )
            .and_where(Expr::col((item, chatkit_item::Column::CreatedAt)).gte(cutoff))
            .to_owned();
        let victims = Query::select()
            .columns([
                (thread.clone(), chatkit_thread::Column::UserId),
                (thread.clone(), chatkit_thread::Column::ThreadId),
            ])
            .from_as(chatkit_thread::Entity, thread.clone())
            .and_where(Expr::col((thread, chatkit_thread::Column::UpdatedAt)).lt(cutoff))
            .and_where(Expr::exists(recent_item).not())
            .limit(batch)
            .to_owned();
        let delete = Query::delete()
            .from_table(chatkit_thread::Entity)
            .and_where(
                Expr::tuple([
                    Expr::col(chatkit_thread::Column::UserId),
                    Expr::col(chatkit_thread::Column::ThreadId),
                ])
                .in_subquery(victims),
            )
            .to_owned();
        let _writer = self.db.write_guard().await;
        Ok(self.db.connection().execute(&delete).await?.rows_affected())
    }

    async fn delete_chats(&self, victims: SelectStatement) -> RepoResult<u64> {
        let delete = Query::delete()
            .from_table(chat::Entity)
            .and_where(
                Expr::tuple([Expr::col(chat::Column::UserId), Expr::col(chat::Column::ChatId)])
                    .in_subquery(victims),
            )
            .to_owned();
        let _writer = self.db.write_guard().await;
        Ok(self.db.connection().execute(&delete).await?.rows_affected())
    }
}
