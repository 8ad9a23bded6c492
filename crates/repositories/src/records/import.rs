//! Writing records into a user's namespace: one transaction for a whole import, so a bad
//! record anywhere leaves nothing of it behind.

use sea_orm::{DatabaseTransaction, TransactionTrait};
use serde::Deserialize;
use tokio::sync::MutexGuard;

use super::RecordKind;
use crate::{Db, RepoError, RepoResult};

/// An import in progress. Dropping it without [`Importer::commit`] rolls everything back.
#[derive(Debug)]
pub struct Importer<'a> {
    txn: DatabaseTransaction,
    user: String,
    records: u64,
    /// SQLite's one writer, held for the whole transaction (see `Db::write_guard`).
    _writer: Option<MutexGuard<'a, ()>>,
}

/// The part of a record every kind shares.
#[derive(Debug, Deserialize)]
struct Kind<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
}

impl<'a> Importer<'a> {
    pub(super) async fn open(db: &'a Db, user: &str) -> RepoResult<Self> {
        let writer = db.write_guard().await;
        let txn = db.connection().begin().await?;
        Ok(Self { txn, user: user.to_owned(), records: 0, _writer: writer })
    }

    /// Removes everything the user owns first (inside this transaction): `chatstore copy`
    /// makes the target's copy of a user exactly the source's.
    pub async fn erase_first(&mut self) -> RepoResult<()> {
        super::erase_in(&self.txn, &self.user).await.map(drop)
    }

    /// Writes one record (one NDJSON line, without its line break). A record whose id
    /// exists replaces it. [`RepoError::Invalid`] says what is wrong with the record.
    pub async fn apply(&mut self, line: &str) -> RepoResult<RecordKind> {
        let kind = serde_json::from_str::<Kind<'_>>(line)
            .map_err(|err| RepoError::Invalid(format!("not a record: {err}")))?;
        let kind = RecordKind::from_name(&kind.kind)
            .ok_or_else(|| RepoError::Invalid(format!("unknown record kind {:?}", kind.kind)))?;
        kind.import(&self.txn, &self.user, line).await?;
        self.records += 1;
        Ok(kind)
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Keeps everything written.
    pub async fn commit(self) -> RepoResult<u64> {
        self.txn.commit().await?;
        Ok(self.records)
    }
}
