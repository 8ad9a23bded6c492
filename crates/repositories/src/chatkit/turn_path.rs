//! The store calls of every ChatKit turn on PostgreSQL, one statement each on a held
//! connection (see `held.rs`): the item upsert behind `add_thread_item` and `save_item`, which
//! a turn makes twice (the user's message, answering the thread as well, then the answer), and
//! `load_thread` for every other request (and a message with attachments).
//!
//! Through sea-orm, each was its own pool checkout, and the upsert a transaction of five round
//! trips (BEGIN, lock the thread, look for the item, upsert, COMMIT), each checkout ending
//! with sqlx's check of the returned connection: a round trip more, run in a task of its own,
//! during which the connection serves nobody. At 64 clients on a pool of 32, requests queued
//! for connections that were idle but still being checked, and throughput fell as clients
//! were added. SQLite keeps the transactional path (its writers are serialised anyway).

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, PgConnection};

use super::objects::thread_not_found;
use super::{DbStore, StoredItem, StoredThread};
use crate::RepoResult;
use crate::db::{Held, sqlx_error};

const LOAD_THREAD_SQL: &str = "\
SELECT title, created_at, data FROM chatkit_threads WHERE user_id = $1 AND thread_id = $2";

/// The transaction's steps as one statement, which PostgreSQL runs atomically: the thread's
/// row is locked `FOR SHARE` (a concurrent delete of the thread, or a step holding it
/// exclusively, waits or is waited for, as before), the item is upserted only if the thread
/// was found (a data-modifying `WITH` runs whether or not it is read), and whether the item
/// existed is read from the statement's snapshot, taken before the upsert. A repeat keeps its
/// `seq`, hence its place among items of equal `created_at`. It answers the thread as well (no
/// row when there is none), so that a turn need not load it in a round trip of its own.
const UPSERT_ITEM_SQL: &str = "\
WITH thread AS (
    SELECT title, created_at, data FROM chatkit_threads
    WHERE user_id = $1 AND thread_id = $2 FOR SHARE
), existing AS (
    SELECT seq FROM chatkit_items WHERE user_id = $1 AND thread_id = $2 AND item_id = $3
), written AS (
    INSERT INTO chatkit_items (user_id, thread_id, item_id, item_type, created_at, data)
    SELECT $1, $2, $3, $4, $5, $6 FROM thread
    ON CONFLICT (user_id, thread_id, item_id) DO UPDATE
        SET item_type = EXCLUDED.item_type, created_at = EXCLUDED.created_at, data = EXCLUDED.data
)
SELECT title, created_at, data, EXISTS (SELECT 1 FROM existing) FROM thread";

impl DbStore {
    /// `load_thread` in one statement on a held connection; `None` off PostgreSQL.
    pub(super) async fn load_thread_on_held(
        &self,
        thread_id: &str,
        user: &str,
    ) -> Option<RepoResult<StoredThread>> {
        let Held::Postgres(held) = self.db().held() else { return None };
        let load = async |connection: &mut PgConnection| {
            sqlx::query_as(LOAD_THREAD_SQL)
                .bind(user)
                .bind(thread_id)
                .fetch_optional(connection)
                .await
        };
        let row: Option<(Option<String>, DateTime<Utc>, String)> =
            match held.run(load).await.map_err(sqlx_error) {
                Ok(row) => row,
                Err(err) => return Some(Err(err)),
            };
        Some(match row {
            Some((title, created_at, json)) => {
                Ok(StoredThread { id: thread_id.to_owned(), title, created_at, json })
            }
            None => Err(thread_not_found(thread_id)),
        })
    }

    /// Upserts `stored` into its thread in one statement on a held connection, answering the
    /// thread and whether the item was created; `None` off PostgreSQL.
    pub(super) async fn upsert_item_on_held(
        &self,
        stored: &StoredItem,
        user: &str,
    ) -> Option<RepoResult<(StoredThread, bool)>> {
        let Held::Postgres(held) = self.db().held() else { return None };
        let upsert = async |connection: &mut PgConnection| {
            sqlx::query_as(UPSERT_ITEM_SQL)
                .bind(user)
                .bind(stored.thread_id.as_str())
                .bind(stored.id.as_str())
                .bind(stored.item_type.as_str())
                .bind(stored.created_at)
                .bind(stored.json.as_str())
                .fetch_optional(connection)
                .await
        };
        let row: Option<(Option<String>, DateTime<Utc>, String, bool)> =
            match held.run(upsert).await.map_err(sqlx_error) {
                Ok(row) => row,
                Err(err) => return Some(Err(err)),
            };
        let Some((title, created_at, json, existed)) = row else {
            return Some(Err(thread_not_found(&stored.thread_id)));
        };
        // Its trigger queued it for search (see `search_index`).
        self.db().search_index().wake();
        let thread = StoredThread { id: stored.thread_id.clone(), title, created_at, json };
        Some(Ok((thread, !existed)))
    }
}
