//! Keeps each chat's search mark at or above its `position_base`.
//!
//! Positions at or below `position_base` hold no items (pruned by a compaction, or never
//! there in an imported chat), but a mark below the base said they were waiting. The
//! background indexer moves a chat's mark only when it saw every position of the range it
//! indexed (see `repositories::SearchIndex`), so such a chat was indexed again every batch and
//! never marked. The trigger that lowered the mark to the chat's last position now also raises
//! it to the base, and the marks already below their base are raised.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The mark the trigger sets, written with the database's `greatest` and `least`, and the
/// condition it fires on, which spares appends the call (`lower_only` for 000010's trigger,
/// which only lowered the mark).
fn mark_rule(lower_only: bool, greatest: &str, least: &str) -> (String, &'static str) {
    if lower_only {
        (
            "NEW.position_base + NEW.item_count".to_owned(),
            "NEW.position_base + NEW.item_count < NEW.search_indexed",
        )
    } else {
        (
            format!(
                "{greatest}(NEW.position_base, \
                 {least}(NEW.search_indexed, NEW.position_base + NEW.item_count))"
            ),
            "NEW.position_base + NEW.item_count < NEW.search_indexed \
             OR NEW.search_indexed < NEW.position_base",
        )
    }
}

/// The PostgreSQL trigger: its function, then the trigger.
fn postgres_trigger(lower_only: bool) -> [String; 3] {
    let (mark, when) = mark_rule(lower_only, "greatest", "least");
    [
        format!(
            "CREATE OR REPLACE FUNCTION chats_search_mark_lower() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN NEW.search_indexed := {mark}; RETURN NEW; END $$"
        ),
        "DROP TRIGGER chats_search_mark_lower ON chats".to_owned(),
        format!(
            "CREATE TRIGGER chats_search_mark_lower BEFORE UPDATE ON chats FOR EACH ROW
             WHEN ({when}) EXECUTE FUNCTION chats_search_mark_lower()"
        ),
    ]
}

/// The SQLite trigger (recursive triggers are off, so its own update fires nothing).
fn sqlite_trigger(lower_only: bool) -> [String; 2] {
    let (mark, when) = mark_rule(lower_only, "max", "min");
    [
        "DROP TRIGGER chats_search_mark_lower".to_owned(),
        format!(
            "CREATE TRIGGER chats_search_mark_lower AFTER UPDATE ON chats
             WHEN {when}
             BEGIN
                 UPDATE chats SET search_indexed = {mark}
                 WHERE user_id = NEW.user_id AND chat_id = NEW.chat_id;
             END"
        ),
    ]
}

async fn run(manager: &SchemaManager<'_>, statements: Vec<String>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in statements {
        db.execute_unprepared(&statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut statements: Vec<String> = match manager.get_database_backend() {
            DbBackend::Postgres => postgres_trigger(false).into(),
            _ => sqlite_trigger(false).into(),
        };
        statements.push(
            "UPDATE chats SET search_indexed = position_base WHERE search_indexed < position_base"
                .to_owned(),
        );
        run(manager, statements).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Raised marks stay: the positions below a base hold nothing to index.
        let statements: Vec<String> = match manager.get_database_backend() {
            DbBackend::Postgres => postgres_trigger(true).into(),
            _ => sqlite_trigger(true).into(),
        };
        run(manager, statements).await
    }
}
