//! Indexing session items for search after their append, in batches (migration 000010).
//!
//! An append writes only its items; `chats.search_indexed` marks how far each chat's items
//! are indexed, and a partial index lists the chats with items above the mark. The server
//! indexes them in the background ([`SearchIndex::index_batch`], a few times a second while
//! writes come in, woken by them through [`SearchIndex::wait_for_writes`] when idle), and a
//! search first indexes what is still waiting of the searching user's
//! ([`SearchIndex::catch_up_user`]), so a search sees every write that committed before it.
//!
//! A chat whose last position falls below its mark (a pop, a replaced tail, a clear) has the
//! mark lowered by a trigger, and the removed items' entries are deleted by theirs, so reused
//! positions are indexed afresh. What an indexer must not do is index an item that is being
//! removed, or move a mark past positions whose items it did not see. Two ways keep it so:
//!
//! - **A user's catch-up** locks the chats first (`FOR UPDATE`, waiting for appends and
//!   removals in progress), and only then, in a new statement (a new snapshot under READ
//!   COMMITTED), reads their items up to the position it locked.
//! - **The background batch** takes no chat lock while it indexes, so appends never wait for
//!   it: an append only adds positions above the ones a batch read, and commits its items with
//!   the count that names them. It locks the items it reads instead (`FOR KEY SHARE SKIP
//!   LOCKED`), which a removal must wait for, so their entries are deleted after it commits;
//!   it skips items a removal holds. A chat's mark moves only if the batch saw every position
//!   of its range (a removal committed meanwhile leaves a gap), only if no other indexer moved
//!   it, and only if the chat's row is free that instant; otherwise the next batch indexes the
//!   range again, which rewrites the same entries. The chats' row locks are held from that
//!   last statement to the commit: one round trip. Batches of several servers on one database
//!   claim the chats they take with advisory locks, which appends never touch, so that they
//!   take different chats rather than all the same first ones. (A batch that read a chat's
//!   mark just before another committed it may still index the chat again: harmless, as
//!   above.)
//!
//! On SQLite the process's writer lock does all of this.
//!
//! ChatKit thread items are queued instead (PostgreSQL only, migration 000012): their
//! triggers add a row to `search_queue` in the item's own transaction, and a batch
//! ([`QUEUED_PG_SQL`]) indexes the queued items and deletes the rows it is done with. It locks
//! the items it reads (`FOR KEY SHARE SKIP LOCKED`), which only a delete must wait for, so an
//! item being deleted is never indexed after its entry went; an item skipped that way keeps
//! its row for the next batch, and one that is gone has its row deleted. An item written again
//! after the batch read it has a new row, so what the batch wrote is soon written afresh. A
//! user's catch-up first locks the user's rows (`FOR UPDATE`), waiting for a batch that holds
//! some, then runs the same statement on them.

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};

use crate::{Db, RepoError, RepoResult};

/// Chats indexed by one background batch.
const BATCH_CHATS: i64 = 64;
/// Items of one chat indexed by one batch: a chat imported with a long history is indexed
/// over several batches rather than in one long transaction.
const BATCH_ITEMS_PER_CHAT: i64 = 5_000;

/// The chats with items waiting, in key order, with the range each batch indexes: positions
/// in `(after, upto]`. `$1` a user or NULL for any; `$2` how many chats; `$3` the most items
/// of a chat's range. Callers add the limit and how the chats are claimed.
const PENDING_PG_SQL: &str = "\
SELECT user_id, chat_id, search_indexed AS after,
       least(position_base + item_count, search_indexed + $3) AS upto,
       position_base + item_count AS last
FROM chats
WHERE search_indexed < position_base + item_count
  AND ($1::text IS NULL OR user_id = $1)
  AND coalesce((SELECT enabled FROM search_state), TRUE)
ORDER BY user_id, chat_id";

/// The first key of the advisory locks by which background batches claim chats: a constant
/// of chatstore's own, so that the locks are unlikely to meet other users' of the database.
/// The second key is a hash of the chat's key; while one batch holds two chats whose hashes
/// meet, other batches pass over both, which only delays the second.
const BATCH_CLAIM_LOCK_CLASS: i32 = 0x6373_6978; // "csix"

/// Candidates a background batch looks at per chat it takes: chats other servers' batches
/// have claimed are passed over, and a claim is tried on this many at most.
const BATCH_CANDIDATES_PER_CHAT: i64 = 4;

/// [`PENDING_PG_SQL`] for the background batch: the first `$2` of the waiting chats that no
/// other batch has claimed, each claimed with a transaction-scoped advisory lock. With several
/// servers on one database their batches so share the work rather than all indexing the same
/// first chats, each writing the same entries again. Appends take no such lock and never wait
/// for one. The claims are tried on a bounded list of candidates (the limit stops the outer
/// query after `$2` claims), so a batch never holds more locks than chats it indexes.
fn claimed_pending_pg_sql() -> String {
    format!(
        "SELECT * FROM ({PENDING_PG_SQL} LIMIT $2 * {BATCH_CANDIDATES_PER_CHAT}) AS candidates
         WHERE pg_try_advisory_xact_lock({BATCH_CLAIM_LOCK_CLASS}, hashtext(user_id || '/' || chat_id))
         LIMIT $2"
    )
}

/// A user's catch-up, on chats it has locked: indexes the ranges (`$1`, a JSON array of
/// `{user_id, chat_id, after, upto}`) and moves the chats' marks, in one statement. Each range
/// is read by its own key-range scan (`LATERAL`), whatever the planner guesses of the JSON's
/// size. (The stall once blamed on a plain join here was JIT compilation, see
/// `index_postgres`.)
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

/// The background batch's indexing, on chats it has not locked: indexes what it can lock of
/// the ranges (`$1` as in [`INDEX_PG_SQL`]), skipping items that a removal holds. Answers the
/// entries written and the ranges it saw whole, as a JSON array for [`MARK_PG_SQL`].
const INDEX_UNLOCKED_PG_SQL: &str = "\
WITH pending AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb)
        AS p (user_id text, chat_id text, after bigint, upto bigint)
), seen AS (
    SELECT t.* FROM pending p CROSS JOIN LATERAL (
        SELECT * FROM session_item_search_texts t
        WHERE t.user_id = p.user_id AND t.chat_id = p.chat_id
          AND t.position > p.after AND t.position <= p.upto
        FOR KEY SHARE SKIP LOCKED
    ) AS t
), written AS (
    INSERT INTO search_entries (user_id, kind, conversation_id, item_key, body, created_at)
    SELECT user_id, 'session', chat_id, position::text, body, created_at FROM seen
    WHERE body <> ''
    ON CONFLICT (user_id, kind, conversation_id, item_key)
    DO UPDATE SET body = excluded.body, created_at = excluded.created_at
    RETURNING 1
)
SELECT (SELECT count(*) FROM written) AS entries,
       (SELECT coalesce(jsonb_agg(p), '[]') FROM pending p
        JOIN (SELECT user_id, chat_id, count(*) AS n FROM seen GROUP BY user_id, chat_id) AS s
          ON s.user_id = p.user_id AND s.chat_id = p.chat_id
        WHERE s.n = p.upto - p.after
       )::text AS whole";

/// Moves the marks of the ranges a background batch saw whole (`$1`), for the chats whose
/// mark is still where the batch read it and whose row nothing holds (an append in progress,
/// a removal): those are indexed again by the next batch.
const MARK_PG_SQL: &str = "\
UPDATE chats c SET search_indexed = p.upto
FROM (
    SELECT l.user_id, l.chat_id, r.upto
    FROM jsonb_to_recordset($1::jsonb) AS r (user_id text, chat_id text, after bigint, upto bigint)
    JOIN chats l ON l.user_id = r.user_id AND l.chat_id = r.chat_id
    WHERE l.search_indexed = r.after
    FOR NO KEY UPDATE OF l SKIP LOCKED
) AS p
WHERE c.user_id = p.user_id AND c.chat_id = p.chat_id";

/// Queued ChatKit thread items, at most `$2` rows (of user `$1`, or of anyone when NULL):
/// indexes the items it can lock, drops the entries of those whose text is now empty, and
/// deletes the queue rows of the items it indexed and of the items that are gone. Rows of
/// items that a delete holds stay queued. Entries are written in key order, so two batches
/// that meet on the same items (two servers, or a batch and a catch-up) wait for each other
/// rather than deadlock. Each item is read by its own primary-key lookup (`LATERAL`, by
/// `seq`) and each row deleted by its address (`ctid`, stable while the row is locked): left
/// to the planner, a batch of a hundred rows was a hash join over every item and every queue
/// row, dead ones included. Answers the rows it took, the entries it wrote and the rows it
/// deleted.
const QUEUED_PG_SQL: &str = "\
WITH queued AS (
    SELECT ctid AS row, user_id, item_seq FROM search_queue
    WHERE ($1::text IS NULL OR user_id = $1)
      AND coalesce((SELECT enabled FROM search_state), TRUE)
    ORDER BY user_id, seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), wanted AS (
    SELECT DISTINCT user_id, item_seq FROM queued
), locked AS (
    SELECT i.* FROM wanted w CROSS JOIN LATERAL (
        SELECT seq, user_id, thread_id, item_id, created_at, chatstore_search_text(data) AS body
        FROM chatkit_items
        WHERE seq = w.item_seq AND user_id = w.user_id
        FOR KEY SHARE SKIP LOCKED
    ) AS i
), written AS (
    INSERT INTO search_entries (user_id, kind, conversation_id, item_key, body, created_at)
    SELECT user_id, 'thread', thread_id, item_id, body, created_at FROM locked WHERE body <> ''
    ORDER BY user_id, thread_id, item_id
    ON CONFLICT (user_id, kind, conversation_id, item_key)
    DO UPDATE SET body = excluded.body, created_at = excluded.created_at
    RETURNING 1
), emptied AS (
    DELETE FROM search_entries e USING locked l
    WHERE coalesce(l.body, '') = '' AND e.user_id = l.user_id AND e.kind = 'thread'
      AND e.conversation_id = l.thread_id AND e.item_key = l.item_id
), done AS (
    DELETE FROM search_queue WHERE ctid = ANY (ARRAY(
        SELECT d.row FROM queued d
        WHERE d.item_seq IN (SELECT seq FROM locked)
           OR NOT EXISTS (SELECT 1 FROM chatkit_items i WHERE i.seq = d.item_seq)))
    RETURNING 1
)
SELECT (SELECT count(*) FROM queued) AS queued, (SELECT count(*) FROM written) AS entries,
       (SELECT count(*) FROM done) AS done";

/// A user's queue rows, locked: waits for a batch that holds some of them.
const LOCK_USER_QUEUE_PG_SQL: &str =
    "SELECT seq FROM search_queue WHERE user_id = $1 ORDER BY seq FOR UPDATE";

/// Queue rows indexed by one background batch.
const BATCH_QUEUED: i64 = 1_000;

/// [`PENDING_PG_SQL`] with its limit, on SQLite (no claims or locks: the writer lock is held).
const PENDING_SQLITE_SQL: &str = "\
SELECT user_id, chat_id, search_indexed AS after,
       min(position_base + item_count, search_indexed + $3) AS upto,
       position_base + item_count AS last
FROM chats
WHERE search_indexed < position_base + item_count
  AND ($1 IS NULL OR user_id = $1)
  AND coalesce((SELECT enabled FROM search_state), TRUE)
ORDER BY user_id, chat_id
LIMIT $2";

/// [`INDEX_PG_SQL`] on SQLite, in three statements (SQLite has no data-modifying CTEs): the
/// entries, then the marks, then the FTS index. `$1` the ranges as in [`INDEX_PG_SQL`].
const INDEX_SQLITE_SQL: &str = "\
INSERT OR IGNORE INTO search_entries (user_id, kind, conversation_id, item_key, body, created_at)
SELECT t.user_id, 'session', t.chat_id, CAST(t.position AS TEXT), t.body, t.created_at
FROM json_each($1) AS p
JOIN session_item_search_texts AS t
  ON t.user_id = p.value ->> 'user_id' AND t.chat_id = p.value ->> 'chat_id'
 AND t.position > p.value ->> 'after' AND t.position <= p.value ->> 'upto'
WHERE t.body <> ''";

/// Moves the marks of the chats a batch indexed (`$1` as in [`INDEX_SQLITE_SQL`]).
const MARK_SQLITE_SQL: &str = "\
UPDATE chats SET search_indexed = p.value ->> 'upto'
FROM json_each($1) AS p
WHERE chats.user_id = p.value ->> 'user_id' AND chats.chat_id = p.value ->> 'chat_id'";

/// Adds the entries written after entry `$1` to the FTS index.
const FTS_SQLITE_SQL: &str =
    "INSERT INTO search_fts (rowid, body) SELECT id, body FROM search_entries WHERE id > $1";

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

/// One chat's waiting range: positions in `(after, upto]`, of a chat whose items end at
/// `last` (beyond `upto` when the range was capped).
#[derive(serde::Serialize)]
struct Pending {
    #[serde(rename = "user_id")]
    user: String,
    #[serde(rename = "chat_id")]
    chat: String,
    after: i64,
    upto: i64,
    #[serde(skip)]
    last: i64,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexBatch {
    /// Chats whose items it indexed (0 when nothing waited).
    pub chats: u64,
    /// Search entries it wrote.
    pub entries: u64,
    /// Queued ChatKit thread items it took (PostgreSQL only; 0 when none waited).
    pub queued_items: u64,
    /// Whether it left items waiting that were there when it started: it took as many chats,
    /// or as many items of a chat, as a batch may. Items appended while it ran do not count,
    /// so a server under a steady stream of appends indexes a batch per tick rather than one
    /// after another without pause.
    pub more_waiting: bool,
}

impl IndexBatch {
    const EMPTY: Self = Self { chats: 0, entries: 0, queued_items: 0, more_waiting: false };

    fn of(pending: &[Pending], chats: i64, entries: u64) -> Self {
        let full = i64::try_from(pending.len()).unwrap_or(i64::MAX) >= chats;
        let capped = pending.iter().any(|range| range.upto < range.last);
        Self { chats: pending.len() as u64, entries, queued_items: 0, more_waiting: full || capped }
    }

    /// Whether it found anything to index: session items or queued thread items.
    pub fn indexed_any(&self) -> bool {
        self.chats > 0 || self.queued_items > 0
    }
}

impl SearchIndex<'_> {
    /// Tells the background indexer that a committed write left items to index (session
    /// items above their chat's mark, queued thread items).
    pub(crate) fn wake(&self) {
        self.db.index_wanted.notify_one();
    }

    /// Resolves once a write has called [`Self::wake`] since this last resolved (at once if
    /// one did meanwhile). The background indexer waits for it while nothing is left to
    /// index, so an idle server sends its database nothing, and a serverless one (Neon)
    /// can scale to zero. Only this process's writes wake it; another server indexes its own.
    pub async fn wait_for_writes(&self) {
        self.db.index_wanted.notified().await;
    }

    /// Indexes everything of `user`'s that is waiting. Waits for batches in progress on the
    /// same chats, so that what they were indexing is in the index when it returns.
    pub async fn catch_up_user(&self, user: &str) -> RepoResult<u64> {
        let mut indexed = 0;
        loop {
            let batch = self.index(Some(user), i64::MAX).await?;
            indexed += batch.entries;
            if batch.chats == 0 {
                break;
            }
        }
        Ok(indexed + self.index_queued(Some(user), i64::MAX).await?.entries)
    }

    /// Indexes one batch of any user's waiting items, locking no chat, so appends to them
    /// never wait for it. A range it could not index whole (an item being removed, the chat's
    /// row busy when the mark would move) waits for the next batch; so does a queued thread
    /// item that a delete holds.
    pub async fn index_batch(&self) -> RepoResult<IndexBatch> {
        let sessions = self.index(None, BATCH_CHATS).await?;
        let threads = self.index_queued(None, BATCH_QUEUED).await?;
        Ok(IndexBatch {
            entries: sessions.entries + threads.entries,
            queued_items: threads.queued_items,
            more_waiting: sessions.more_waiting || threads.more_waiting,
            ..sessions
        })
    }

    /// Indexes up to `rows` queued ChatKit thread items (of `user`, or of anyone), on
    /// PostgreSQL; SQLite's triggers index them as they are written. A user's catch-up first
    /// waits for the batches holding any of the user's rows, so that what they were indexing
    /// is in the index when it returns (see the module's comment).
    async fn index_queued(&self, user: Option<&str>, rows: i64) -> RepoResult<IndexBatch> {
        if self.db.db_backend() != DbBackend::Postgres {
            return Ok(IndexBatch::EMPTY);
        }
        let txn = self.db.connection().begin().await?;
        // As in `index_postgres`: the planner's guess of the queue's size may pass the JIT's
        // threshold.
        txn.execute_unprepared("SET LOCAL jit = off").await?;
        if let Some(user) = user {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                LOCK_USER_QUEUE_PG_SQL,
                [user.into()],
            ))
            .await?;
        }
        let values: [Value; 2] = [user.map(str::to_owned).into(), rows.into()];
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                QUEUED_PG_SQL,
                values,
            ))
            .await?
            .ok_or_else(|| RepoError::Invalid("the queue's statement answered no row".into()))?;
        txn.commit().await?;
        let count = |column: &str| -> RepoResult<u64> {
            Ok(u64::try_from(row.try_get::<i64>("", column)?).unwrap_or(0))
        };
        let queued_items = count("queued")?;
        Ok(IndexBatch {
            chats: 0,
            entries: count("entries")?,
            queued_items,
            more_waiting: user.is_none() && i64::try_from(queued_items).unwrap_or(i64::MAX) >= rows,
        })
    }

    async fn index(&self, user: Option<&str>, chats: i64) -> RepoResult<IndexBatch> {
        match self.db.db_backend() {
            DbBackend::Postgres => self.index_postgres(user, chats).await,
            _ => self.index_sqlite(user, chats).await,
        }
    }

    async fn index_postgres(&self, user: Option<&str>, chats: i64) -> RepoResult<IndexBatch> {
        let txn = self.db.connection().begin().await?;
        // The planner cannot see how few ranges the JSON holds (it assumes 100 of thousands of
        // items each), so on a large table the estimate passes `jit_above_cost` and
        // PostgreSQL spends about 250 ms compiling a statement that runs in 1 ms.
        txn.execute_unprepared("SET LOCAL jit = off").await?;
        // A user's catch-up locks the chats it needs, waiting for their writes; the background
        // batch locks no chat's row, and claims its chats with advisory locks, which appends
        // never take (see the module's comment).
        let sql = match user {
            Some(_) => format!("{PENDING_PG_SQL} LIMIT $2 FOR UPDATE"),
            None => claimed_pending_pg_sql(),
        };
        let pending = pending(&txn, DbBackend::Postgres, &sql, user, chats).await?;
        if pending.is_empty() {
            txn.commit().await?;
            return Ok(IndexBatch::EMPTY);
        }
        let ranges =
            serde_json::to_string(&pending).map_err(|err| RepoError::Invalid(err.to_string()))?;
        let statement = |sql: &str, ranges: String| {
            Statement::from_sql_and_values(DbBackend::Postgres, sql, [ranges.into()])
        };
        let written = if user.is_some() {
            txn.execute_raw(statement(INDEX_PG_SQL, ranges)).await?.rows_affected()
        } else {
            let row =
                txn.query_one_raw(statement(INDEX_UNLOCKED_PG_SQL, ranges)).await?.ok_or_else(
                    || RepoError::Invalid("the indexing statement answered no row".into()),
                )?;
            let whole: String = row.try_get("", "whole")?;
            txn.execute_raw(statement(MARK_PG_SQL, whole)).await?;
            u64::try_from(row.try_get::<i64>("", "entries")?).unwrap_or(0)
        };
        txn.commit().await?;
        Ok(IndexBatch::of(&pending, chats, written))
    }

    async fn index_sqlite(&self, user: Option<&str>, chats: i64) -> RepoResult<IndexBatch> {
        // Takes the file's write lock at once (see `Db::begin_write`).
        let (_writer, txn) = self.db.begin_write().await?;
        let pending = pending(&txn, DbBackend::Sqlite, PENDING_SQLITE_SQL, user, chats).await?;
        if pending.is_empty() {
            txn.commit().await?;
            return Ok(IndexBatch::EMPTY);
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
        let ranges =
            serde_json::to_string(&pending).map_err(|err| RepoError::Invalid(err.to_string()))?;
        let run = |sql: &str, value: Value| {
            Statement::from_sql_and_values(DbBackend::Sqlite, sql, [value])
        };
        let written =
            txn.execute_raw(run(INDEX_SQLITE_SQL, ranges.clone().into())).await?.rows_affected();
        txn.execute_raw(run(MARK_SQLITE_SQL, ranges.into())).await?;
        txn.execute_raw(run(FTS_SQLITE_SQL, last_entry.into())).await?;
        txn.commit().await?;
        Ok(IndexBatch::of(&pending, chats, written))
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
                last: row.try_get("", "last")?,
            })
        })
        .collect()
}
