//! Writing records into a user's namespace: one transaction for a whole import, so a bad
//! record anywhere leaves nothing of it behind.

use sea_orm::DatabaseTransaction;
use serde::Deserialize;
use tokio::sync::MutexGuard;

use super::RecordKind;
use super::kinds::{SessionItemRow, insert_session_items, session_item};
use crate::{Db, RepoError, RepoResult};

/// An import in progress. Dropping it without [`Importer::commit`] rolls everything back.
#[derive(Debug)]
pub struct Importer<'a> {
    txn: DatabaseTransaction,
    user: String,
    records: u64,
    /// Consecutive items of one chat not written yet, and the line of the first: items
    /// are written a batch at a time, two statements a batch rather than two an item.
    items: Vec<SessionItemRow>,
    first_item_line: u64,
    /// To wake the background search indexer once the import commits.
    db: &'a Db,
    /// SQLite's one writer, held for the whole transaction (see `Db::write_guard`).
    _writer: Option<MutexGuard<'a, ()>>,
}

/// Session items written in one statement, at most.
const ITEM_BATCH: usize = 500;

/// The part of a record every kind shares.
#[derive(Debug, Deserialize)]
struct Kind<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
}

impl<'a> Importer<'a> {
    pub(super) async fn open(db: &'a Db, user: &str) -> RepoResult<Self> {
        let (writer, txn) = db.begin_write().await?;
        Ok(Self {
            txn,
            user: user.to_owned(),
            records: 0,
            items: Vec::new(),
            first_item_line: 0,
            db,
            _writer: writer,
        })
    }

    /// Removes everything the user owns first (inside this transaction): `chatstore copy`
    /// makes the target's copy of a user exactly the source's.
    pub async fn erase_first(&mut self) -> RepoResult<()> {
        super::erase_in(&self.txn, &self.user).await.map(drop)
    }

    /// Writes the record `line` (one NDJSON line without its line break), line `number` of
    /// the input. A record whose id exists replaces it. [`RepoError::Invalid`] says what is
    /// wrong, starting `line N:`; an error about a chat's items may name the line of the
    /// first of a run of them, as they are written together.
    pub async fn apply(&mut self, number: u64, line: &str) -> RepoResult<RecordKind> {
        let at_line = |err: RepoError| match err {
            RepoError::Invalid(why) => RepoError::Invalid(format!("line {number}: {why}")),
            other => other,
        };
        let kind = serde_json::from_str::<Kind<'_>>(line)
            .map_err(|err| RepoError::Invalid(format!("line {number}: not a record: {err}")))?;
        let kind = RecordKind::from_name(&kind.kind).ok_or_else(|| {
            RepoError::Invalid(format!("line {number}: unknown record kind {:?}", kind.kind))
        })?;
        if kind == RecordKind::SessionItem {
            let row = session_item(line).map_err(at_line)?;
            let follows = self.items.last().is_some_and(|last| {
                last.chat_id == row.chat_id && last.position.checked_add(1) == Some(row.position)
            });
            if !follows || self.items.len() >= ITEM_BATCH {
                self.flush_items().await?;
                self.first_item_line = number;
            }
            self.items.push(row);
        } else {
            self.flush_items().await?;
            kind.import(&self.txn, &self.user, line).await.map_err(at_line)?;
        }
        self.records += 1;
        Ok(kind)
    }

    async fn flush_items(&mut self) -> RepoResult<()> {
        let line = self.first_item_line;
        insert_session_items(&self.txn, &self.user, &self.items).await.map_err(
            |err| match err {
                RepoError::Invalid(why) => RepoError::Invalid(format!("line {line}: {why}")),
                other => other,
            },
        )?;
        self.items.clear();
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Keeps everything written.
    pub async fn commit(mut self) -> RepoResult<u64> {
        self.flush_items().await?;
        self.txn.commit().await?;
        self.db.search_index().wake();
        Ok(self.records)
    }
}
