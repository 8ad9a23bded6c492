//! Agent-session memory: the items of a chat, in the order their batches committed.
//!
//! A chat's items hold positions exactly `1..=item_count`. Writers take the lock on the chat's
//! row (the upsert that creates or touches it), then number their batch after `item_count`, so
//! a batch is contiguous, in commit order, and whole or absent. Reads are key ranges on
//! `(user_id, chat_id, position)`: the latest N items are `position > item_count - N`, which
//! costs N rows however long the history is. On SQLite the process-wide writer lock of [`Db`]
//! stands in for the row lock.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use entity::{chat, conversation_item, session_idempotency_key};
use sea_orm::sea_query::{Condition, Expr, InsertStatement, Query};
use sea_orm::sqlx::{self, PgConnection, Postgres, Sqlite, SqliteConnection};
use sea_orm::{
    AccessMode, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    IsolationLevel, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Statement,
    TransactionTrait,
};

use crate::chat_fields::{Metadata, Tags};
use crate::db::Held;
use crate::db::sqlx_error;
use crate::held::HeldConnections;
use crate::sqlite_direct::DirectConnections;
use crate::{Db, RepoError, RepoResult};

/// Rows per INSERT statement: well under PostgreSQL's 65,535 and SQLite's 32,766 bind
/// parameters (5 per row).
const INSERT_CHUNK: usize = 1000;

/// Appends a batch on PostgreSQL in one statement: creates or touches the chat, taking its
/// row lock and bumping `item_count` by the batch size (`$3`), then numbers the items (`$5`,
/// a text array, in order) after the count the chat had. `$1` user, `$2` chat, `$4` now.
/// Answers the number of items inserted.
const APPEND_SQL: &str = "\
WITH chat AS (
    INSERT INTO chats AS c (user_id, chat_id, title, is_active, item_count, created_at, updated_at)
    VALUES ($1, $2, NULL, TRUE, $3, $4, $4)
    ON CONFLICT (user_id, chat_id)
    DO UPDATE SET updated_at = EXCLUDED.updated_at, item_count = c.item_count + EXCLUDED.item_count,
                  revision = c.revision + 1
    RETURNING item_count, position_base
)
INSERT INTO conversation_items (user_id, chat_id, position, data, created_at)
SELECT $1, $2, chat.position_base + chat.item_count - $3 + item.n, item.data, $4
FROM chat, unnest($5::text[]) WITH ORDINALITY AS item (data, n)";

/// [`APPEND_SQL`] guarded by an idempotency key (`$6`, with the batch digest `$7`): the key
/// is recorded first, and the chat and its items are written only if it was new, so a repeat
/// inserts nothing. A concurrent insert of the same key waits for the first to commit.
const APPEND_ONCE_SQL: &str = "\
WITH new_key AS (
    INSERT INTO session_idempotency_keys
        (user_id, chat_id, idempotency_key, request_hash, added, created_at)
    VALUES ($1, $2, $6, $7, $3, $4)
    ON CONFLICT (user_id, chat_id, idempotency_key) DO NOTHING
    RETURNING added
), chat AS (
    INSERT INTO chats AS c (user_id, chat_id, title, is_active, item_count, created_at, updated_at)
    SELECT $1, $2, NULL, TRUE, $3, $4, $4 FROM new_key
    ON CONFLICT (user_id, chat_id)
    DO UPDATE SET updated_at = EXCLUDED.updated_at, item_count = c.item_count + EXCLUDED.item_count,
                  revision = c.revision + 1
    RETURNING item_count, position_base
)
INSERT INTO conversation_items (user_id, chat_id, position, data, created_at)
SELECT $1, $2, chat.position_base + chat.item_count - $3 + item.n, item.data, $4
FROM chat, unnest($5::text[]) WITH ORDINALITY AS item (data, n)";

/// Appends a batch on SQLite in one script, so in one hand-off to the thread that owns the
/// connection (sqlx runs a multi-statement query as one command). The caller holds the
/// process's writer lock; `BEGIN IMMEDIATE` takes the file's, so the count read while
/// numbering is the one the upsert just wrote. Parameters as in [`APPEND_SQL`], except `$5`:
/// the items as a JSON array of strings, which `json_each` yields in order with their index.
const SQLITE_APPEND_SQL: &str = "\
BEGIN IMMEDIATE;
INSERT INTO chats AS c (user_id, chat_id, title, is_active, item_count, created_at, updated_at)
VALUES ($1, $2, NULL, TRUE, $3, $4, $4)
ON CONFLICT (user_id, chat_id)
DO UPDATE SET updated_at = excluded.updated_at, item_count = c.item_count + excluded.item_count,
              revision = c.revision + 1;
INSERT INTO conversation_items (user_id, chat_id, position, data, created_at)
SELECT $1, $2,
       (SELECT position_base + item_count FROM chats WHERE user_id = $1 AND chat_id = $2) - $3 + item.key + 1,
       item.value, $4
FROM json_each($5) AS item;
COMMIT";

/// Creates or touches the chat of a batch on SQLite, on a direct connection (see
/// `sqlite_direct`), inside the transaction that appends the batch: bumps `item_count` by the
/// batch size (`?3`) and answers the position just before the batch. `?1` user, `?2` chat,
/// `?4` now. The caller holds the process's writer lock and `BEGIN IMMEDIATE` the file's, as
/// for [`SQLITE_APPEND_SQL`].
const SQLITE_TOUCH_CHAT_SQL: &str = "\
INSERT INTO chats AS c (user_id, chat_id, title, is_active, item_count, created_at, updated_at)
VALUES (?1, ?2, NULL, TRUE, ?3, ?4, ?4)
ON CONFLICT (user_id, chat_id)
DO UPDATE SET updated_at = excluded.updated_at, item_count = c.item_count + excluded.item_count,
              revision = c.revision + 1
RETURNING position_base + item_count - ?3";

/// One item of a batch, at `?3`; run once per item with the statement prepared once, which
/// on a direct connection costs less than encoding the batch for `json_each`.
const SQLITE_INSERT_ITEM_SQL: &str = "\
INSERT INTO conversation_items (user_id, chat_id, position, data, created_at)
VALUES (?1, ?2, ?3, ?4, ?5)";

/// What an idempotency key (`?3`) recorded when its first batch was appended.
const SQLITE_EARLIER_KEY_SQL: &str = "\
SELECT added, request_hash FROM session_idempotency_keys
WHERE user_id = ?1 AND chat_id = ?2 AND idempotency_key = ?3";

/// Records an idempotency key with its batch's digest and size, after the chat it refers to.
const SQLITE_RECORD_KEY_SQL: &str = "\
INSERT INTO session_idempotency_keys
    (user_id, chat_id, idempotency_key, request_hash, added, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// One batch of [`Sessions::add_items`], with what was worked out from it.
struct Batch<'a> {
    user: &'a str,
    session: &'a str,
    items: &'a [&'a str],
    added: i64,
    now: DateTime<Utc>,
}

/// The answer to a batch whose idempotency key an earlier request recorded (with digest
/// `earlier_hash`, adding `earlier_added` items): the same answer, or a conflict if the
/// batch differs.
fn answer_repeat(key: &IdempotencyKey, earlier_added: i64, earlier_hash: &str) -> RepoResult<u64> {
    if earlier_hash != key.request_hash {
        return Err(RepoError::Conflict(
            "this Idempotency-Key was already used with a different batch".into(),
        ));
    }
    Ok(u64::try_from(earlier_added).unwrap_or(0))
}

/// Runs `$statement`, an expression using `$connection`, on a held connection of whichever
/// database `$db` is: one sqlx query, written once and type-checked for each database.
macro_rules! on_held {
    ($db:expr, |$connection:ident| $statement:expr) => {
        match $db.held() {
            Held::Postgres(held) => held.run(async |$connection| $statement).await,
            Held::Sqlite(held) => held.run(async |$connection| $statement).await,
        }
    };
}

/// [`SQLITE_APPEND_SQL`] guarded by an idempotency key (`$6`, with the batch digest `$7`), in
/// one script as [`APPEND_ONCE_SQL`] is one statement. The chat is touched only if the key is
/// new, the items inserted only if the chat was (`changes()` counts the rows of the last
/// completed statement, not of the running one), and the key recorded last, because SQLite
/// checks its reference to the chat at the end of each statement. Its one row answers whether
/// the key was new (1) or a repeat (0), and what the key's first request recorded.
const SQLITE_APPEND_ONCE_SQL: &str = "\
BEGIN IMMEDIATE;
INSERT INTO chats AS c (user_id, chat_id, title, is_active, item_count, created_at, updated_at)
SELECT $1, $2, NULL, TRUE, $3, $4, $4
WHERE NOT EXISTS (SELECT 1 FROM session_idempotency_keys
                  WHERE user_id = $1 AND chat_id = $2 AND idempotency_key = $6)
ON CONFLICT (user_id, chat_id)
DO UPDATE SET updated_at = excluded.updated_at, item_count = c.item_count + excluded.item_count,
              revision = c.revision + 1;
INSERT INTO conversation_items (user_id, chat_id, position, data, created_at)
SELECT $1, $2,
       (SELECT position_base + item_count FROM chats WHERE user_id = $1 AND chat_id = $2) - $3 + item.key + 1,
       item.value, $4
FROM json_each($5) AS item WHERE changes() = 1;
INSERT INTO session_idempotency_keys
    (user_id, chat_id, idempotency_key, request_hash, added, created_at)
VALUES ($1, $2, $6, $7, $3, $4)
ON CONFLICT (user_id, chat_id, idempotency_key) DO NOTHING;
SELECT changes(), added, request_hash FROM session_idempotency_keys
WHERE user_id = $1 AND chat_id = $2 AND idempotency_key = $6;
COMMIT";

/// Appends `batch` in one `BEGIN IMMEDIATE` transaction on a direct SQLite connection (see
/// [`Sessions::add_items`]), with `now` as SQLite stores it. Answers what an earlier request
/// recorded for the idempotency key, when the key was taken; then nothing is written.
fn append_in_transaction(
    connection: &mut rusqlite::Connection,
    batch: &Batch<'_>,
    now: &str,
    idempotency: Option<&IdempotencyKey>,
) -> rusqlite::Result<Option<(i64, String)>> {
    use rusqlite::{OptionalExtension as _, params};
    let txn = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if let Some(key) = idempotency {
        let earlier = txn
            .prepare_cached(SQLITE_EARLIER_KEY_SQL)?
            .query_row(params![batch.user, batch.session, key.key], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        if earlier.is_some() {
            // Dropping the transaction rolls it back; it wrote nothing.
            return Ok(earlier);
        }
    }
    let before_first: i64 = txn
        .prepare_cached(SQLITE_TOUCH_CHAT_SQL)?
        .query_row(params![batch.user, batch.session, batch.added, now], |row| row.get(0))?;
    {
        let mut insert = txn.prepare_cached(SQLITE_INSERT_ITEM_SQL)?;
        for (position, item) in (before_first + 1..).zip(batch.items) {
            insert.execute(params![batch.user, batch.session, position, item, now])?;
        }
    }
    if let Some(key) = idempotency {
        txn.prepare_cached(SQLITE_RECORD_KEY_SQL)?.execute(params![
            batch.user,
            batch.session,
            key.key,
            key.request_hash,
            batch.added,
            now
        ])?;
    }
    txn.commit()?;
    Ok(None)
}

/// An `Idempotency-Key` and a digest of the batch it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: String,
}

/// The session operations of one database.
#[derive(Debug, Clone, Copy)]
pub struct Sessions<'a> {
    db: &'a Db,
}

impl Db {
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { db: self }
    }
}

/// Now, at the precision both databases store (microseconds), so values read back compare
/// equal to values written.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn of_session(user: &str, session: &str) -> Condition {
    Condition::all()
        .add(conversation_item::Column::UserId.eq(user))
        .add(conversation_item::Column::ChatId.eq(session))
}

fn chat_key(user: &str, session: &str) -> (String, String) {
    (user.to_owned(), session.to_owned())
}

/// An INSERT of a new `chats` row, active, with `item_count` items, created and updated `now`.
pub(crate) fn chat_insert(
    user: &str,
    chat_id: &str,
    title: Option<String>,
    item_count: i64,
    now: DateTime<Utc>,
    metadata: &Metadata,
    tags: &Tags,
) -> RepoResult<InsertStatement> {
    Ok(Query::insert()
        .into_table(chat::Entity)
        .columns([
            chat::Column::UserId,
            chat::Column::ChatId,
            chat::Column::Title,
            chat::Column::IsActive,
            chat::Column::ItemCount,
            chat::Column::CreatedAt,
            chat::Column::UpdatedAt,
            chat::Column::Metadata,
            chat::Column::Tags,
        ])
        .values([
            user.into(),
            chat_id.into(),
            title.into(),
            true.into(),
            item_count.into(),
            now.into(),
            now.into(),
            metadata.as_str().into(),
            tags.to_json().into(),
        ])
        .map_err(|err| RepoError::Invalid(err.to_string()))?
        .to_owned())
}

/// Sets which positions a chat's items hold (`position_base + 1 ..= position_base +
/// item_count`), counts a new revision of its items, and moves it to the top of its user's
/// list. Written out because `position_base` and `revision` are bookkeeping of this crate,
/// not fields of the chat entity.
pub(crate) async fn set_item_range(
    txn: &impl ConnectionTrait,
    user: &str,
    chat_id: &str,
    position_base: i64,
    item_count: i64,
) -> RepoResult<()> {
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "UPDATE chats SET item_count = $3, position_base = $4, revision = revision + 1, \
         updated_at = $5 WHERE user_id = $1 AND chat_id = $2",
        [user.into(), chat_id.into(), item_count.into(), position_base.into(), now().into()],
    ))
    .await?;
    Ok(())
}

/// Locks a chat's row and answers `(position_base, item_count)`, or `None` for no chat.
pub(crate) async fn lock_item_range(
    txn: &impl ConnectionTrait,
    user: &str,
    chat_id: &str,
) -> RepoResult<Option<(i64, i64)>> {
    Ok(chat::Entity::find_by_id(chat_key(user, chat_id))
        .select_only()
        .expr(Expr::cust("position_base"))
        .column(chat::Column::ItemCount)
        .lock_exclusive()
        .into_tuple()
        .one(txn)
        .await?)
}

/// Inserts `items` with positions from `first_position` on, in statements of
/// `INSERT_CHUNK` rows. The caller holds the chat's lock and keeps `item_count` in step.
///
/// These positions may have held items the search index has seen (a replaced conversation
/// or tail), so the chat's search mark goes back below them: the new items are indexed
/// afresh. (Appends need no such step: they write above the last position, and the mark is
/// never above it.)
pub(crate) async fn insert_items(
    txn: &impl ConnectionTrait,
    user: &str,
    chat_id: &str,
    first_position: i64,
    items: &[&str],
    now: DateTime<Utc>,
) -> RepoResult<()> {
    if !items.is_empty() {
        let lower = match txn.get_database_backend() {
            DbBackend::Postgres => "least",
            _ => "min",
        };
        txn.execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            format!(
                "UPDATE chats SET search_indexed = {lower}(search_indexed, $3) \
                 WHERE user_id = $1 AND chat_id = $2"
            ),
            [user.into(), chat_id.into(), (first_position - 1).into()],
        ))
        .await?;
    }
    for (chunk_index, chunk) in items.chunks(INSERT_CHUNK).enumerate() {
        let chunk_start = first_position + (chunk_index * INSERT_CHUNK) as i64;
        let mut insert = Query::insert();
        insert.into_table(conversation_item::Entity).columns([
            conversation_item::Column::UserId,
            conversation_item::Column::ChatId,
            conversation_item::Column::Position,
            conversation_item::Column::Data,
            conversation_item::Column::CreatedAt,
        ]);
        for (offset, item) in chunk.iter().enumerate() {
            insert
                .values([
                    user.into(),
                    chat_id.into(),
                    (chunk_start + offset as i64).into(),
                    (*item).into(),
                    now.into(),
                ])
                .map_err(|err| RepoError::Invalid(err.to_string()))?;
        }
        txn.execute(&insert).await?;
    }
    Ok(())
}

/// The newest `$3` items of a session (user `$1`, chat `$2`), oldest first: the positions
/// above `item_count - $3`, read in one statement so the count and the items agree. Both
/// databases take `$N` parameters. Written out rather than built with sea-query because it
/// runs on every agent turn, and building it cost more CPU than PostgreSQL spent answering.
const LATEST_ITEMS_SQL: &str = "\
SELECT data FROM conversation_items
WHERE user_id = $1 AND chat_id = $2
  AND position > (SELECT position_base + item_count FROM chats WHERE user_id = $1 AND chat_id = $2) - $3
ORDER BY position";

/// [`LATEST_ITEMS_SQL`] on PostgreSQL, with the range's upper end written out as well
/// (no item lies above it). Given both ends, the planner estimates the range at 0.5% of the
/// session instead of a third, whatever the parameters, and so every execution takes the
/// prepared statement's generic plan, planned once per connection. With one end, a session of
/// a few hundred thousand items was estimated past `jit_above_cost` (milliseconds of JIT
/// compilation for a 50-row index scan), and the `LIMIT $3` that kept the estimate down made
/// each execution's own plan look cheaper than the generic one: PostgreSQL planned the read
/// afresh at every call, 105 µs of planning for 70 µs of execution.
const LATEST_ITEMS_PG_SQL: &str = "\
SELECT data FROM conversation_items
WHERE user_id = $1 AND chat_id = $2
  AND position > (SELECT position_base + item_count FROM chats WHERE user_id = $1 AND chat_id = $2) - $3
  AND position <= (SELECT position_base + item_count FROM chats WHERE user_id = $1 AND chat_id = $2)
ORDER BY position";

fn latest_items_sql(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => LATEST_ITEMS_PG_SQL,
        _ => LATEST_ITEMS_SQL,
    }
}

/// [`LATEST_ITEMS_PG_SQL`] with the texts joined by commas in one row.
const LATEST_ITEMS_JOINED_PG_SQL: &str = "\
SELECT string_agg(data, ',' ORDER BY position) FROM conversation_items
WHERE user_id = $1 AND chat_id = $2
  AND position > (SELECT position_base + item_count FROM chats WHERE user_id = $1 AND chat_id = $2) - $3
  AND position <= (SELECT position_base + item_count FROM chats WHERE user_id = $1 AND chat_id = $2)";

/// [`LATEST_ITEMS_SQL`] with the texts joined by commas in one row, on SQLite.
const LATEST_ITEMS_JOINED_SQLITE_SQL: &str = "\
SELECT group_concat(data, ',' ORDER BY position) FROM conversation_items
WHERE user_id = $1 AND chat_id = $2
  AND position > (SELECT position_base + item_count FROM chats WHERE user_id = $1 AND chat_id = $2) - $3";

fn latest_items_joined_sql(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => LATEST_ITEMS_JOINED_PG_SQL,
        _ => LATEST_ITEMS_JOINED_SQLITE_SQL,
    }
}

fn latest_items_statement(
    backend: DbBackend,
    sql: &str,
    user: &str,
    session: &str,
    limit: u64,
) -> Statement {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    Statement::from_sql_and_values(backend, sql, [user.into(), session.into(), limit.into()])
}

/// The session reads of every agent turn on PostgreSQL, with the parameters they take (user,
/// session, limit), for checking how they are planned as prepared statements.
pub(crate) fn turn_reads_pg() -> [(&'static str, &'static str); 2] {
    [
        ("session latest items", LATEST_ITEMS_PG_SQL),
        ("session latest items joined", LATEST_ITEMS_JOINED_PG_SQL),
    ]
}

/// One page of a full read: the items after position `after`, oldest first.
fn items_after_query(
    user: &str,
    session: &str,
    after: i64,
    limit: u64,
) -> Select<conversation_item::Entity> {
    conversation_item::Entity::find()
        .select_only()
        .column(conversation_item::Column::Position)
        .column(conversation_item::Column::Data)
        .filter(of_session(user, session))
        .filter(conversation_item::Column::Position.gt(after))
        .order_by_asc(conversation_item::Column::Position)
        .limit(limit)
}

/// One page of a backwards read: the items before position `before`, newest first.
fn items_before_query(
    user: &str,
    session: &str,
    before: i64,
    limit: u64,
) -> Select<conversation_item::Entity> {
    conversation_item::Entity::find()
        .select_only()
        .column(conversation_item::Column::Position)
        .column(conversation_item::Column::Data)
        .filter(of_session(user, session))
        .filter(conversation_item::Column::Position.lt(before))
        .order_by_desc(conversation_item::Column::Position)
        .limit(limit)
}

/// The read statements of this module, for checking their query plans.
pub(crate) fn read_statements(backend: DbBackend) -> Vec<(&'static str, Statement)> {
    vec![
        (
            "session latest items",
            latest_items_statement(backend, latest_items_sql(backend), "u1", "s1", 50),
        ),
        (
            "session latest items joined",
            latest_items_statement(backend, latest_items_joined_sql(backend), "u1", "s1", 50),
        ),
        ("session full-read page", items_after_query("u1", "s1", 0, 500).build(backend)),
        ("session page before", items_before_query("u1", "s1", 1000, 50).build(backend)),
    ]
}

/// Reads one session page by page inside a read-only snapshot (see [`Sessions::reader`]).
#[derive(Debug)]
pub struct SessionReader {
    txn: DatabaseTransaction,
    user: String,
    session: String,
    after: i64,
}

impl SessionReader {
    /// The next `limit` items (fewer, or none, at the end).
    pub async fn next_page(&mut self, limit: u64) -> RepoResult<Vec<String>> {
        let page: Vec<(i64, String)> =
            items_after_query(&self.user, &self.session, self.after, limit)
                .into_tuple()
                .all(&self.txn)
                .await?;
        if let Some((position, _)) = page.last() {
            self.after = *position;
        }
        Ok(page.into_iter().map(|(_, item)| item).collect())
    }

    /// Ends the snapshot.
    pub async fn finish(self) -> RepoResult<()> {
        Ok(self.txn.commit().await?)
    }
}

impl Sessions<'_> {
    /// The newest `limit` items, oldest first, as stored JSON text.
    pub async fn latest_items(
        &self,
        user: &str,
        session: &str,
        limit: u64,
    ) -> RepoResult<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if let Some(direct) = self.db.sqlite_direct() {
            return direct.run(|connection| {
                connection
                    .prepare_cached(LATEST_ITEMS_SQL)?
                    .query_map(rusqlite::params![user, session, limit], |row| row.get(0))?
                    .collect()
            });
        }
        let sql = latest_items_sql(self.db.db_backend());
        on_held!(self.db, |connection| {
            sqlx::query_scalar(sql).bind(user).bind(session).bind(limit).fetch_all(connection).await
        })
        .map_err(sqlx_error)
    }

    /// The newest `limit` items, oldest first, as their stored JSON texts joined by commas:
    /// the inside of a JSON array, made by the database, so one row comes back instead of
    /// `limit`. Empty for an unknown or empty session.
    pub async fn latest_items_joined(
        &self,
        user: &str,
        session: &str,
        limit: u64,
    ) -> RepoResult<String> {
        if limit == 0 {
            return Ok(String::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if let Some(direct) = self.db.sqlite_direct() {
            let joined: Option<String> = direct.run(|connection| {
                connection
                    .prepare_cached(LATEST_ITEMS_JOINED_SQLITE_SQL)?
                    .query_row(rusqlite::params![user, session, limit], |row| row.get(0))
            })?;
            return Ok(joined.unwrap_or_default());
        }
        let sql = latest_items_joined_sql(self.db.db_backend());
        let joined: Option<String> = on_held!(self.db, |connection| {
            sqlx::query_scalar(sql).bind(user).bind(session).bind(limit).fetch_one(connection).await
        })
        .map_err(sqlx_error)?;
        Ok(joined.unwrap_or_default())
    }

    /// Every item, oldest first, in one statement (a consistent snapshot). For callers that
    /// want the whole history in memory anyway; the HTTP API streams it page by page instead.
    pub async fn all_items(&self, user: &str, session: &str) -> RepoResult<Vec<String>> {
        Ok(conversation_item::Entity::find()
            .select_only()
            .column(conversation_item::Column::Data)
            .filter(of_session(user, session))
            .order_by_asc(conversation_item::Column::Position)
            .into_tuple()
            .all(self.db.connection())
            .await?)
    }

    /// How many items the session holds (its newest position); `0` for an unknown session.
    /// A full read pages up to this bound, so it returns what had committed when it began.
    pub async fn item_count(&self, user: &str, session: &str) -> RepoResult<i64> {
        let count: Option<i64> = chat::Entity::find_by_id(chat_key(user, session))
            .select_only()
            .column(chat::Column::ItemCount)
            .into_tuple()
            .one(self.db.connection())
            .await?;
        Ok(count.unwrap_or(0))
    }

    /// Up to `limit` items after position `after`, oldest first, with their positions, in
    /// one statement.
    pub async fn items_after(
        &self,
        user: &str,
        session: &str,
        after: i64,
        limit: u64,
    ) -> RepoResult<Vec<(i64, String)>> {
        Ok(items_after_query(user, session, after, limit)
            .into_tuple()
            .all(self.db.connection())
            .await?)
    }

    /// Up to `limit` items just before position `before`, oldest first, with their positions:
    /// one page of a session read backwards (the console scrolling up). A `before` past the
    /// newest item gives the newest `limit`. One key-range read on the primary key, newest
    /// first with a LIMIT, so it costs `limit` rows however long the history is.
    pub async fn items_before(
        &self,
        user: &str,
        session: &str,
        before: i64,
        limit: u64,
    ) -> RepoResult<Vec<(i64, String)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut page: Vec<(i64, String)> = items_before_query(user, session, before, limit)
            .into_tuple()
            .all(self.db.connection())
            .await?;
        page.reverse();
        Ok(page)
    }

    /// A reader of the whole session, page by page, from one snapshot: writes that commit
    /// while it reads are not seen, so a long read never mixes an old list with a new one.
    pub async fn reader(&self, user: &str, session: &str) -> RepoResult<SessionReader> {
        let txn = self
            .db
            .connection()
            .begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly))
            .await?;
        Ok(SessionReader { txn, user: user.to_owned(), session: session.to_owned(), after: 0 })
    }

    /// Appends `items` (JSON object texts) as one contiguous batch, creating the chat if it
    /// does not exist. With an idempotency key already used on this session, adds nothing and
    /// returns what the first request added; used with a different batch, that is a conflict.
    ///
    /// Either way it is one statement on PostgreSQL and one script on SQLite, on a held
    /// connection: the hottest write of an agent turn pays one round trip or hand-off.
    pub async fn add_items(
        &self,
        user: &str,
        session: &str,
        items: &[&str],
        idempotency: Option<&IdempotencyKey>,
    ) -> RepoResult<u64> {
        // An empty batch is a no-op, with or without a key: nothing to create or remember.
        if items.is_empty() {
            return Ok(0);
        }
        let added = i64::try_from(items.len())
            .map_err(|_| RepoError::Invalid("too many items in one batch".into()))?;
        let batch = Batch { user, session, items, added, now: now() };
        let appended = if let Some(direct) = self.db.sqlite_direct() {
            self.append_directly(direct, &batch, idempotency).await
        } else {
            match self.db.held() {
                Held::Postgres(held) => self.append_on_postgres(held, &batch, idempotency).await,
                Held::Sqlite(held) => self.append_on_sqlite(held, &batch, idempotency).await,
            }
        };
        if appended.is_ok() {
            self.db.search_index().wake();
        }
        appended
    }

    /// [`Self::add_items`] on PostgreSQL: one statement, so one round trip and no explicit
    /// transaction (a statement is atomic on its own). It takes the chat's row lock in the
    /// upsert before it numbers the batch, like a transaction would, so batches stay whole
    /// and contiguous. With a key, the key is recorded first and the rest only happens if it
    /// was new; a concurrent request with the same key waits on that insert and then finds
    /// the key taken.
    async fn append_on_postgres(
        &self,
        held: &HeldConnections<Postgres>,
        batch: &Batch<'_>,
        idempotency: Option<&IdempotencyKey>,
    ) -> RepoResult<u64> {
        let append = async |connection: &mut PgConnection| {
            let sql = if idempotency.is_some() { APPEND_ONCE_SQL } else { APPEND_SQL };
            let mut query = sqlx::query(sql)
                .bind(batch.user)
                .bind(batch.session)
                .bind(batch.added)
                .bind(batch.now)
                .bind(batch.items);
            if let Some(key) = idempotency {
                query = query.bind(key.key.as_str()).bind(key.request_hash.as_str());
            }
            query.execute(connection).await
        };
        let inserted = held.run(append).await.map_err(sqlx_error)?.rows_affected();
        if inserted > 0 {
            return Ok(inserted);
        }
        // Nothing inserted: the key was recorded by an earlier request. Answer as it did.
        let key = idempotency
            .ok_or_else(|| RepoError::Invalid("a non-empty batch inserted nothing".into()))?;
        let earlier = session_idempotency_key::Entity::find_by_id((
            batch.user.to_owned(),
            batch.session.to_owned(),
            key.key.clone(),
        ))
        .one(self.db.connection())
        .await?
        .ok_or_else(|| RepoError::Invalid("an idempotency key vanished while in use".into()))?;
        answer_repeat(key, earlier.added, &earlier.request_hash)
    }

    /// [`Self::add_items`] on a SQLite file: one synchronous call on the request's thread (see
    /// `sqlite_direct`), under the process's writer lock. A repeated idempotency key is found
    /// first and the transaction ends without writing; otherwise the chat, the items and then
    /// the key (which refers to the chat) are written and committed together.
    async fn append_directly(
        &self,
        direct: &DirectConnections,
        batch: &Batch<'_>,
        idempotency: Option<&IdempotencyKey>,
    ) -> RepoResult<u64> {
        // As sqlx writes a time to SQLite, so both kinds of connection store the same text.
        let now = batch.now.to_rfc3339_opts(SecondsFormat::AutoSi, false);
        let _writer = self.db.write_guard().await;
        let earlier =
            direct.run(|connection| append_in_transaction(connection, batch, &now, idempotency))?;
        match (idempotency, earlier) {
            (Some(key), Some((earlier_added, earlier_hash))) => {
                answer_repeat(key, earlier_added, &earlier_hash)
            }
            _ => Ok(u64::try_from(batch.added).unwrap_or(0)),
        }
    }

    /// [`Self::add_items`] on an in-memory SQLite database, which only the pool's connections
    /// share: one script, so one hand-off to the connection's thread, under the process's
    /// writer lock (see [`SQLITE_APPEND_SQL`]).
    async fn append_on_sqlite(
        &self,
        held: &HeldConnections<Sqlite>,
        batch: &Batch<'_>,
        idempotency: Option<&IdempotencyKey>,
    ) -> RepoResult<u64> {
        let items = serde_json::to_string(batch.items)
            .map_err(|err| RepoError::Invalid(err.to_string()))?;
        let _writer = self.db.write_guard().await;
        let append = async |connection: &mut SqliteConnection| {
            let sql =
                if idempotency.is_some() { SQLITE_APPEND_ONCE_SQL } else { SQLITE_APPEND_SQL };
            let mut query = sqlx::query_as(sql)
                .bind(batch.user)
                .bind(batch.session)
                .bind(batch.added)
                .bind(batch.now)
                .bind(items.as_str());
            if let Some(key) = idempotency {
                query = query.bind(key.key.as_str()).bind(key.request_hash.as_str());
            }
            // Every row, never just the first: sqlx stops a script at the row limit it is
            // given, which would leave its transaction open.
            query.fetch_all(connection).await
        };
        let answers: Vec<(i64, i64, String)> = held.run(append).await.map_err(sqlx_error)?;
        let Some(key) = idempotency else {
            return Ok(u64::try_from(batch.added).unwrap_or(0));
        };
        let (new_key, earlier_added, earlier_hash) = answers
            .into_iter()
            .next()
            .ok_or_else(|| RepoError::Invalid("an idempotency key vanished while in use".into()))?;
        if new_key == 1 {
            return Ok(u64::try_from(batch.added).unwrap_or(0));
        }
        answer_repeat(key, earlier_added, &earlier_hash)
    }

    /// Forgets idempotency keys recorded before `cutoff`; returns how many. A retry later than
    /// that is treated as a new batch.
    pub async fn prune_idempotency_keys(&self, cutoff: DateTime<Utc>) -> RepoResult<u64> {
        let _writer = self.db.write_guard().await;
        let deleted = session_idempotency_key::Entity::delete_many()
            .filter(session_idempotency_key::Column::CreatedAt.lt(cutoff))
            .exec(self.db.connection())
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Removes and returns the newest item; `None` when the session is empty or unknown.
    pub async fn pop_item(&self, user: &str, session: &str) -> RepoResult<Option<String>> {
        let (_writer, txn) = self.db.begin_write().await?;
        // Concurrent pops queue on the chat's row, so each claims a different item.
        let Some((base, count)) = lock_item_range(&txn, user, session).await? else {
            return Ok(None);
        };
        if count == 0 {
            return Ok(None);
        }
        let newest = base + count;
        let item =
            conversation_item::Entity::find_by_id((user.to_owned(), session.to_owned(), newest))
                .one(&txn)
                .await?
                .ok_or_else(|| {
                    RepoError::Db(sea_orm::DbErr::RecordNotFound(format!(
                        "session item {newest} missing below item_count"
                    )))
                })?;
        crate::memory::detach_branches(&txn, user, session, newest).await?;
        conversation_item::Entity::delete_by_id((user.to_owned(), session.to_owned(), newest))
            .exec(&txn)
            .await?;
        set_item_range(&txn, user, session, base, count - 1).await?;
        txn.commit().await?;
        Ok(Some(item.data))
    }

    /// Removes every item of the session; the chat itself stays. Unknown sessions are a no-op.
    pub async fn clear(&self, user: &str, session: &str) -> RepoResult<()> {
        let (_writer, txn) = self.db.begin_write().await?;
        let locked =
            chat::Entity::find_by_id(chat_key(user, session)).lock_exclusive().one(&txn).await?;
        if locked.is_none() {
            return Ok(());
        }
        crate::memory::detach_branches(&txn, user, session, 0).await?;
        conversation_item::Entity::delete_many()
            .filter(of_session(user, session))
            .exec(&txn)
            .await?;
        set_item_range(&txn, user, session, 0, 0).await?;
        txn.commit().await?;
        Ok(())
    }
}
