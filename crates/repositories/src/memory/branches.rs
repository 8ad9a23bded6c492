//! Branches: fork, list, delete, and the writes of a branch's own items.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::{
    LineItem, LineState, Memory, Window, claim, insert_branch_items, int, line_state, read_range,
    set_branch_range, stmt,
};
use crate::sessions::now;
use crate::{Line, MAIN_BRANCH, RepoError, RepoResult};

/// A line of a session, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchInfo {
    pub branch_id: String,
    pub message_count: i64,
    pub user_turns: i64,
    pub created_at: DateTime<Utc>,
}

/// How many of a line's items are messages from the user (its turns): the ones it shares
/// with main from main's turn starts (extended as needed), its own ones read. The caller
/// holds the chat's lock.
pub(super) async fn count_turns(
    txn: &impl ConnectionTrait,
    user: &str,
    chat: &str,
    line: Line<'_>,
    state: &LineState,
) -> RepoResult<i64> {
    let main = match line {
        Line::Main => *state,
        Line::Branch(_) => line_state(txn, user, chat, Line::Main).await?,
    };
    let (own_after, shared) = if state.position_base == main.position_base {
        let fork = state.fork_position.min(main.last_position());
        main_turn_position(txn, user, chat, &main, i64::MAX, fork).await?;
        (fork, main_turns_up_to(txn, user, chat, fork).await?)
    } else {
        (state.position_base, 0)
    };
    if line == Line::Main {
        return Ok(shared);
    }
    let window = Window {
        bounds: (own_after, i64::MAX),
        limit: i64::MAX,
        newest_first: false,
        users_only: true,
    };
    Ok(shared + read_range(txn, user, chat, line, state, window).await?.len() as i64)
}

/// The position of main's turn `turn`, if main has that many turns at or before `until`,
/// from `session_turn_starts`, which it extends from the last turn it knows by reading the
/// user messages after it: each item is read for this once, so a fork costs the same
/// however long the history. The caller holds the chat's lock.
async fn main_turn_position(
    txn: &impl ConnectionTrait,
    user: &str,
    chat: &str,
    main: &LineState,
    turn: i64,
    until: i64,
) -> RepoResult<Option<i64>> {
    let known = txn
        .query_one_raw(stmt(
            txn,
            "SELECT turn, position FROM session_turn_starts WHERE user_id = $1 AND chat_id = $2 \
             AND turn = $3",
            vec![user.into(), chat.into(), turn.into()],
        ))
        .await?;
    if let Some(row) = known {
        let position = int(&row, "position")?;
        return Ok((position <= until).then_some(position));
    }
    let last = txn
        .query_one_raw(stmt(
            txn,
            "SELECT turn, position FROM session_turn_starts WHERE user_id = $1 AND chat_id = $2 \
             ORDER BY turn DESC LIMIT 1",
            vec![user.into(), chat.into()],
        ))
        .await?;
    let (mut number, mut after) = match last {
        Some(row) => (int(&row, "turn")?, int(&row, "position")?),
        None => (0, main.position_base),
    };
    while number < turn && after < until {
        let window =
            Window { bounds: (after, until), limit: 1000, newest_first: false, users_only: true };
        let starts = read_range(txn, user, chat, Line::Main, main, window).await?;
        let Some(last) = starts.last() else { break };
        after = last.position;
        let mut sql = String::from(
            "INSERT INTO session_turn_starts (user_id, chat_id, turn, position) VALUES ",
        );
        let mut values: Vec<sea_orm::Value> = vec![user.into(), chat.into()];
        for (index, start) in starts.iter().enumerate() {
            number += 1;
            if index > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("($1, $2, ${}, ${})", values.len() + 1, values.len() + 2));
            values.push(number.into());
            values.push(start.position.into());
        }
        sql.push_str(" ON CONFLICT (user_id, chat_id, turn) DO NOTHING");
        txn.execute_raw(stmt(txn, &sql, values)).await?;
        if number >= turn {
            let position = starts[(turn - (number - starts.len() as i64) - 1) as usize].position;
            return Ok((position <= until).then_some(position));
        }
    }
    Ok(None)
}

/// The position of turn `turn` (its user message) in a line, if it has that many turns. The
/// turns a branch shares with main are looked up in main's turn starts; only its own items
/// are read.
pub(super) async fn turn_position(
    txn: &impl ConnectionTrait,
    user: &str,
    chat: &str,
    line: Line<'_>,
    state: &LineState,
    turn: i64,
) -> RepoResult<Option<i64>> {
    if turn < 1 {
        return Ok(None);
    }
    let main = match line {
        Line::Main => *state,
        Line::Branch(_) => line_state(txn, user, chat, Line::Main).await?,
    };
    // The line numbers its turns as main does up to its fork point when it starts where main
    // starts; otherwise (it was pruned on its own) its items are read.
    let (own_after, shared_turns) = if state.position_base == main.position_base {
        let fork = state.fork_position.min(main.last_position());
        if let Some(position) = main_turn_position(txn, user, chat, &main, turn, fork).await? {
            return Ok(Some(position));
        }
        if line == Line::Main {
            return Ok(None);
        }
        (fork, main_turns_up_to(txn, user, chat, fork).await?)
    } else {
        (state.position_base, 0)
    };
    let wanted = turn - shared_turns;
    let window = Window {
        bounds: (own_after, i64::MAX),
        limit: wanted,
        newest_first: false,
        users_only: true,
    };
    let starts = read_range(txn, user, chat, line, state, window).await?;
    Ok(if starts.len() as i64 == wanted { starts.last().map(|item| item.position) } else { None })
}

impl Memory<'_> {
    /// Forks `from` before its turn `turn` into a new branch `name`, which holds every item
    /// before that turn's user message. Main's items are shared, never copied; forking a
    /// branch beyond its own fork point copies that branch's own items up to the turn.
    pub async fn fork(
        &self,
        user: &str,
        chat: &str,
        from: Line<'_>,
        turn: i64,
        name: &str,
    ) -> RepoResult<BranchInfo> {
        let (_writer, txn) = self.db.begin_write().await?;
        // Locks the chat (whose turn starts this may extend), then the source line, so the
        // turn cannot move.
        if claim(&txn, user, chat, Line::Main, None, 0).await?.is_none() {
            return Err(RepoError::NotFound(format!("no session {chat:?}")));
        }
        let Some(source) = claim(&txn, user, chat, from, None, 0).await? else {
            return Err(RepoError::NotFound(format!("no branch {:?}", from.name())));
        };
        let Some(start) = turn_position(&txn, user, chat, from, &source, turn).await? else {
            return Err(RepoError::NotFound(format!(
                "turn {turn} does not contain a user message in branch {:?}",
                from.name()
            )));
        };
        let fork_at = start - 1;
        let fork_position = source.fork_position.min(fork_at);
        let now = now();
        let inserted = txn
            .execute_raw(stmt(
                &txn,
                "INSERT INTO session_branches (user_id, chat_id, branch_id, position_base, \
                 fork_position, item_count, revision, deleted, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 1, FALSE, $7, $7) \
                 ON CONFLICT (user_id, chat_id, branch_id) DO NOTHING",
                vec![
                    user.into(),
                    chat.into(),
                    name.into(),
                    source.position_base.into(),
                    fork_position.into(),
                    (fork_at - source.position_base).into(),
                    now.into(),
                ],
            ))
            .await?;
        if name == MAIN_BRANCH || inserted.rows_affected() == 0 {
            return Err(RepoError::Conflict(format!(
                "branch id {name:?} has already been used in this session; choose a new one"
            )));
        }
        if let Line::Branch(source_name) = from
            && fork_at > fork_position
        {
            // The source's own items up to the turn: a branch of a branch owns them.
            txn.execute_raw(stmt(
                &txn,
                "INSERT INTO session_branch_items \
                 (user_id, chat_id, branch_id, position, data, created_at) \
                 SELECT user_id, chat_id, $4, position, data, created_at \
                 FROM session_branch_items WHERE user_id = $1 AND chat_id = $2 \
                 AND branch_id = $3 AND position > $5 AND position <= $6",
                vec![
                    user.into(),
                    chat.into(),
                    source_name.into(),
                    name.into(),
                    fork_position.into(),
                    fork_at.into(),
                ],
            ))
            .await?;
        }
        txn.commit().await?;
        Ok(BranchInfo {
            branch_id: name.to_owned(),
            message_count: fork_at - source.position_base,
            // Everything before turn `turn`: its turns are the ones before it.
            user_turns: turn - 1,
            created_at: now,
        })
    }

    /// Main and every live branch, oldest first, with their item and turn counts.
    pub async fn branches(&self, user: &str, chat: &str) -> RepoResult<Vec<BranchInfo>> {
        // Counting turns may extend main's turn starts: under the chat's lock.
        let (_writer, txn) = self.db.begin_write().await?;
        claim(&txn, user, chat, Line::Main, None, 0).await?;
        let main = line_state(&txn, user, chat, Line::Main).await?;
        let mut lines: Vec<(String, LineState, DateTime<Utc>)> = Vec::new();
        let Some(created_at) = main.created_at else {
            txn.commit().await?;
            return Ok(Vec::new());
        };
        lines.push((MAIN_BRANCH.to_owned(), main, created_at));
        let rows = txn
            .query_all_raw(stmt(
                &txn,
                "SELECT branch_id FROM session_branches \
                 WHERE user_id = $1 AND chat_id = $2 AND NOT deleted ORDER BY created_at, branch_id",
                vec![user.into(), chat.into()],
            ))
            .await?;
        for row in rows {
            let name: String = row.try_get("", "branch_id")?;
            let state = line_state(&txn, user, chat, Line::Branch(&name)).await?;
            let created_at = state.created_at.unwrap_or(created_at);
            lines.push((name, state, created_at));
        }
        let mut infos = Vec::with_capacity(lines.len());
        for (name, state, created_at) in lines {
            let user_turns =
                count_turns(&txn, user, chat, Line::named(Some(&name)), &state).await?;
            infos.push(BranchInfo {
                branch_id: name,
                message_count: state.item_count,
                user_turns,
                created_at,
            });
        }
        txn.commit().await?;
        Ok(infos)
    }

    /// Deletes a branch's items and usage; its row stays, marked deleted, so the name stays
    /// reserved. `main` cannot be deleted.
    pub async fn delete_branch(&self, user: &str, chat: &str, name: &str) -> RepoResult<()> {
        if name == MAIN_BRANCH {
            return Err(RepoError::Invalid("the 'main' branch cannot be deleted".into()));
        }
        let (_writer, txn) = self.db.begin_write().await?;
        if claim(&txn, user, chat, Line::Branch(name), None, 1).await?.is_none() {
            return Err(RepoError::NotFound(format!("no branch {name:?}")));
        }
        let values = || vec![user.into(), chat.into(), name.into()];
        for sql in [
            "DELETE FROM session_branch_items WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3",
            "DELETE FROM session_turn_usage WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3",
            "UPDATE session_branches SET deleted = TRUE, item_count = 0, \
             fork_position = position_base WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3",
        ] {
            txn.execute_raw(stmt(&txn, sql, values())).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Empties the whole session as the SDK's `AdvancedSQLiteSession.clear_session` does:
    /// main's items, every branch's items and all usage; branch names stay reserved.
    pub async fn clear_all(&self, user: &str, chat: &str) -> RepoResult<()> {
        let (_writer, txn) = self.db.begin_write().await?;
        if claim(&txn, user, chat, Line::Main, None, 1).await?.is_none() {
            return Ok(());
        }
        let values = || vec![user.into(), chat.into()];
        for sql in [
            "DELETE FROM session_branch_items WHERE user_id = $1 AND chat_id = $2",
            "DELETE FROM session_turn_usage WHERE user_id = $1 AND chat_id = $2",
            "DELETE FROM session_turn_starts WHERE user_id = $1 AND chat_id = $2",
            "DELETE FROM conversation_items WHERE user_id = $1 AND chat_id = $2",
            "UPDATE session_branches SET item_count = 0, position_base = 0, fork_position = 0, \
             revision = revision + 1 WHERE user_id = $1 AND chat_id = $2",
            "UPDATE chats SET item_count = 0, position_base = 0 WHERE user_id = $1 AND chat_id = $2",
        ] {
            txn.execute_raw(stmt(&txn, sql, values())).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Appends `items` to a branch; answers how many.
    pub async fn append_branch(
        &self,
        user: &str,
        chat: &str,
        name: &str,
        items: &[&str],
    ) -> RepoResult<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        let (_writer, txn) = self.db.begin_write().await?;
        let Some(mut state) = claim(&txn, user, chat, Line::Branch(name), None, 1).await? else {
            return Err(RepoError::NotFound(format!("no branch {name:?}")));
        };
        insert_branch_items(&txn, user, chat, name, state.last_position() + 1, items, now())
            .await?;
        state.item_count += items.len() as i64;
        set_branch_range(&txn, user, chat, name, &state).await?;
        txn.commit().await?;
        Ok(items.len() as u64)
    }

    /// Removes and answers a branch's newest item; a shared one is only unshared.
    pub async fn pop_branch(
        &self,
        user: &str,
        chat: &str,
        name: &str,
    ) -> RepoResult<Option<String>> {
        let (_writer, txn) = self.db.begin_write().await?;
        let Some(mut state) = claim(&txn, user, chat, Line::Branch(name), None, 1).await? else {
            return Err(RepoError::NotFound(format!("no branch {name:?}")));
        };
        let newest = state.last_position();
        if state.item_count == 0 {
            txn.commit().await?;
            return Ok(None);
        }
        let item: Vec<LineItem> = read_range(
            &txn,
            user,
            chat,
            Line::Branch(name),
            &state,
            Window {
                bounds: (newest - 1, newest),
                limit: 1,
                newest_first: false,
                users_only: false,
            },
        )
        .await?;
        let Some(item) = item.into_iter().next() else {
            return Err(RepoError::Invalid(format!("branch item {newest} is missing")));
        };
        txn.execute_raw(stmt(
            &txn,
            "DELETE FROM session_branch_items \
             WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3 AND position = $4",
            vec![user.into(), chat.into(), name.into(), newest.into()],
        ))
        .await?;
        state.item_count -= 1;
        state.fork_position = state.fork_position.min(newest - 1);
        set_branch_range(&txn, user, chat, name, &state).await?;
        txn.commit().await?;
        Ok(Some(item.data))
    }

    /// Removes every item of a branch (main keeps the ones it shared).
    pub async fn clear_branch(&self, user: &str, chat: &str, name: &str) -> RepoResult<()> {
        let (_writer, txn) = self.db.begin_write().await?;
        let Some(mut state) = claim(&txn, user, chat, Line::Branch(name), None, 1).await? else {
            return Err(RepoError::NotFound(format!("no branch {name:?}")));
        };
        txn.execute_raw(stmt(
            &txn,
            "DELETE FROM session_branch_items WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3",
            vec![user.into(), chat.into(), name.into()],
        ))
        .await?;
        state.item_count = 0;
        state.fork_position = state.position_base;
        set_branch_range(&txn, user, chat, name, &state).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The latest `limit` items of a line (all without a limit), oldest first. A branch's
    /// are read in one statement, as main's are: the branch's row gives the bounds of the
    /// two key ranges (shared, own), and a marker row (position `-1`) says it exists.
    pub async fn latest(
        &self,
        user: &str,
        chat: &str,
        line: Line<'_>,
        limit: Option<i64>,
    ) -> RepoResult<Vec<LineItem>> {
        let limit = limit.unwrap_or(i64::MAX);
        let Line::Branch(name) = line else {
            let txn = self.read_txn().await?;
            let state = line_state(&txn, user, chat, line).await?;
            let low = state.last_position().saturating_sub(limit);
            let window =
                Window { bounds: (low, i64::MAX), limit, newest_first: false, users_only: false };
            let items = read_range(&txn, user, chat, line, &state, window).await?;
            txn.commit().await?;
            return Ok(items);
        };
        let connection = self.db.connection();
        let rows = connection
            .query_all_raw(stmt(
                connection,
                &latest_on_branch_sql(connection.get_database_backend()),
                vec![user.into(), chat.into(), name.into(), limit.into()],
            ))
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut exists = false;
        for row in rows {
            let position = int(&row, "position")?;
            if position < 0 {
                exists = true;
                continue;
            }
            items.push(LineItem {
                position,
                data: row.try_get("", "data")?,
                created_at: row.try_get("", "created_at")?,
            });
        }
        if !exists {
            return Err(RepoError::NotFound(format!("no branch {name:?}")));
        }
        Ok(items)
    }
}

/// A branch's latest `$4` items (user `$1`, chat `$2`, branch `$3`), oldest first, in one
/// statement: main's items it shares, then its own, each a key range whose bounds are scalar
/// subqueries on the branch's row (so both planners see constants and walk the primary key);
/// plus a row at position -1 when the branch exists (an empty branch is not a missing one).
/// `max` of two values is `GREATEST` on PostgreSQL, see [`latest_on_branch_sql`].
const LATEST_ON_BRANCH_SQL: &str = "\
SELECT -1 AS position, '' AS data, created_at FROM session_branches
WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3 AND NOT deleted
UNION ALL
SELECT * FROM (
    SELECT position, data, created_at FROM conversation_items
    WHERE user_id = $1 AND chat_id = $2
      AND position > (SELECT max(position_base, position_base + item_count - $4)
                      FROM session_branches
                      WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3 AND NOT deleted)
      AND position <= (SELECT fork_position FROM session_branches
                       WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3 AND NOT deleted)
    UNION ALL
    SELECT position, data, created_at FROM session_branch_items
    WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3
      AND position > (SELECT max(fork_position, position_base + item_count - $4)
                      FROM session_branches
                      WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3 AND NOT deleted)
) AS items
ORDER BY position";

/// [`LATEST_ON_BRANCH_SQL`] in the database's dialect.
fn latest_on_branch_sql(backend: sea_orm::DbBackend) -> String {
    match backend {
        sea_orm::DbBackend::Postgres => LATEST_ON_BRANCH_SQL.replace("max(", "GREATEST("),
        _ => LATEST_ON_BRANCH_SQL.to_owned(),
    }
}

/// How many of main's turns start at or before `position` (from the turn-start cache, which
/// the caller has filled up to there).
async fn main_turns_up_to(
    txn: &impl ConnectionTrait,
    user: &str,
    chat: &str,
    position: i64,
) -> RepoResult<i64> {
    let counted = txn
        .query_one_raw(stmt(
            txn,
            "SELECT COUNT(*) AS n FROM session_turn_starts \
             WHERE user_id = $1 AND chat_id = $2 AND position <= $3",
            vec![user.into(), chat.into(), position.into()],
        ))
        .await?;
    Ok(counted.map(|row| int(&row, "n")).transpose()?.unwrap_or(0))
}
