//! Atomic compaction: read a session's latest items with its revision, then replace a tail of
//! them (and optionally drop leading items) only if the session did not change meanwhile.
//! The Rust side of the SDK's `_get_compaction_snapshot` / `replace_suffix`.

use crate::{Item, Session, SessionError};

/// The latest items of a session, read at one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionSnapshot {
    /// The items read, oldest first.
    pub items: Vec<Item>,
    /// Whether they are the whole session.
    pub complete: bool,
    pub(crate) revision: i64,
    /// The position of `items[0]`; `None` when the session is empty.
    pub(crate) first_position: Option<i64>,
}

impl CompactionSnapshot {
    /// The position after which `replace_suffix(start, ..)` replaces, if `start` is inside.
    pub(crate) fn replace_after(&self, start: usize) -> Option<i64> {
        let first = self.first_position?;
        (start < self.items.len()).then(|| first + i64::try_from(start).unwrap_or(i64::MAX) - 1)
    }
}

/// A session that can compact atomically.
#[async_trait::async_trait]
pub trait CompactableSession: Session {
    /// The latest `limit` items, with what a later [`replace_suffix`](Self::replace_suffix)
    /// needs.
    async fn compaction_snapshot(&self, limit: usize) -> Result<CompactionSnapshot, SessionError>;

    /// Replaces `snapshot.items[start..]` by `items` and removes the session's first
    /// `prune_leading` items, in one step, only if the session is unchanged since the snapshot:
    /// `Ok(false)` (and nothing changed) otherwise, or when `start` is past the items read.
    async fn replace_suffix(
        &self,
        snapshot: &CompactionSnapshot,
        start: usize,
        items: &[Item],
        prune_leading: usize,
    ) -> Result<bool, SessionError>;
}
