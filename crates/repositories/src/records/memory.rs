//! The agent-memory kinds of record: a session's branches, their own items, and run usage.
//!
//! `session_turn_starts` is not exported: it is a cache of where main's turns start, which
//! the memory routes fill in again from the items the first time they need it.

use std::borrow::Cow;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult, Statement, Value};
use serde::{Deserialize, Serialize};

use super::export::ExportPage;
use super::kinds::{Time, after, check_object, invalid, parse};
use super::{Cursor, RecordKind};
use crate::memory::MAIN_BRANCH;
use crate::{Id, RepoResult};

/// A branch of a session. Its length is its share of main's items (`(position_base,
/// fork_position]`) plus its `session_branch_item` records, which follow it; a deleted
/// branch (kept so that its name stays reserved) has neither.
#[derive(Debug, Serialize, Deserialize)]
struct BranchRecord<'a> {
    kind: Cow<'a, str>,
    chat_id: Id,
    branch_id: Id,
    position_base: i64,
    fork_position: i64,
    revision: i64,
    deleted: bool,
    created_at: Time,
    updated_at: Time,
}

/// One of a branch's own items, at the positions after its fork point, in order.
#[derive(Debug, Serialize, Deserialize)]
struct BranchItemRecord<'a> {
    kind: Cow<'a, str>,
    chat_id: Id,
    branch_id: Id,
    position: i64,
    created_at: Time,
    /// The item's exact JSON text.
    data: String,
}

/// A run's usage for one turn of one line (`main` or a branch).
#[derive(Debug, Serialize, Deserialize)]
struct TurnUsageRecord<'a> {
    kind: Cow<'a, str>,
    chat_id: Id,
    branch_id: Id,
    turn: i64,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    /// JSON object texts, exactly as stored.
    input_tokens_details: Option<String>,
    output_tokens_details: Option<String>,
    created_at: Time,
}

/// `user`'s rows of `table`, after `cursor` in the order of `key`, at most `limit`.
fn select(
    table: &'static str,
    columns: &[&'static str],
    key: &[&'static str],
    user: &str,
    cursor: Option<&Cursor>,
    limit: u64,
) -> SelectStatement {
    let mut select = Query::select();
    select
        .columns(columns.iter().map(|column| Alias::new(*column)))
        .from(Alias::new(table))
        .and_where(Expr::col("user_id").eq(user))
        .cond_where(after(key, cursor));
    for column in key {
        select.order_by(Alias::new(*column), sea_orm::sea_query::Order::Asc);
    }
    select.limit(limit);
    select
}

fn text(row: &QueryResult, column: &str) -> RepoResult<String> {
    Ok(row.try_get::<String>("", column)?)
}

fn int(row: &QueryResult, column: &str) -> RepoResult<i64> {
    Ok(row.try_get::<i64>("", column)?)
}

fn time(row: &QueryResult, column: &str) -> RepoResult<Time> {
    Ok(Time(row.try_get::<chrono::DateTime<chrono::Utc>>("", column)?))
}

fn stmt(txn: &DatabaseTransaction, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(txn.get_database_backend(), sql, values)
}

/// Up to `limit` records of a memory kind after `cursor`, in key order.
pub(super) async fn export_page(
    kind: RecordKind,
    txn: &DatabaseTransaction,
    user: &str,
    cursor: Option<&Cursor>,
    limit: u64,
) -> RepoResult<ExportPage> {
    let name = Cow::Borrowed(kind.name());
    let mut page = ExportPage::default();
    match kind {
        RecordKind::SessionBranch => {
            let columns = [
                "chat_id",
                "branch_id",
                "position_base",
                "fork_position",
                "revision",
                "deleted",
                "created_at",
                "updated_at",
            ];
            let query = select("session_branches", &columns, &columns[..2], user, cursor, limit);
            for row in txn.query_all(&query).await? {
                let (chat_id, branch_id) = (text(&row, "chat_id")?, text(&row, "branch_id")?);
                let key = vec![chat_id.clone().into(), branch_id.clone().into()];
                let record = BranchRecord {
                    kind: name.clone(),
                    chat_id: Id::parse("chat_id", chat_id)?,
                    branch_id: Id::parse("branch_id", branch_id)?,
                    position_base: int(&row, "position_base")?,
                    fork_position: int(&row, "fork_position")?,
                    revision: int(&row, "revision")?,
                    deleted: row.try_get::<bool>("", "deleted")?,
                    created_at: time(&row, "created_at")?,
                    updated_at: time(&row, "updated_at")?,
                };
                page.push(&record, key)?;
            }
        }
        RecordKind::SessionBranchItem => {
            let columns = ["chat_id", "branch_id", "position", "created_at", "data"];
            let query =
                select("session_branch_items", &columns, &columns[..3], user, cursor, limit);
            for row in txn.query_all(&query).await? {
                let (chat_id, branch_id) = (text(&row, "chat_id")?, text(&row, "branch_id")?);
                let position = int(&row, "position")?;
                let key = vec![chat_id.clone().into(), branch_id.clone().into(), position.into()];
                let record = BranchItemRecord {
                    kind: name.clone(),
                    chat_id: Id::parse("chat_id", chat_id)?,
                    branch_id: Id::parse("branch_id", branch_id)?,
                    position,
                    created_at: time(&row, "created_at")?,
                    data: text(&row, "data")?,
                };
                page.push(&record, key)?;
            }
        }
        RecordKind::TurnUsage => {
            let columns = [
                "chat_id",
                "branch_id",
                "turn",
                "requests",
                "input_tokens",
                "output_tokens",
                "total_tokens",
                "input_tokens_details",
                "output_tokens_details",
                "created_at",
            ];
            let query = select("session_turn_usage", &columns, &columns[..3], user, cursor, limit);
            for row in txn.query_all(&query).await? {
                let (chat_id, branch_id) = (text(&row, "chat_id")?, text(&row, "branch_id")?);
                let turn = int(&row, "turn")?;
                let key = vec![chat_id.clone().into(), branch_id.clone().into(), turn.into()];
                let record = TurnUsageRecord {
                    kind: name.clone(),
                    chat_id: Id::parse("chat_id", chat_id)?,
                    branch_id: Id::parse("branch_id", branch_id)?,
                    turn,
                    requests: int(&row, "requests")?,
                    input_tokens: int(&row, "input_tokens")?,
                    output_tokens: int(&row, "output_tokens")?,
                    total_tokens: int(&row, "total_tokens")?,
                    input_tokens_details: row.try_get("", "input_tokens_details")?,
                    output_tokens_details: row.try_get("", "output_tokens_details")?,
                    created_at: time(&row, "created_at")?,
                };
                page.push(&record, key)?;
            }
        }
        _ => unreachable!("{} is no memory kind", kind.name()),
    }
    Ok(page)
}

/// Writes a memory record for `user`, replacing the row with the same key.
pub(super) async fn import(
    kind: RecordKind,
    txn: &DatabaseTransaction,
    user: &str,
    line: &str,
) -> RepoResult<()> {
    match kind {
        RecordKind::SessionBranch => import_branch(txn, user, parse(kind, line)?).await,
        RecordKind::SessionBranchItem => import_branch_item(txn, user, parse(kind, line)?).await,
        RecordKind::TurnUsage => import_usage(txn, user, parse(kind, line)?).await,
        _ => unreachable!("{} is no memory kind", kind.name()),
    }
}

/// Main's `(position_base, item_count)`, or an error naming what needed the chat.
async fn main_range(
    txn: &DatabaseTransaction,
    user: &str,
    chat_id: &str,
    what: &str,
) -> RepoResult<(i64, i64)> {
    let row = txn
        .query_one_raw(stmt(
            txn,
            "SELECT position_base, item_count FROM chats WHERE user_id = $1 AND chat_id = $2",
            vec![user.into(), chat_id.into()],
        ))
        .await?
        .ok_or_else(|| invalid(format!("no chat {chat_id:?} before this {what}")))?;
    Ok((int(&row, "position_base")?, int(&row, "item_count")?))
}

/// A branch replaces the one of that name whole (its items and usage go; the records after
/// it bring theirs back). It starts with its share of main, which main's items, earlier in
/// the file, must hold.
async fn import_branch(
    txn: &DatabaseTransaction,
    user: &str,
    record: BranchRecord<'_>,
) -> RepoResult<()> {
    let (chat_id, branch_id) = (record.chat_id.as_str(), record.branch_id.as_str());
    if branch_id == MAIN_BRANCH {
        return Err(invalid("a branch cannot be named \"main\": that is the session itself"));
    }
    let (base, fork) = (record.position_base, record.fork_position);
    if base < 0 || fork < base || record.revision < 1 {
        return Err(invalid(
            "a branch needs 0 <= position_base <= fork_position and a revision of at least 1",
        ));
    }
    let (main_base, main_count) = main_range(txn, user, chat_id, "branch").await?;
    if fork > base && (base < main_base || fork > main_base + main_count) {
        return Err(invalid(format!(
            "the branch shares main's positions {}..={fork}, which chat {chat_id:?} does not \
             hold (it holds {}..={})",
            base + 1,
            main_base + 1,
            main_base + main_count
        )));
    }
    let key = || vec![user.into(), chat_id.into(), branch_id.into()];
    for sql in [
        "DELETE FROM session_turn_usage WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3",
        "DELETE FROM session_branches WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3",
    ] {
        txn.execute_raw(stmt(txn, sql, key())).await?;
    }
    let mut values = key();
    values.extend([
        base.into(),
        fork.into(),
        (fork - base).into(),
        record.revision.into(),
        record.deleted.into(),
        record.created_at.0.into(),
        record.updated_at.0.into(),
    ]);
    txn.execute_raw(stmt(
        txn,
        "INSERT INTO session_branches (user_id, chat_id, branch_id, position_base, \
         fork_position, item_count, revision, deleted, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        values,
    ))
    .await?;
    Ok(())
}

/// A branch item must follow its branch's last one, so that the branch's positions stay
/// exactly `position_base + 1 ..= position_base + item_count`.
async fn import_branch_item(
    txn: &DatabaseTransaction,
    user: &str,
    record: BranchItemRecord<'_>,
) -> RepoResult<()> {
    check_object("the item's `data`", &record.data)?;
    let (chat_id, branch_id) = (record.chat_id.as_str(), record.branch_id.as_str());
    let key = || vec![user.into(), chat_id.into(), branch_id.into()];
    let mut values = key();
    values.push((record.position - 1).into());
    let grown = txn
        .execute_raw(stmt(
            txn,
            "UPDATE session_branches SET item_count = item_count + 1 WHERE user_id = $1 \
             AND chat_id = $2 AND branch_id = $3 AND NOT deleted \
             AND position_base + item_count = $4",
            values,
        ))
        .await?;
    if grown.rows_affected() == 0 {
        let row = txn
            .query_one_raw(stmt(
                txn,
                "SELECT position_base + item_count AS last, deleted FROM session_branches \
                 WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3",
                key(),
            ))
            .await?;
        return Err(match row {
            None => {
                invalid(format!("no branch {branch_id:?} of chat {chat_id:?} before this item"))
            }
            Some(row) if row.try_get::<bool>("", "deleted")? => {
                invalid(format!("branch {branch_id:?} is deleted: it holds no items"))
            }
            Some(row) => invalid(format!(
                "position {} does not follow branch {branch_id:?}'s last item (position {}): \
                 a branch's items come in order",
                record.position,
                int(&row, "last")?
            )),
        });
    }
    let mut values = key();
    values.extend([record.position.into(), record.data.into(), record.created_at.0.into()]);
    txn.execute_raw(stmt(
        txn,
        "INSERT INTO session_branch_items (user_id, chat_id, branch_id, position, data, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        values,
    ))
    .await?;
    Ok(())
}

async fn import_usage(
    txn: &DatabaseTransaction,
    user: &str,
    record: TurnUsageRecord<'_>,
) -> RepoResult<()> {
    let (chat_id, branch_id) = (record.chat_id.as_str(), record.branch_id.as_str());
    if record.turn < 1 {
        return Err(invalid("a usage's `turn` starts at 1"));
    }
    let counts = [record.requests, record.input_tokens, record.output_tokens, record.total_tokens];
    if counts.iter().any(|count| *count < 0) {
        return Err(invalid("usage counts must not be negative"));
    }
    for (what, details) in [
        ("`input_tokens_details`", &record.input_tokens_details),
        ("`output_tokens_details`", &record.output_tokens_details),
    ] {
        if let Some(details) = details {
            check_object(what, details)?;
        }
    }
    main_range(txn, user, chat_id, "usage").await?;
    let key = || vec![user.into(), chat_id.into(), branch_id.into()];
    if branch_id != MAIN_BRANCH {
        let branch = txn
            .query_one_raw(stmt(
                txn,
                "SELECT 1 AS found FROM session_branches WHERE user_id = $1 AND chat_id = $2 \
                 AND branch_id = $3",
                key(),
            ))
            .await?;
        if branch.is_none() {
            return Err(invalid(format!(
                "no branch {branch_id:?} of chat {chat_id:?} before this usage"
            )));
        }
    }
    let mut values = key();
    values.push(record.turn.into());
    txn.execute_raw(stmt(
        txn,
        "DELETE FROM session_turn_usage WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3 \
         AND turn = $4",
        values.clone(),
    ))
    .await?;
    values.extend([
        record.requests.into(),
        record.input_tokens.into(),
        record.output_tokens.into(),
        record.total_tokens.into(),
        record.input_tokens_details.into(),
        record.output_tokens_details.into(),
        record.created_at.0.into(),
    ]);
    txn.execute_raw(stmt(
        txn,
        "INSERT INTO session_turn_usage (user_id, chat_id, branch_id, turn, requests, \
         input_tokens, output_tokens, total_tokens, input_tokens_details, \
         output_tokens_details, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        values,
    ))
    .await?;
    Ok(())
}
