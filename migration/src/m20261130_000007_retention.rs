//! What retention and export need: when a chat was soft-deleted, and indexes that let the
//! retention sweeper and `GET /export` find rows without scanning a whole table.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Set by a soft delete, cleared by a restore: `retention.inactive_days` counts from
        // it, not from `updated_at`, which other writes move.
        manager
            .alter_table(
                Table::alter()
                    .table("chats")
                    .add_column(timestamp_with_time_zone_null("deleted_at"))
                    .to_owned(),
            )
            .await?;
        // Chats soft-deleted before this column existed: their soft delete was their last
        // update (a soft delete sets `updated_at`), the best estimate there is.
        manager
            .get_connection()
            .execute_unprepared("UPDATE chats SET deleted_at = updated_at WHERE is_active = false")
            .await?;
        let indexes = [
            // The sweeper of `retention.inactive_days` (only soft-deleted chats have a value).
            ("chats_deleted_at", "chats", &["deleted_at"][..]),
            // The sweeper of `retention.idle_days`, across users.
            ("chats_updated_at", "chats", &["updated_at"][..]),
            ("chatkit_threads_updated_at", "chatkit_threads", &["updated_at"][..]),
            // `GET /export` pages a user's thread items in insertion order.
            ("chatkit_items_user_seq", "chatkit_items", &["user_id", "seq"][..]),
        ];
        for (name, table, columns) in indexes {
            let mut index = Index::create();
            index.name(name).table(table);
            for column in columns {
                index.col(*column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("chatkit_items_user_seq", "chatkit_items"),
            ("chatkit_threads_updated_at", "chatkit_threads"),
            ("chats_updated_at", "chats"),
            ("chats_deleted_at", "chats"),
        ] {
            manager.drop_index(Index::drop().name(name).table(table).to_owned()).await?;
        }
        manager
            .alter_table(Table::alter().table("chats").drop_column("deleted_at").to_owned())
            .await
    }
}
