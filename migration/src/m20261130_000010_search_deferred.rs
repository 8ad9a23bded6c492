//! Takes the indexing of session items off the append.
//!
//! Until now a trigger indexed every appended session item inside the append: turning its
//! JSON into text and the text into a `tsvector` (or FTS5 terms) cost about as much as the
//! append itself, and every agent turn paid it. Now an append writes only the items; the
//! server indexes them in batches shortly afterwards (`repositories::SearchIndex`), and a
//! search first indexes whatever of the searching user's is still waiting, so it sees every
//! write that committed before it started.
//!
//! - `chats.search_indexed`: the position up to which the chat's items are indexed. Items
//!   above it, up to `position_base + item_count`, are waiting.
//! - A partial index lists the chats with items waiting, by user, so finding them costs
//!   nothing when there are none.
//! - A chat whose last position falls below its mark (an item popped, a tail replaced, the
//!   session cleared) has the mark lowered with it, by a trigger, so the positions it will
//!   reuse are indexed again. The removed items' entries go with them, as before.
//! - `session_item_search_texts`: each session item's searchable text, the one expression
//!   both the indexer and the rebuild of `search_sources` use.
//!
//! Items written by updates, ChatKit items and titles are still indexed by their triggers:
//! they are not on the turn's path.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::m20261130_000005_search::{postgres_up, sqlite_item_text, sqlite_up};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Chats with items waiting to be indexed, by user.
const PENDING_INDEX: &str = "CREATE INDEX chats_search_pending ON chats (user_id, chat_id) \
     WHERE search_indexed < position_base + item_count";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        let mut statements = vec![
            "ALTER TABLE chats ADD COLUMN search_indexed bigint NOT NULL DEFAULT 0".to_owned(),
            // What is stored now was indexed by the trigger this migration drops.
            "UPDATE chats SET search_indexed = position_base + item_count".to_owned(),
            PENDING_INDEX.to_owned(),
        ];
        if postgres {
            statements.extend([
                "DROP TRIGGER search_conversation_items_insert ON conversation_items".to_owned(),
                "DROP FUNCTION search_conversation_items_insert()".to_owned(),
                "CREATE FUNCTION chats_search_mark_lower() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN NEW.search_indexed := NEW.position_base + NEW.item_count; RETURN NEW; END $$"
                    .to_owned(),
                // `WHEN` is checked without calling the function, so appends pay nothing.
                "CREATE TRIGGER chats_search_mark_lower BEFORE UPDATE ON chats FOR EACH ROW
                 WHEN (NEW.position_base + NEW.item_count < NEW.search_indexed)
                 EXECUTE FUNCTION chats_search_mark_lower()"
                    .to_owned(),
                "CREATE VIEW session_item_search_texts AS
                 SELECT user_id, chat_id, position, created_at, chatstore_search_text(data) AS body
                 FROM conversation_items"
                    .to_owned(),
            ]);
        } else {
            let text = sqlite_item_text("data");
            statements.extend([
                "DROP TRIGGER search_conversation_items_insert".to_owned(),
                "CREATE TRIGGER chats_search_mark_lower AFTER UPDATE ON chats
                 WHEN NEW.position_base + NEW.item_count < NEW.search_indexed
                 BEGIN
                     UPDATE chats SET search_indexed = NEW.position_base + NEW.item_count
                     WHERE user_id = NEW.user_id AND chat_id = NEW.chat_id;
                 END"
                .to_owned(),
                format!(
                    "CREATE VIEW session_item_search_texts AS
                     SELECT user_id, chat_id, position, created_at, {text} AS body
                     FROM conversation_items"
                ),
            ]);
        }
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        // Index what is waiting, so that nothing is lost to the trigger that comes back.
        let mut statements = vec![
            "DELETE FROM search_entries WHERE kind = 'session' AND EXISTS (
                 SELECT 1 FROM chats c WHERE c.user_id = search_entries.user_id
                   AND c.chat_id = search_entries.conversation_id
                   AND c.search_indexed < c.position_base + c.item_count)"
                .to_owned(),
            "INSERT INTO search_entries (user_id, kind, conversation_id, item_key, body, created_at)
             SELECT t.user_id, 'session', t.chat_id, CAST(t.position AS TEXT), t.body, t.created_at
             FROM session_item_search_texts t JOIN chats c
               ON c.user_id = t.user_id AND c.chat_id = t.chat_id
             WHERE c.search_indexed < c.position_base + c.item_count AND t.body <> ''
               AND (SELECT enabled FROM search_state)"
                .to_owned(),
            "DROP VIEW session_item_search_texts".to_owned(),
        ];
        if postgres {
            statements.push("DROP TRIGGER chats_search_mark_lower ON chats".to_owned());
            statements.push("DROP FUNCTION chats_search_mark_lower()".to_owned());
        } else {
            statements.push("INSERT INTO search_fts (search_fts) VALUES ('rebuild')".to_owned());
            statements.push("DROP TRIGGER chats_search_mark_lower".to_owned());
        }
        // The items' insert trigger as 000005 made it (000009's `down` puts back 000005's
        // function body too).
        let original = if postgres { postgres_up() } else { sqlite_up() };
        statements.extend(
            original
                .into_iter()
                .filter(|statement| statement.contains("search_conversation_items_insert")),
        );
        statements.push("DROP INDEX chats_search_pending".to_owned());
        statements.push("ALTER TABLE chats DROP COLUMN search_indexed".to_owned());
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }
}
