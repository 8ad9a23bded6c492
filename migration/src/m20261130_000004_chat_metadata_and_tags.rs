//! A chat's own metadata and tags.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one change at a time.
        // The exact JSON object text the client sent.
        manager
            .alter_table(
                Table::alter().table("chats").add_column(text("metadata").default("{}")).to_owned(),
            )
            .await?;
        // The chat's tags as a JSON array of strings, in the order given: what every Chat
        // JSON shows, read with the row so a page of chats needs no join. `chat_tags` holds
        // the same set, one row per tag, for filtering; both are written in one transaction.
        manager
            .alter_table(
                Table::alter().table("chats").add_column(text("tags").default("[]")).to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("chat_tags")
                    .col(text("user_id"))
                    .col(text("chat_id"))
                    .col(text("tag"))
                    // Also answers "does this chat carry tag T", a point lookup per tag.
                    .primary_key(Index::create().col("user_id").col("chat_id").col("tag"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("chat_tags_chat_fk")
                            .from_tbl("chat_tags")
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
        // `GET /chats?tag=T`: the chats of a user carrying a tag.
        manager
            .create_index(
                Index::create()
                    .name("chat_tags_user_tag")
                    .table("chat_tags")
                    .col("user_id")
                    .col("tag")
                    .col("chat_id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("chat_tags").to_owned()).await?;
        for column in ["tags", "metadata"] {
            manager
                .alter_table(Table::alter().table("chats").drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
