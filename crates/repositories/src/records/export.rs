//! Reading a user's records out, page by page from one snapshot: memory holds one page,
//! however much the user owns.

use sea_orm::{AccessMode, DatabaseTransaction, IsolationLevel, TransactionTrait};

use super::{Cursor, KINDS};
use crate::{Db, RepoResult};

/// Walks every kind of [`KINDS`] in order, each by keyset pages, inside one read-only
/// snapshot, so the export is one consistent picture even while the user writes.
#[derive(Debug)]
pub struct Exporter {
    txn: DatabaseTransaction,
    user: String,
    /// Index into [`KINDS`] of the kind being read.
    kind: usize,
    /// The key of the last row read of that kind.
    after: Option<Cursor>,
}

impl Exporter {
    pub(super) async fn open(db: &Db, user: &str) -> RepoResult<Self> {
        let txn = db
            .connection()
            .begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly))
            .await?;
        Ok(Self { txn, user: user.to_owned(), kind: 0, after: None })
    }

    /// The next records, one NDJSON line each (every line ends in `\n`); `None` after the
    /// last.
    pub async fn next_chunk(&mut self) -> RepoResult<Option<String>> {
        while let Some(kind) = KINDS.get(self.kind).copied() {
            let limit = kind.page_size();
            let page = kind.export_page(&self.txn, &self.user, self.after.as_ref(), limit).await?;
            if page.rows < limit {
                self.kind += 1;
                self.after = None;
            } else {
                self.after = page.last;
            }
            if page.rows > 0 {
                return Ok(Some(page.text));
            }
        }
        Ok(None)
    }

    /// Ends the snapshot.
    pub async fn finish(self) -> RepoResult<()> {
        Ok(self.txn.commit().await?)
    }
}

/// One page of one kind, as NDJSON text.
#[derive(Debug, Default)]
pub(crate) struct ExportPage {
    pub(crate) text: String,
    pub(crate) rows: u64,
    pub(crate) last: Option<Cursor>,
}

impl ExportPage {
    /// Appends one record as a line.
    pub(crate) fn push(&mut self, record: &impl serde::Serialize, key: Cursor) -> RepoResult<()> {
        // Records are strings, numbers and booleans: writing one cannot fail.
        let line = serde_json::to_string(record).map_err(|err| {
            crate::RepoError::Db(sea_orm::DbErr::Custom(format!("cannot write a record: {err}")))
        })?;
        self.text.push_str(&line);
        self.text.push('\n');
        self.rows += 1;
        self.last = Some(key);
        Ok(())
    }
}
