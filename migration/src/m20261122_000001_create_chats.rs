//! Chats (conversations), their items (the agent-session memory) and the idempotency keys
//! of item batches.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("chats")
                    .col(text("user_id"))
                    .col(text("chat_id"))
                    .col(text_null("title"))
                    .col(boolean("is_active").default(true))
                    // Kept in step with `conversation_items` by every write (it is also the
                    // newest item's position), so lists and reads never count rows.
                    .col(big_integer("item_count").default(0))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(Index::create().col("user_id").col("chat_id"))
                    .to_owned(),
            )
            .await?;
        // `GET /chats` (active only) and `GET /chats/count`: newest first, keyset on
        // (updated_at, chat_id).
        manager
            .create_index(
                Index::create()
                    .name("chats_user_active_updated")
                    .table("chats")
                    .col("user_id")
                    .col("is_active")
                    .col("updated_at")
                    .col("chat_id")
                    .to_owned(),
            )
            .await?;
        // `GET /chats?include_inactive=true`.
        manager
            .create_index(
                Index::create()
                    .name("chats_user_updated")
                    .table("chats")
                    .col("user_id")
                    .col("updated_at")
                    .col("chat_id")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("conversation_items")
                    .col(text("user_id"))
                    .col(text("chat_id"))
                    // The item's place in its chat: exactly 1..=chats.item_count, assigned
                    // under the lock on the chat's row, so it is the order of commits. "The
                    // latest N" is then the key range `position > item_count - N`, which reads
                    // N rows whatever the history's length and whatever plan is chosen.
                    .col(big_integer("position"))
                    .col(text("data"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("user_id").col("chat_id").col("position"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("conversation_items_chat_fk")
                            .from_tbl("conversation_items")
                            .from_col("user_id")
                            .from_col("chat_id")
                            .to_tbl("chats")
                            .to_col("user_id")
                            .to_col("chat_id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("session_idempotency_keys")
                    .col(text("user_id"))
                    .col(text("chat_id"))
                    .col(text("idempotency_key"))
                    // A digest of the batch, so a key reused for a different batch is caught.
                    .col(text("request_hash"))
                    .col(big_integer("added"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(
                        Index::create().col("user_id").col("chat_id").col("idempotency_key"),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("session_idempotency_keys_chat_fk")
                            .from_tbl("session_idempotency_keys")
                            .from_col("user_id")
                            .from_col("chat_id")
                            .to_tbl("chats")
                            .to_col("user_id")
                            .to_col("chat_id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Pruning old keys.
        manager
            .create_index(
                Index::create()
                    .name("session_idempotency_keys_created")
                    .table("session_idempotency_keys")
                    .col("created_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["session_idempotency_keys", "conversation_items", "chats"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
