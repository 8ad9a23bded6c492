//! ChatKit threads, their items, and the feedback users give on items.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("chatkit_threads")
                    .col(text("user_id"))
                    .col(text("thread_id"))
                    .col(text_null("title"))
                    // The thread's `created_at`, normalised to UTC (naive values are taken as
                    // UTC) for ordering; the client's string stays verbatim inside `data`.
                    .col(timestamp_with_time_zone("created_at"))
                    // When the server last saved the thread.
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(text("data"))
                    .primary_key(Index::create().col("user_id").col("thread_id"))
                    .to_owned(),
            )
            .await?;
        // `GET /threads`: by created_at, ties broken by thread id.
        manager
            .create_index(
                Index::create()
                    .name("chatkit_threads_user_created")
                    .table("chatkit_threads")
                    .col("user_id")
                    .col("created_at")
                    .col("thread_id")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("chatkit_items")
                    // Insertion order, the tie-break between items with equal `created_at`.
                    .col(big_pk_auto("seq"))
                    .col(text("user_id"))
                    .col(text("thread_id"))
                    .col(text("item_id"))
                    .col(text("item_type"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(text("data"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("chatkit_items_thread_fk")
                            .from_tbl("chatkit_items")
                            .from_col("user_id")
                            .from_col("thread_id")
                            .to_tbl("chatkit_threads")
                            .to_col("user_id")
                            .to_col("thread_id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Item ids are unique per user and thread; this also serves `load_item`.
        manager
            .create_index(
                Index::create()
                    .name("chatkit_items_user_thread_item")
                    .table("chatkit_items")
                    .col("user_id")
                    .col("thread_id")
                    .col("item_id")
                    .unique()
                    .to_owned(),
            )
            .await?;
        // `GET /threads/{id}/items`: by (created_at, seq) in either direction.
        manager
            .create_index(
                Index::create()
                    .name("chatkit_items_thread_created_seq")
                    .table("chatkit_items")
                    .col("user_id")
                    .col("thread_id")
                    .col("created_at")
                    .col("seq")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("chatkit_item_feedback")
                    .col(text("user_id"))
                    .col(text("thread_id"))
                    .col(text("item_id"))
                    // `positive` or `negative`.
                    .col(text("kind"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(Index::create().col("user_id").col("thread_id").col("item_id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("chatkit_item_feedback_item_fk")
                            .from_tbl("chatkit_item_feedback")
                            .from_col("user_id")
                            .from_col("thread_id")
                            .from_col("item_id")
                            .to_tbl("chatkit_items")
                            .to_col("user_id")
                            .to_col("thread_id")
                            .to_col("item_id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["chatkit_item_feedback", "chatkit_items", "chatkit_threads"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
