//! Advanced agent memory: conditional tail replace, branches, turns and run usage.
//!
//! # Storage
//!
//! A session ("main") keeps its items in `conversation_items`, as the plain session routes
//! always did; search and export read them there. Two bookkeeping columns of `chats` make
//! replace and prune cheap without renumbering:
//!
//! - `position_base`: main's items hold positions `position_base + 1 ..= position_base +
//!   item_count`. A prefix prune of `k` items deletes them and raises the base by `k`; the
//!   latest-N read stays one key range, `position > position_base + item_count - N`, and
//!   `item_count` stays the exact number of items.
//! - `revision`: bumped by every write to the items (append, pop, clear, replace, a new
//!   conversation through `PUT /chats`). A conditional replace is a compare-and-set on it: the
//!   `UPDATE ... WHERE revision = $expected` that claims the new revision is the first
//!   statement of its transaction, so it takes the row lock on PostgreSQL and the write lock
//!   on SQLite before anything is read, and two server instances cannot both apply a replace
//!   made from the same snapshot.
//!
//! A branch (`session_branches`) is main's items in `(position_base, fork_position]`, which it
//! shares without copying, followed by its own items (`session_branch_items`) at the
//! positions after `fork_position`, up to `position_base + item_count`. So forking costs one
//! row however long the history is, and a branch's latest-N read is at most two key ranges.
//! Writes on a branch only change its own row and items: a prune raises its base, a pop or
//! replace that reaches below its fork point lowers `fork_position`. Main never changes under
//! a branch either: before main deletes items that a branch shares (pop, clear, replace,
//! prune, a new conversation), those items are copied to the branch once
//! ([`detach_branches`]), which is the only copy of shared history there is. A deleted
//! branch keeps its row, marked `deleted`, so its name stays reserved, as in the SDK.
//!
//! # Turns
//!
//! A turn starts at each item with `"role": "user"`, as in the SDK's `AdvancedSQLiteSession`.
//! Turns are worked out from the items when read, page by page, so writes pay nothing for
//! them; reading the latest N whole turns reads back from the end only as far as their
//! first user message.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait, Value,
};
use serde_json::Value as Json;

use crate::sessions::{insert_items, now};

mod branches;
mod turns;
mod usage;

use crate::{Db, RepoError, RepoResult};
pub use branches::BranchInfo;
pub use turns::Turn;
pub use usage::{TurnUsage, UsageTotals};

/// The one branch that is the session itself.
pub const MAIN_BRANCH: &str = "main";

/// Rows per statement when inserting or scanning a line's items.
const PAGE: i64 = 1000;

/// Which line of a session an operation reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// The session itself.
    Main,
    /// A branch other than `main`.
    Branch(&'a str),
}

impl<'a> Line<'a> {
    /// `main` (or none) is the session itself, any other name a branch.
    pub fn named(name: Option<&'a str>) -> Self {
        match name {
            None | Some(MAIN_BRANCH) => Line::Main,
            Some(name) => Line::Branch(name),
        }
    }

    pub fn name(&self) -> &'a str {
        match self {
            Line::Main => MAIN_BRANCH,
            Line::Branch(name) => name,
        }
    }
}

/// Where a line's items are, as of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineState {
    /// Counts the writes to the line's items; `0` for a session that does not exist.
    pub revision: i64,
    /// The line's items hold positions `position_base + 1 ..= position_base + item_count`.
    pub position_base: i64,
    pub item_count: i64,
    /// Main's items up to this position belong to the line (main itself: all of them).
    pub fork_position: i64,
    pub created_at: Option<DateTime<Utc>>,
}

impl LineState {
    /// The newest position (the base when the line is empty).
    pub fn last_position(&self) -> i64 {
        self.position_base + self.item_count
    }
}

/// One stored item of a line, with its position and when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    pub position: i64,
    pub data: String,
    pub created_at: DateTime<Utc>,
}

/// Part of a line read at one revision.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: LineState,
    pub items: Vec<LineItem>,
}

/// A conditional tail replace: applied only at `revision`.
#[derive(Debug, Clone, Copy)]
pub struct TailReplace<'a> {
    pub revision: i64,
    /// The items after this position are replaced by `items`.
    pub after_position: i64,
    /// How many leading items to remove as well (all of them at or before `after_position`).
    pub prune_leading: i64,
    pub items: &'a [&'a str],
}

/// What a line holds after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    pub revision: i64,
    pub item_count: i64,
}

/// The memory operations of one database.
#[derive(Debug, Clone, Copy)]
pub struct Memory<'a> {
    db: &'a Db,
}

impl Db {
    pub fn memory(&self) -> Memory<'_> {
        Memory { db: self }
    }
}

fn stmt(txn: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(txn.get_database_backend(), sql, values)
}

fn int(row: &sea_orm::QueryResult, column: &str) -> RepoResult<i64> {
    Ok(row.try_get::<i64>("", column)?)
}

/// Copies to every live branch of the chat the main items it shares at or above `from`
/// and forgets where main's turns at or above `from` started
/// (all of its shared items, so the branch owns a contiguous run again) and ends the sharing.
/// Called by every main write that deletes items at or above `from`, in its transaction,
/// after it locked the chat: so main can never change a branch's history.
pub(crate) async fn detach_branches(
    txn: &impl ConnectionTrait,
    user: &str,
    chat: &str,
    from: i64,
) -> RepoResult<()> {
    const SHARING: &str = "b.user_id = $1 AND b.chat_id = $2 AND NOT b.deleted \
        AND b.fork_position > b.position_base AND b.fork_position >= $3";
    let copy = format!(
        "INSERT INTO session_branch_items (user_id, chat_id, branch_id, position, data, created_at) \
         SELECT b.user_id, b.chat_id, b.branch_id, i.position, i.data, i.created_at \
         FROM session_branches b JOIN conversation_items i \
           ON i.user_id = b.user_id AND i.chat_id = b.chat_id \
          AND i.position > b.position_base AND i.position <= b.fork_position \
         WHERE {SHARING}"
    );
    txn.execute_raw(stmt(txn, &copy, vec![user.into(), chat.into(), from.into()])).await?;
    let end =
        format!("UPDATE session_branches AS b SET fork_position = position_base WHERE {SHARING}");
    txn.execute_raw(stmt(txn, &end, vec![user.into(), chat.into(), from.into()])).await?;
    // Main's turns from `from` on are no longer where they were.
    txn.execute_raw(stmt(
        txn,
        "DELETE FROM session_turn_starts WHERE user_id = $1 AND chat_id = $2 AND position >= $3",
        vec![user.into(), chat.into(), from.into()],
    ))
    .await?;
    Ok(())
}

/// The state of `line`; for main, an absent chat is an empty line at revision 0. A branch
/// that does not exist (or was deleted) is not found.
async fn line_state(
    txn: &impl ConnectionTrait,
    user: &str,
    chat: &str,
    line: Line<'_>,
) -> RepoResult<LineState> {
    match line {
        Line::Main => {
            let row = txn
                .query_one_raw(stmt(
                    txn,
                    "SELECT revision, position_base, item_count, created_at FROM chats \
                     WHERE user_id = $1 AND chat_id = $2",
                    vec![user.into(), chat.into()],
                ))
                .await?;
            let Some(row) = row else {
                return Ok(LineState {
                    revision: 0,
                    position_base: 0,
                    item_count: 0,
                    fork_position: 0,
                    created_at: None,
                });
            };
            let position_base = int(&row, "position_base")?;
            let item_count = int(&row, "item_count")?;
            Ok(LineState {
                revision: int(&row, "revision")?,
                position_base,
                item_count,
                fork_position: position_base + item_count,
                created_at: Some(row.try_get("", "created_at")?),
            })
        }
        Line::Branch(name) => {
            let row = txn
                .query_one_raw(stmt(
                    txn,
                    "SELECT revision, position_base, item_count, fork_position, created_at \
                     FROM session_branches \
                     WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3 AND NOT deleted",
                    vec![user.into(), chat.into(), name.into()],
                ))
                .await?
                .ok_or_else(|| RepoError::NotFound(format!("no branch {name:?}")))?;
            Ok(LineState {
                revision: int(&row, "revision")?,
                position_base: int(&row, "position_base")?,
                item_count: int(&row, "item_count")?,
                fork_position: int(&row, "fork_position")?,
                created_at: Some(row.try_get("", "created_at")?),
            })
        }
    }
}

fn line_items(rows: Vec<sea_orm::QueryResult>) -> RepoResult<Vec<LineItem>> {
    rows.into_iter()
        .map(|row| {
            Ok(LineItem {
                position: int(&row, "position")?,
                data: row.try_get("", "data")?,
                created_at: row.try_get("", "created_at")?,
            })
        })
        .collect()
}

/// Which of a line's items [`read_range`] reads.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Positions in `(low, high]`.
    bounds: (i64, i64),
    limit: i64,
    newest_first: bool,
    /// Only messages from the user (the starts of turns).
    users_only: bool,
}

/// The items of `line` (in `state`) with positions in `(low, high]`, at most `limit`, the
/// oldest first (or the newest first with `newest_first`), in at most two key-range reads:
/// the main items the line shares and its own.
async fn read_range(
    txn: &impl ConnectionTrait,
    user: &str,
    chat: &str,
    line: Line<'_>,
    state: &LineState,
    window: Window,
) -> RepoResult<Vec<LineItem>> {
    if !window.users_only {
        return read_range_sql(txn, user, chat, line, state, window).await;
    }
    // The database narrows the rows down to those mentioning "user" (text, so any stored
    // item is fine: PostgreSQL's JSON functions refuse some texts that JSON allows, such as
    // lone surrogate escapes); each is then checked here, page by page.
    let mut found = Vec::new();
    let (mut low, mut high) = window.bounds;
    loop {
        let page = Window { bounds: (low, high), limit: PAGE, ..window };
        let rows = read_range_sql(txn, user, chat, line, state, page).await?;
        let full = rows.len() as i64 == PAGE;
        let Some(last) = rows.last().map(|item| item.position) else { return Ok(found) };
        for item in rows {
            if starts_turn_text(&item.data) {
                found.push(item);
                if found.len() as i64 >= window.limit {
                    return Ok(found);
                }
            }
        }
        if !full {
            return Ok(found);
        }
        if window.newest_first {
            high = last - 1;
        } else {
            low = last;
        }
    }
}

/// [`read_range`] as SQL; with `users_only`, only a prefilter (see [`user_message_sql`]).
async fn read_range_sql(
    txn: &impl ConnectionTrait,
    user: &str,
    chat: &str,
    line: Line<'_>,
    state: &LineState,
    window: Window,
) -> RepoResult<Vec<LineItem>> {
    let Window { bounds: (low, high), limit, newest_first, users_only } = window;
    let low = low.max(state.position_base);
    let only = if users_only { user_message_sql(txn.get_database_backend()) } else { "TRUE" };
    let high = high.min(state.last_position());
    let order = if newest_first { "DESC" } else { "ASC" };
    let shared = async |low: i64, high: i64, limit: i64| -> RepoResult<Vec<LineItem>> {
        if low >= high || limit <= 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT position, data, created_at FROM conversation_items \
             WHERE user_id = $1 AND chat_id = $2 AND position > $3 AND position <= $4 \
               AND {only} ORDER BY position {order} LIMIT $5"
        );
        let values = vec![user.into(), chat.into(), low.into(), high.into(), limit.into()];
        line_items(txn.query_all_raw(stmt(txn, &sql, values)).await?)
    };
    let Line::Branch(name) = line else {
        return shared(low, high, limit).await;
    };
    let own = async |low: i64, high: i64, limit: i64| -> RepoResult<Vec<LineItem>> {
        if low >= high || limit <= 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT position, data, created_at FROM session_branch_items \
             WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3 \
               AND position > $4 AND position <= $5 \
               AND {only} ORDER BY position {order} LIMIT $6"
        );
        let values =
            vec![user.into(), chat.into(), name.into(), low.into(), high.into(), limit.into()];
        line_items(txn.query_all_raw(stmt(txn, &sql, values)).await?)
    };
    let fork = state.fork_position;
    let (shared_range, own_range) = ((low, high.min(fork)), (low.max(fork), high));
    if newest_first {
        let mut items = own(own_range.0, own_range.1, limit).await?;
        let rest = limit - items.len() as i64;
        items.extend(shared(shared_range.0, shared_range.1, rest).await?);
        Ok(items)
    } else {
        let mut items = shared(shared_range.0, shared_range.1, limit).await?;
        let rest = limit - items.len() as i64;
        items.extend(own(own_range.0, own_range.1, rest).await?);
        Ok(items)
    }
}

/// A condition on a row's `data` that holds for every message from the user (and for few
/// other items): the text `"user"` appears in it. [`starts_turn_text`] decides.
fn user_message_sql(_backend: DbBackend) -> &'static str {
    "data LIKE '%\"user\"%'"
}

/// The one field a turn check reads, left as its raw text (so any other content is fine).
#[derive(serde::Deserialize)]
struct RoleOnly<'a> {
    #[serde(borrow)]
    role: Option<&'a serde_json::value::RawValue>,
}

/// Whether a stored item's text is a message from the user, which starts a turn.
pub(crate) fn starts_turn_text(data: &str) -> bool {
    serde_json::from_str::<RoleOnly<'_>>(data)
        .ok()
        .and_then(|item| item.role)
        .is_some_and(|role| role.get() == "\"user\"")
}

/// Inserts `items` as a branch's own items from `first_position` on.
async fn insert_branch_items(
    txn: &impl ConnectionTrait,
    user: &str,
    chat: &str,
    branch: &str,
    first_position: i64,
    items: &[&str],
    now: DateTime<Utc>,
) -> RepoResult<()> {
    for (index, chunk) in items.chunks(PAGE as usize).enumerate() {
        let start = first_position + index as i64 * PAGE;
        let mut sql = String::from(
            "INSERT INTO session_branch_items \
             (user_id, chat_id, branch_id, position, data, created_at) VALUES ",
        );
        let mut values: Vec<Value> = vec![user.into(), chat.into(), branch.into(), now.into()];
        for (offset, item) in chunk.iter().enumerate() {
            if offset > 0 {
                sql.push(',');
            }
            let at = values.len();
            sql.push_str(&format!("($1, $2, $3, ${}, ${}, $4)", at + 1, at + 2));
            values.push((start + offset as i64).into());
            values.push((*item).into());
        }
        txn.execute_raw(stmt(txn, &sql, values)).await?;
    }
    Ok(())
}

/// Locks `line` if it is still at revision `expected` (at any revision with `None`) and
/// counts `bump` (0 or 1) new revisions of it; answers its state before, or `None` when it
/// changed (or does not exist). The first statement of a write, so the lock comes before any
/// read: PostgreSQL's row lock, and SQLite's write lock across processes.
async fn claim(
    txn: &impl ConnectionTrait,
    user: &str,
    chat: &str,
    line: Line<'_>,
    expected: Option<i64>,
    bump: i64,
) -> RepoResult<Option<LineState>> {
    let mut values: Vec<Value> = vec![user.into(), chat.into()];
    let mut sql = String::from("UPDATE ");
    sql.push_str(if line == Line::Main { "chats" } else { "session_branches" });
    sql.push_str(&format!(" SET revision = revision + {bump}"));
    if bump > 0 {
        values.push(now().into());
        sql.push_str(&format!(", updated_at = ${}", values.len()));
    }
    sql.push_str(" WHERE user_id = $1 AND chat_id = $2");
    if let Line::Branch(name) = line {
        values.push(name.into());
        sql.push_str(&format!(" AND branch_id = ${} AND NOT deleted", values.len()));
    }
    if let Some(expected) = expected {
        sql.push_str(&format!(" AND revision = ${}", values.len() + 1));
        values.push(expected.into());
    }
    sql.push_str(match line {
        Line::Main => {
            " RETURNING revision, position_base, item_count, \
             position_base + item_count AS fork_position, created_at"
        }
        Line::Branch(_) => {
            " RETURNING revision, position_base, item_count, fork_position, created_at"
        }
    });
    let Some(row) = txn.query_one_raw(stmt(txn, &sql, values)).await? else {
        return Ok(None);
    };
    Ok(Some(LineState {
        revision: int(&row, "revision")? - bump,
        position_base: int(&row, "position_base")?,
        item_count: int(&row, "item_count")?,
        fork_position: int(&row, "fork_position")?,
        created_at: Some(row.try_get("", "created_at")?),
    }))
}

/// Records where a branch's items now are (its revision was claimed already).
async fn set_branch_range(
    txn: &impl ConnectionTrait,
    user: &str,
    chat: &str,
    branch: &str,
    state: &LineState,
) -> RepoResult<()> {
    txn.execute_raw(stmt(
        txn,
        "UPDATE session_branches SET position_base = $4, item_count = $5, fork_position = $6 \
         WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3",
        vec![
            user.into(),
            chat.into(),
            branch.into(),
            state.position_base.into(),
            state.item_count.into(),
            state.fork_position.into(),
        ],
    ))
    .await?;
    Ok(())
}

impl Memory<'_> {
    async fn write_txn(&self) -> RepoResult<DatabaseTransaction> {
        Ok(self.db.connection().begin().await?)
    }

    async fn read_txn(&self) -> RepoResult<DatabaseTransaction> {
        // One snapshot for the state and the items, so they agree.
        Ok(self
            .db
            .connection()
            .begin_with_config(
                Some(sea_orm::IsolationLevel::RepeatableRead),
                Some(sea_orm::AccessMode::ReadOnly),
            )
            .await?)
    }

    pub fn backend(&self) -> DbBackend {
        self.db.db_backend()
    }

    /// The state of a line (see [`LineState`]).
    pub async fn state(&self, user: &str, chat: &str, line: Line<'_>) -> RepoResult<LineState> {
        let txn = self.read_txn().await?;
        let state = line_state(&txn, user, chat, line).await?;
        txn.commit().await?;
        Ok(state)
    }

    /// A line's latest `limit` items, or with `after` the `limit` items after that position,
    /// oldest first, with the revision they were read at.
    pub async fn snapshot(
        &self,
        user: &str,
        chat: &str,
        line: Line<'_>,
        limit: i64,
        after: Option<i64>,
    ) -> RepoResult<Snapshot> {
        let txn = self.read_txn().await?;
        let state = line_state(&txn, user, chat, line).await?;
        // After a position, or else the latest `limit` items.
        let low = after.unwrap_or_else(|| state.last_position().saturating_sub(limit));
        let window =
            Window { bounds: (low, i64::MAX), limit, newest_first: false, users_only: false };
        let items = read_range(&txn, user, chat, line, &state, window).await?;
        txn.commit().await?;
        Ok(Snapshot { state, items })
    }

    /// Items of a line in `(low, high]`, up to `limit`, oldest or newest first.
    pub async fn range(
        &self,
        user: &str,
        chat: &str,
        line: Line<'_>,
        bounds: (i64, i64),
        limit: i64,
        newest_first: bool,
    ) -> RepoResult<(LineState, Vec<LineItem>)> {
        let txn = self.read_txn().await?;
        let state = line_state(&txn, user, chat, line).await?;
        let items = read_range(
            &txn,
            user,
            chat,
            line,
            &state,
            Window { bounds, limit, newest_first, users_only: false },
        )
        .await?;
        txn.commit().await?;
        Ok((state, items))
    }

    /// Replaces the items after `change.after_position` by `change.items` and removes the
    /// first `change.prune_leading` items, in one transaction, only if the line is still at
    /// `change.revision`: otherwise a conflict, and nothing changes.
    pub async fn replace_tail(
        &self,
        user: &str,
        chat: &str,
        line: Line<'_>,
        change: TailReplace<'_>,
    ) -> RepoResult<Replaced> {
        let _writer = self.db.write_guard().await;
        let txn = self.write_txn().await?;
        let Some(before) = claim(&txn, user, chat, line, Some(change.revision), 1).await? else {
            // Another user's session, or none: not found, as everywhere.
            if line_state(&txn, user, chat, line).await?.created_at.is_none() {
                return Err(RepoError::NotFound(format!("no session {chat:?}")));
            }
            return Err(RepoError::Conflict(format!(
                "the session changed since revision {}; nothing was replaced",
                change.revision
            )));
        };
        let new_base = before.position_base + change.prune_leading;
        if change.prune_leading < 0
            || change.after_position < new_base
            || change.after_position > before.last_position()
        {
            return Err(RepoError::Invalid(format!(
                "after_position must be between the last pruned position ({new_base}) and the \
                 last position ({}), and prune_leading at least 0",
                before.last_position()
            )));
        }
        let added = i64::try_from(change.items.len())
            .map_err(|_| RepoError::Invalid("too many items".into()))?;
        let now = now();
        let after = LineState {
            revision: before.revision + 1,
            position_base: new_base,
            item_count: change.after_position - new_base + added,
            fork_position: before.fork_position.min(change.after_position),
            created_at: before.created_at,
        };
        match line {
            Line::Main => {
                if change.prune_leading > 0 {
                    detach_branches(&txn, user, chat, before.position_base + 1).await?;
                } else {
                    detach_branches(&txn, user, chat, change.after_position + 1).await?;
                }
                // Two key ranges, each through the primary key (an OR of them may not be).
                let values = |bound: i64| vec![user.into(), chat.into(), bound.into()];
                if change.prune_leading > 0 {
                    txn.execute_raw(stmt(
                        &txn,
                        "DELETE FROM conversation_items \
                         WHERE user_id = $1 AND chat_id = $2 AND position <= $3",
                        values(new_base),
                    ))
                    .await?;
                }
                txn.execute_raw(stmt(
                    &txn,
                    "DELETE FROM conversation_items \
                     WHERE user_id = $1 AND chat_id = $2 AND position > $3",
                    values(change.after_position),
                ))
                .await?;
                insert_items(&txn, user, chat, change.after_position + 1, change.items, now)
                    .await?;
                txn.execute_raw(stmt(
                    &txn,
                    "UPDATE chats SET position_base = $3, item_count = $4 \
                     WHERE user_id = $1 AND chat_id = $2",
                    vec![
                        user.into(),
                        chat.into(),
                        after.position_base.into(),
                        after.item_count.into(),
                    ],
                ))
                .await?;
                txn.commit().await?;
                if !change.items.is_empty() {
                    self.db.search_index().wake();
                }
                Ok(Replaced { revision: after.revision, item_count: after.item_count })
            }
            Line::Branch(name) => {
                txn.execute_raw(stmt(
                    &txn,
                    "DELETE FROM session_branch_items \
                     WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3 \
                     AND (position <= $4 OR position > $5)",
                    vec![
                        user.into(),
                        chat.into(),
                        name.into(),
                        new_base.into(),
                        change.after_position.into(),
                    ],
                ))
                .await?;
                let first = change.after_position + 1;
                insert_branch_items(&txn, user, chat, name, first, change.items, now).await?;
                set_branch_range(&txn, user, chat, name, &after).await?;
                txn.commit().await?;
                Ok(Replaced { revision: after.revision, item_count: after.item_count })
            }
        }
    }
}

/// Whether an item starts a turn: it is a message from the user.
pub fn starts_turn(item: &Json) -> bool {
    item.get("role").and_then(Json::as_str) == Some("user")
}
