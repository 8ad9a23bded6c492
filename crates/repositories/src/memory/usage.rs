//! Run usage, stored per (branch, turn) and added up on reading.

use sea_orm::ConnectionTrait;

use super::branches::count_turns;
use super::{Memory, claim, int, stmt};
use crate::sessions::now;
use crate::{Line, RepoResult};

/// One run's usage, as the SDK's `Usage`: token counts and their details (JSON object texts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnUsage {
    /// The turn it belongs to (set when read back).
    pub turn: i64,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub input_tokens_details: Option<String>,
    pub output_tokens_details: Option<String>,
}

/// Usage added up over turns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub turns: i64,
}

fn usage_row(row: &sea_orm::QueryResult) -> RepoResult<TurnUsage> {
    Ok(TurnUsage {
        turn: int(row, "turn")?,
        requests: int(row, "requests")?,
        input_tokens: int(row, "input_tokens")?,
        output_tokens: int(row, "output_tokens")?,
        total_tokens: int(row, "total_tokens")?,
        input_tokens_details: row.try_get("", "input_tokens_details")?,
        output_tokens_details: row.try_get("", "output_tokens_details")?,
    })
}

impl Memory<'_> {
    /// Stores `usage` as the usage of the line's current (latest) turn, replacing what that
    /// turn had; answers the turn, or `None` when the line has no turn yet (nothing stored).
    pub async fn store_usage(
        &self,
        user: &str,
        chat: &str,
        line: Line<'_>,
        usage: &TurnUsage,
    ) -> RepoResult<Option<i64>> {
        let _writer = self.db.write_guard().await;
        let txn = self.write_txn().await?;
        // Locks the chat and the line, so its latest turn cannot change before the usage is
        // written (and main's turn starts can be extended).
        if claim(&txn, user, chat, Line::Main, None, 0).await?.is_none() {
            return Ok(None);
        }
        let Some(state) = claim(&txn, user, chat, line, None, 0).await? else {
            return Ok(None);
        };
        let turn = count_turns(&txn, user, chat, line, &state).await?;
        if turn == 0 {
            return Ok(None);
        }
        txn.execute_raw(stmt(
            &txn,
            "INSERT INTO session_turn_usage (user_id, chat_id, branch_id, turn, requests, \
             input_tokens, output_tokens, total_tokens, input_tokens_details, \
             output_tokens_details, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (user_id, chat_id, branch_id, turn) DO UPDATE SET \
             requests = excluded.requests, input_tokens = excluded.input_tokens, \
             output_tokens = excluded.output_tokens, total_tokens = excluded.total_tokens, \
             input_tokens_details = excluded.input_tokens_details, \
             output_tokens_details = excluded.output_tokens_details, created_at = excluded.created_at",
            vec![
                user.into(),
                chat.into(),
                line.name().into(),
                turn.into(),
                usage.requests.into(),
                usage.input_tokens.into(),
                usage.output_tokens.into(),
                usage.total_tokens.into(),
                usage.input_tokens_details.clone().into(),
                usage.output_tokens_details.clone().into(),
                now().into(),
            ],
        ))
        .await?;
        txn.commit().await?;
        Ok(Some(turn))
    }

    /// Usage added up over one line's turns, or over every line's with `None`; `None` when
    /// nothing was stored.
    pub async fn usage_totals(
        &self,
        user: &str,
        chat: &str,
        line: Option<Line<'_>>,
    ) -> RepoResult<Option<UsageTotals>> {
        let mut sql = String::from(
            "SELECT CAST(COUNT(*) AS BIGINT) AS turns, CAST(COALESCE(SUM(requests), 0) AS BIGINT) AS requests, \
             CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
             CAST(COALESCE(SUM(total_tokens), 0) AS BIGINT) AS total_tokens \
             FROM session_turn_usage WHERE user_id = $1 AND chat_id = $2",
        );
        let mut values = vec![user.into(), chat.into()];
        if let Some(line) = line {
            sql.push_str(" AND branch_id = $3");
            values.push(line.name().into());
        }
        let connection = self.db.connection();
        let Some(row) = connection.query_one_raw(stmt(connection, &sql, values)).await? else {
            return Ok(None);
        };
        let turns = int(&row, "turns")?;
        if turns == 0 {
            return Ok(None);
        }
        Ok(Some(UsageTotals {
            requests: int(&row, "requests")?,
            input_tokens: int(&row, "input_tokens")?,
            output_tokens: int(&row, "output_tokens")?,
            total_tokens: int(&row, "total_tokens")?,
            turns,
        }))
    }

    /// The usage of each turn of a line (only `turn` with one), in turn order.
    pub async fn turn_usage(
        &self,
        user: &str,
        chat: &str,
        line: Line<'_>,
        turn: Option<i64>,
    ) -> RepoResult<Vec<TurnUsage>> {
        let mut sql = String::from(
            "SELECT turn, requests, input_tokens, output_tokens, total_tokens, \
             input_tokens_details, output_tokens_details FROM session_turn_usage \
             WHERE user_id = $1 AND chat_id = $2 AND branch_id = $3",
        );
        let mut values = vec![user.into(), chat.into(), line.name().into()];
        if let Some(turn) = turn {
            sql.push_str(" AND turn = $4");
            values.push(turn.into());
        }
        sql.push_str(" ORDER BY turn");
        let connection = self.db.connection();
        connection
            .query_all_raw(stmt(connection, &sql, values))
            .await?
            .iter()
            .map(usage_row)
            .collect()
    }
}
