//! Indexing session items for search after their append, in batches (migration 000010).
//!
//! An append writes only its items; `chats.search_indexed` marks how far each chat's items
//! are indexed, and a partial index lists the chats with items above the mark. The server
//! indexes them in the background ([`SearchIndex::index_batch`], a few times a second), and a
//! search first indexes what is still waiting of the searching user's
//! ([`SearchIndex::catch_up_user`]), so a search sees every write that committed before it.
//!
//! Correctness rests on the chat's row lock: a batch first locks the chats it will index
//! (`FOR UPDATE`), which an append to them must wait for, and only then, in a new statement
//! (a new snapshot under READ COMMITTED), reads their items up to the position it locked.
//! Every item up to that position has committed by then, so none is skipped. On SQLite the
//! process's writer lock does the same. A chat whose last position falls below its mark (a
//! pop, a replaced tail, a clear) has the mark lowered by a trigger, and the removed items'
//! entries are deleted by theirs, so reused positions are indexed afresh.

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};

use crate::{Db, RepoError, RepoResult};

/// Chats indexed by one background batch.
const BATCH_CHATS: i64 = 64;
/// Items of one chat indexed by one batch: a chat imported with a long history is indexed
/// over several batches rather than in one long transaction.
const BATCH_ITEMS_PER_CHAT: i64 = 5_000;

/// The chats with items waiting, locked, with the range each batch indexes: positions in
/// `(after, upto]`. `$1` a user or NULL for any; `$2` how many chats.
const PENDING_PG_SQL: &str = "\
SELECT user_id, chat_id, search_indexed AS after,
       least(position_base + item_count, search_indexed + $3) AS upto
FROM chats
WHERE search_indexed < position_base + item_count
  AND ($1::text IS NULL OR user_id = $1)
  AND coalesce((SELECT enabled FROM search_state), TRUE)
ORDER BY user_id, chat_id
LIMIT $2";

/// Indexes the ranges (`$1`, a JSON array of `{user_id, chat_id, after, upto}`) and moves the
/// chats' marks, in one statement. Each range is read by its own key-range scan (`LATERAL`):
/// joined plainly, the planner could not see how few ranges the JSON holds and scanned every
/// item, holding the chats' locks (and so their appends) for seconds.
const INDEX_PG_SQL: &str = "\
WITH pending AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb)
        AS p (user_id text, chat_id text, after bigint, upto bigint)
), marked AS (
    UPDATE chats c SET search_indexed = p.upto FROM pending p
    WHERE c.user_id = p.user_id AND c.chat_id = p.chat_id
)
INSERT INTO search_entries (user_id, kind, conversation_id, item_key, body, created_at)
SELECT t.user_id, 'session', t.chat_id, t.position::text, t.body, t.created_at
FROM pending p CROSS JOIN LATERAL (
    SELECT * FROM session_item_search_texts t
    WHERE t.user_id = p.user_id AND t.chat_id = p.chat_id
      AND t.position > p.after AND t.position <= p.upto
) AS t
WHERE t.body <> ''
ON CONFLICT (user_id, kind, conversation_id, item_key)
DO UPDATE SET body = excluded.body, created_at = excluded.created_at";

/// [`PENDING_PG_SQL`] on SQLite (no locking clause: the writer lock is held).
const PENDING_SQLITE_SQL: &str = "\
SELECT user_id, chat_id, search_indexed AS after,
       min(position_base + item_count, search_indexed + $3) AS upto
FROM chats
WHERE search_indexed < position_base + item_count
  AND ($1 IS NULL OR user_id = $1)
  AND coalesce((SELECT enabled FROM search_state), TRUE)
ORDER BY user_id, chat_id
LIMIT $2";

/// Indexes one chat's range on SQLite, into `search_entries`; the FTS index follows in one
/// statement per batch.
const INDEX_SQLITE_SQL: &str = "\
INSERT OR IGNORE INTO search_entries (user_id, kind, conversation_id, item_key, body, created_at)
SELECT user_id, 'session', chat_id, CAST(position AS TEXT), body, created_at
FROM session_item_search_texts
WHERE user_id = $1 AND chat_id = $2 AND position > $3 AND position <= $4 AND body <> ''";

/// The search index's upkeep on one database.
#[derive(Debug, Clone, Copy)]
pub struct SearchIndex<'a> {
    db: &'a Db,
}

impl Db {
    pub fn search_index(&self) -> SearchIndex<'_> {
        SearchIndex { db: self }
    }
}

/// One chat's waiting range: positions in `(after, upto]`.
#[derive(serde::Serialize)]
struct Pending {
    #[serde(rename = "user_id")]
    user: String,
    #[serde(rename = "chat_id")]
    chat: String,
    after: i64,
    upto: i64,
}

impl SearchIndex<'_> {
    /// Indexes everything of `user`'s that is waiting. Waits for batches in progress on the
    /// same chats, so that what they were indexing is in the index when it returns.
    pub async fn catch_up_user(&self, user: &str) -> RepoResult<u64> {
        let mut indexed = 0;
        loop {
            let (chats, items) = self.index(Some(user), i64::MAX).await?;
            indexed += items;
            if chats == 0 {
                return Ok(indexed);
            }
        }
    }

    /// Indexes one batch of any user's waiting items; answers how many chats it took (0 when
    /// nothing waits) and how many entries it wrote. Skips chats that another batch or an
    /// append holds, which the next batch takes.
    pub async fn index_batch(&self) -> RepoResult<(u64, u64)> {
        self.index(None, BATCH_CHATS).await
    }

    async fn index(&self, user: Option<&str>, chats: i64) -> RepoResult<(u64, u64)> {
        match self.db.db_backend() {
            DbBackend::Postgres => self.index_postgres(user, chats).await,
            _ => self.index_sqlite(user, chats).await,
        }
    }

    async fn index_postgres(&self, user: Option<&str>, chats: i64) -> RepoResult<(u64, u64)> {
        // A user's catch-up waits for the chats it needs; the background skips busy ones.
        let lock = if user.is_some() { "FOR UPDATE" } else { "FOR UPDATE SKIP LOCKED" };
        let txn = self.db.connection().begin().await?;
        let pending =
            pending(&txn, DbBackend::Postgres, &format!("{PENDING_PG_SQL} {lock}"), user, chats)
                .await?;
        if pending.is_empty() {
            txn.commit().await?;
            return Ok((0, 0));
        }
        let ranges =
            serde_json::to_string(&pending).map_err(|err| RepoError::Invalid(err.to_string()))?;
        let written = txn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                INDEX_PG_SQL,
                [ranges.into()],
            ))
            .await?
            .rows_affected();
        txn.commit().await?;
        Ok((pending.len() as u64, written))
    }

    async fn index_sqlite(&self, user: Option<&str>, chats: i64) -> RepoResult<(u64, u64)> {
        let _writer = self.db.write_guard().await;
        let txn = self.db.connection().begin().await?;
        // A write first, so the transaction takes the file's write lock now (waiting out
        // another process's writer) rather than at its first real write, when a commit by
        // another process since its first read would fail it (`SQLITE_BUSY_SNAPSHOT`).
        txn.execute_unprepared("UPDATE search_state SET enabled = enabled WHERE 0").await?;
        let pending = pending(&txn, DbBackend::Sqlite, PENDING_SQLITE_SQL, user, chats).await?;
        if pending.is_empty() {
            txn.commit().await?;
            return Ok((0, 0));
        }
        let last_entry = txn
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT coalesce(max(id), 0) AS id FROM search_entries",
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "id"))
            .transpose()?
            .unwrap_or(0);
        let mut written = 0;
        for chat in &pending {
            let range: [Value; 4] = [
                chat.user.clone().into(),
                chat.chat.clone().into(),
                chat.after.into(),
                chat.upto.into(),
            ];
            written += txn
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    INDEX_SQLITE_SQL,
                    range,
                ))
                .await?
                .rows_affected();
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "UPDATE chats SET search_indexed = $3 WHERE user_id = $1 AND chat_id = $2",
                [chat.user.clone().into(), chat.chat.clone().into(), chat.upto.into()],
            ))
            .await?;
        }
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO search_fts (rowid, body) SELECT id, body FROM search_entries WHERE id > $1",
            [last_entry.into()],
        ))
        .await?;
        txn.commit().await?;
        Ok((pending.len() as u64, written))
    }
}

/// The waiting ranges `sql` finds (parameters: the user or NULL, how many chats, the most
/// items a chat's range may hold).
async fn pending(
    txn: &impl ConnectionTrait,
    backend: DbBackend,
    sql: &str,
    user: Option<&str>,
    chats: i64,
) -> RepoResult<Vec<Pending>> {
    let per_chat = if user.is_some() { i64::MAX / 2 } else { BATCH_ITEMS_PER_CHAT };
    let values: [Value; 3] = [user.map(str::to_owned).into(), chats.into(), per_chat.into()];
    let rows = txn.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    rows.iter()
        .map(|row| {
            Ok(Pending {
                user: row.try_get("", "user_id")?,
                chat: row.try_get("", "chat_id")?,
                after: row.try_get("", "after")?,
                upto: row.try_get("", "upto")?,
            })
        })
        .collect()
}
