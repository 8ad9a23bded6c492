//! Turns: a turn starts at each message from the user.

use chrono::{DateTime, Utc};

use super::{LineItem, Memory, Window, line_state, read_range};
use crate::{Line, RepoResult};

/// One turn of a line: its number (from 1) and its first item, the user's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub number: i64,
    pub position: i64,
    /// The user message's stored JSON text.
    pub data: String,
    pub created_at: DateTime<Utc>,
}

impl Memory<'_> {
    /// Every turn of a line, in order. The database picks out the user messages, so only they
    /// travel.
    pub async fn turns(&self, user: &str, chat: &str, line: Line<'_>) -> RepoResult<Vec<Turn>> {
        let txn = self.read_txn().await?;
        let state = line_state(&txn, user, chat, line).await?;
        let starts = read_range(
            &txn,
            user,
            chat,
            line,
            &state,
            Window {
                bounds: (0, i64::MAX),
                limit: i64::MAX,
                newest_first: false,
                users_only: true,
            },
        )
        .await?;
        txn.commit().await?;
        Ok(starts
            .into_iter()
            .zip(1..)
            .map(|(item, number)| Turn {
                number,
                position: item.position,
                data: item.data,
                created_at: item.created_at,
            })
            .collect())
    }

    /// The latest `turns` whole turns of a line, oldest first: every item from the user
    /// message that starts the first of them, so a call is never cut from its output. With
    /// fewer turns, the whole line. Reads back from the end only as far as that message.
    pub async fn latest_turns(
        &self,
        user: &str,
        chat: &str,
        line: Line<'_>,
        turns: i64,
    ) -> RepoResult<Vec<LineItem>> {
        if turns <= 0 {
            return Ok(Vec::new());
        }
        let txn = self.read_txn().await?;
        let state = line_state(&txn, user, chat, line).await?;
        let starts = read_range(
            &txn,
            user,
            chat,
            line,
            &state,
            Window { bounds: (0, i64::MAX), limit: turns, newest_first: true, users_only: true },
        )
        .await?;
        let from = match starts.last() {
            Some(first) if starts.len() as i64 == turns => first.position - 1,
            _ => 0,
        };
        let items = read_range(
            &txn,
            user,
            chat,
            line,
            &state,
            Window {
                bounds: (from, i64::MAX),
                limit: i64::MAX,
                newest_first: false,
                users_only: false,
            },
        )
        .await?;
        txn.commit().await?;
        Ok(items)
    }
}
