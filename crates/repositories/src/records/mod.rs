//! A user's records, kind by kind: the one list that `GET /export`, `POST /import`,
//! `DELETE /me/data` and `chatstore copy` all walk.
//!
//! A record is one line of NDJSON: a JSON object whose first member is `"kind"`. Stored JSON
//! texts (session items, ChatKit objects, chat metadata) travel as JSON *strings* holding the
//! exact stored text, so a round trip keeps every byte (spacing, key order, escapes) and a
//! text with line breaks in it still fits on one line.
//!
//! Adding a table that holds user data means adding it to [`RecordKind`]: its name, the
//! tables it fills (so that erasure empties them), how a page of it is exported and how one
//! record is imported. The erasure test of the suite enumerates the database catalogue, so a
//! table that is forgotten here fails it.

mod export;
mod import;
mod kinds;
mod memory;

use sea_orm::sea_query::{Expr, ExprTrait, Query, UnionType};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement, Value};

use crate::{Db, RepoResult};

pub use export::Exporter;
pub use import::Importer;

/// Every kind of record, parents before children: the order of an export, which is also
/// the order an import needs (a child names a parent that must already be there).
pub const KINDS: [RecordKind; 11] = [
    RecordKind::Chat,
    RecordKind::SessionItem,
    RecordKind::IdempotencyKey,
    RecordKind::SessionBranch,
    RecordKind::SessionBranchItem,
    RecordKind::TurnUsage,
    RecordKind::Thread,
    RecordKind::ThreadItem,
    RecordKind::Feedback,
    RecordKind::Attachment,
    RecordKind::AttachmentContent,
];

/// One kind of record a user owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A chat (with its tags); its items are `SessionItem`s.
    Chat,
    /// One item of a chat's conversation (the agent session of the same id).
    SessionItem,
    /// An `Idempotency-Key` of a session's item batch, so a retry after an import is still
    /// recognised.
    IdempotencyKey,
    /// A branch of a session (a deleted one too: its row reserves the name).
    SessionBranch,
    /// One of a branch's own items, after its fork point.
    SessionBranchItem,
    /// A run's usage for one turn of a session's main line or a branch.
    TurnUsage,
    Thread,
    ThreadItem,
    Feedback,
    Attachment,
    /// An attachment's uploaded bytes (base64 in the record).
    AttachmentContent,
}

impl RecordKind {
    /// The record's `"kind"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::SessionItem => "session_item",
            Self::IdempotencyKey => "idempotency_key",
            Self::SessionBranch => "session_branch",
            Self::SessionBranchItem => "session_branch_item",
            Self::TurnUsage => "turn_usage",
            Self::Thread => "thread",
            Self::ThreadItem => "thread_item",
            Self::Feedback => "feedback",
            Self::Attachment => "attachment",
            Self::AttachmentContent => "attachment_content",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        KINDS.into_iter().find(|kind| kind.name() == name)
    }

    /// The tables whose rows records of this kind are, children first. `chat_tags` is the
    /// chats' tags again, one row per tag, for filtering: it is no record of its own, but it
    /// is the user's data and erased with the chats.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Self::Chat => &["chat_tags", "chats"],
            // Where main's turns start is a cache worked out from the items: not exported
            // (the memory routes fill it in again), but the user's, so erased with them.
            Self::SessionItem => &["session_turn_starts", "conversation_items"],
            Self::IdempotencyKey => &["session_idempotency_keys"],
            Self::SessionBranch => &["session_branches"],
            Self::SessionBranchItem => &["session_branch_items"],
            Self::TurnUsage => &["session_turn_usage"],
            Self::Thread => &["chatkit_threads"],
            Self::ThreadItem => &["chatkit_items"],
            Self::Feedback => &["chatkit_item_feedback"],
            Self::Attachment => &["chatkit_attachments"],
            Self::AttachmentContent => &["chatkit_attachment_contents"],
        }
    }

    /// Whether every user with any record has one of this kind or another root kind: the
    /// kinds `users` looks in. Every other kind hangs off one of them.
    fn is_root(self) -> bool {
        matches!(self, Self::Chat | Self::Thread | Self::Attachment)
    }

    /// Rows per page of an export: few for the kinds whose rows can be megabytes.
    fn page_size(self) -> u64 {
        match self {
            Self::AttachmentContent => 4,
            Self::Attachment
            | Self::Thread
            | Self::ThreadItem
            | Self::SessionItem
            | Self::SessionBranchItem => 200,
            Self::Chat
            | Self::IdempotencyKey
            | Self::Feedback
            | Self::SessionBranch
            | Self::TurnUsage => 500,
        }
    }
}

/// Every table that holds user data, children before parents: the order erasure deletes in.
/// `search_entries` is not among them: triggers on the tables it indexes keep it in step
/// (and, on SQLite, its full-text index with it), so deleting the sources empties it.
pub fn user_tables() -> impl Iterator<Item = &'static str> {
    KINDS.into_iter().rev().flat_map(|kind| kind.tables().iter().copied())
}

/// Deletes every row of `user` in `txn`, table by table.
///
/// On PostgreSQL it first locks the user's chats, in key order as a search's catch-up does:
/// a catch-up holding them has its entries committed before the items go (and their delete
/// triggers take the entries with them), and one that comes later finds no chat. Without
/// the lock, a catch-up could index items this had already deleted but not yet committed,
/// and the erased text would stay in the index.
pub(crate) async fn erase_in(txn: &DatabaseTransaction, user: &str) -> RepoResult<u64> {
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    let of_user =
        |sql: &str| Statement::from_sql_and_values(DbBackend::Postgres, sql, [user.into()]);
    if postgres {
        txn.execute_raw(of_user(
            "SELECT 1 FROM chats WHERE user_id = $1 ORDER BY chat_id FOR UPDATE",
        ))
        .await?;
    }
    let mut deleted = 0;
    for table in user_tables() {
        let statement = Query::delete()
            .from_table(sea_orm::sea_query::Alias::new(table))
            .and_where(Expr::col("user_id").eq(user))
            .to_owned();
        deleted += txn.execute(&statement).await?.rows_affected();
    }
    if postgres {
        // Thread items still queued for search (migration 000012): bookkeeping, not records.
        txn.execute_raw(of_user("DELETE FROM search_queue WHERE user_id = $1")).await?;
    }
    Ok(deleted)
}

/// A user's records as a whole: the entry points of export, import and erasure.
#[derive(Debug, Clone, Copy)]
pub struct Records<'a> {
    db: &'a Db,
}

impl Db {
    pub fn records(&self) -> Records<'_> {
        Records { db: self }
    }
}

impl<'a> Records<'a> {
    /// Erases every record of `user`, in one transaction: all of it or (on failure) none.
    /// Returns how many rows went.
    pub async fn erase(&self, user: &str) -> RepoResult<u64> {
        let (_writer, txn) = self.db.begin_write().await?;
        let deleted = erase_in(&txn, user).await?;
        txn.commit().await?;
        Ok(deleted)
    }

    /// Reads `user`'s records from one snapshot, page by page.
    pub async fn exporter(&self, user: &str) -> RepoResult<Exporter> {
        Exporter::open(self.db, user).await
    }

    /// Writes records into `user`'s namespace, all in one transaction (which holds the
    /// SQLite writer lock until it ends).
    pub async fn importer(&self, user: &str) -> RepoResult<Importer<'a>> {
        Importer::open(self.db, user).await
    }

    /// Up to `limit` users who own records, in id order, after `after`.
    pub async fn users(&self, after: Option<&str>, limit: u64) -> RepoResult<Vec<String>> {
        let mut roots = KINDS.into_iter().filter(|kind| kind.is_root()).map(|kind| {
            let table = kind.tables().last().copied().unwrap_or_default();
            let mut select = Query::select();
            select.column("user_id").from(sea_orm::sea_query::Alias::new(table)).distinct();
            if let Some(after) = after {
                select.and_where(Expr::col("user_id").gt(after));
            }
            select
        });
        let Some(mut query) = roots.next() else { return Ok(Vec::new()) };
        for other in roots {
            query.union(UnionType::Distinct, other);
        }
        query.order_by("user_id", sea_orm::sea_query::Order::Asc).limit(limit);
        let conn = self.db.connection();
        let rows = conn.query_all(&query).await?;
        rows.into_iter().map(|row| Ok(row.try_get::<String>("", "user_id")?)).collect()
    }

    /// How many users own records.
    pub async fn user_count(&self) -> RepoResult<u64> {
        let mut count = 0u64;
        let mut after: Option<String> = None;
        loop {
            let page = self.users(after.as_deref(), 1000).await?;
            count += page.len() as u64;
            match page.last() {
                Some(last) if page.len() == 1000 => after = Some(last.clone()),
                _ => return Ok(count),
            }
        }
    }
}

/// The keyset of an export page: the key columns of the last row read.
pub(crate) type Cursor = Vec<Value>;
