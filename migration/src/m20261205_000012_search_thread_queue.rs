//! Takes the indexing of ChatKit thread items off the turn, on PostgreSQL.
//!
//! A ChatKit turn writes two items (the user's message, then the answer), and each write's
//! statement-level triggers turned the item's JSON into text, the text into a `tsvector`, and
//! upserted a search entry and its GIN entries, inside the write. Measured with
//! `pg_stat_statements` during the ChatKit benchmark, those nested statements took about 60%
//! of the item upsert's time. Session items stopped paying this in 000010; thread items now
//! follow, in a different way, because their `seq` comes from a sequence rather than from a
//! count kept under a row lock, so no per-thread mark could say "everything up to here is
//! indexed" (a lower `seq` may commit after a higher one).
//!
//! - `search_queue`: one row per item insert or update, written by the items' triggers in the
//!   same transaction as the item (so nothing committed is ever missed), keyed by user so a
//!   search can index what of its user's still waits. An insert is one small row and one
//!   B-tree entry, no JSON and no `tsvector`. It names the item by its `seq`, the items'
//!   primary key, which no other index of theirs begins with, so the indexer's lookups use
//!   that key whatever the planner knows of the table (by the item's id, it chose the
//!   thread's index and scanned the thread).
//! - The server consumes it in batches (`repositories::SearchIndex`), and a search first
//!   consumes its user's rows, as it does for session items.
//! - Deleting an item still deletes its entries at once (the delete trigger is unchanged).
//!
//! SQLite is unchanged: its writes are serialised by one lock anyway, and its FTS5 triggers
//! are not what bounds a ChatKit turn there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::m20261130_000009_search_plpgsql::plpgsql_functions;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// What the insert and the update trigger both do: queue the written items, unless search is
/// switched off (switching it on rebuilds the index from every stored item). An update keeps
/// the item's key and `seq` (the upsert's conflict target is the key), so the new rows say all.
const ENQUEUE: &str = "\
INSERT INTO search_queue (user_id, item_seq)
SELECT user_id, seq FROM added
WHERE coalesce((SELECT enabled FROM search_state), TRUE);";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let mut statements = vec![
            "CREATE TABLE search_queue (
                user_id text NOT NULL,
                seq bigint GENERATED ALWAYS AS IDENTITY,
                item_seq bigint NOT NULL,
                PRIMARY KEY (user_id, seq)
            )"
            .to_owned(),
        ];
        for event in ["insert", "update"] {
            statements.push(format!(
                "CREATE OR REPLACE FUNCTION search_chatkit_items_{event}() RETURNS trigger
                 LANGUAGE plpgsql AS $$ BEGIN {ENQUEUE} RETURN NULL; END $$"
            ));
        }
        run(manager, statements).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        // Index what is still queued, as the triggers coming back would have.
        let mut statements = vec![
            "INSERT INTO search_entries (user_id, kind, conversation_id, item_key, body, created_at)
             SELECT i.user_id, 'thread', i.thread_id, i.item_id, t.body, i.created_at
             FROM (SELECT DISTINCT item_seq FROM search_queue) q
             JOIN chatkit_items i ON i.seq = q.item_seq
             CROSS JOIN LATERAL (SELECT chatstore_search_text(i.data) AS body) AS t
             WHERE t.body <> '' AND coalesce((SELECT enabled FROM search_state), TRUE)
             ON CONFLICT (user_id, kind, conversation_id, item_key)
             DO UPDATE SET body = excluded.body, created_at = excluded.created_at"
                .to_owned(),
            "DROP TABLE search_queue".to_owned(),
        ];
        statements.extend(plpgsql_functions());
        run(manager, statements).await
    }
}

async fn run(manager: &SchemaManager<'_>, statements: Vec<String>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in statements {
        db.execute_unprepared(&statement).await?;
    }
    Ok(())
}
