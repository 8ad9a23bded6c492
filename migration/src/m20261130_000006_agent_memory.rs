//! Advanced agent memory: conditional tail replace and prefix prune, branches, run usage.
//!
//! - `chats.position_base`: a session's items hold positions `position_base + 1 ..=
//!   position_base + item_count`. A prefix prune raises the base instead of renumbering, so the
//!   latest-N read stays one key range (`position > position_base + item_count - N`).
//! - `chats.revision`: bumped by every write to the session's items (append, pop, clear,
//!   replace, a new conversation); a conditional replace applies only at the revision its
//!   snapshot saw. It starts at 1, so an absent session (revision 0) never matches one that
//!   was created after the snapshot.
//! - `session_branches`: a branch inherits the main items in `(position_base, fork_position]`
//!   without copying them, and holds its own items above `fork_position` in
//!   `session_branch_items`. A deleted branch keeps its row (`deleted`), which reserves its name.
//! - `session_turn_usage`: a run's usage per (branch, turn).
//! - `session_turn_starts`: where main's turns start, a cache that forks fill in.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

fn chat_fk(table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("{table}_chat_fk"))
        .from_tbl(table)
        .from_col("user_id")
        .from_col("chat_id")
        .to_tbl("chats")
        .to_col("user_id")
        .to_col("chat_id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one change at a time.
        manager
            .alter_table(
                Table::alter()
                    .table("chats")
                    .add_column(big_integer("position_base").default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("chats")
                    .add_column(big_integer("revision").default(1))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("session_branches")
                    .col(text("user_id"))
                    .col(text("chat_id"))
                    .col(text("branch_id"))
                    .col(big_integer("position_base"))
                    .col(big_integer("fork_position"))
                    .col(big_integer("item_count"))
                    .col(big_integer("revision").default(1))
                    .col(boolean("deleted").default(false))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .primary_key(Index::create().col("user_id").col("chat_id").col("branch_id"))
                    .foreign_key(&mut chat_fk("session_branches"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("session_branch_items")
                    .col(text("user_id"))
                    .col(text("chat_id"))
                    .col(text("branch_id"))
                    .col(big_integer("position"))
                    .col(text("data"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(
                        Index::create()
                            .col("user_id")
                            .col("chat_id")
                            .col("branch_id")
                            .col("position"),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("session_branch_items_branch_fk")
                            .from_tbl("session_branch_items")
                            .from_col("user_id")
                            .from_col("chat_id")
                            .from_col("branch_id")
                            .to_tbl("session_branches")
                            .to_col("user_id")
                            .to_col("chat_id")
                            .to_col("branch_id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("session_turn_usage")
                    .col(text("user_id"))
                    .col(text("chat_id"))
                    .col(text("branch_id"))
                    .col(big_integer("turn"))
                    .col(big_integer("requests"))
                    .col(big_integer("input_tokens"))
                    .col(big_integer("output_tokens"))
                    .col(big_integer("total_tokens"))
                    // JSON object texts, as the SDK's `input_tokens_details` and
                    // `output_tokens_details`.
                    .col(text_null("input_tokens_details"))
                    .col(text_null("output_tokens_details"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(
                        Index::create().col("user_id").col("chat_id").col("branch_id").col("turn"),
                    )
                    .foreign_key(&mut chat_fk("session_turn_usage"))
                    .to_owned(),
            )
            .await?;
        // Where main's turns start, filled in as forks look them up (appends pay nothing);
        // rows at or after a position main deletes are dropped with it.
        manager
            .create_table(
                Table::create()
                    .table("session_turn_starts")
                    .col(text("user_id"))
                    .col(text("chat_id"))
                    .col(big_integer("turn"))
                    .col(big_integer("position"))
                    .primary_key(Index::create().col("user_id").col("chat_id").col("turn"))
                    .foreign_key(&mut chat_fk("session_turn_starts"))
                    .to_owned(),
            )
            .await?;
        // Dropping the starts at or after a position main deletes.
        manager
            .create_index(
                Index::create()
                    .name("session_turn_starts_position")
                    .table("session_turn_starts")
                    .col("user_id")
                    .col("chat_id")
                    .col("position")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "session_turn_starts",
            "session_turn_usage",
            "session_branch_items",
            "session_branches",
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        for column in ["revision", "position_base"] {
            manager
                .alter_table(Table::alter().table("chats").drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
