//! Every SQL statement chatstore runs, behind one error type.
//!
//! The same code serves PostgreSQL and SQLite: [`Db`] owns the pool and the per-backend
//! details (connection options, how writers are serialised), the repositories own the queries.

mod attachment_contents;
mod chat_fields;
pub mod chatkit;
mod chats;
mod db;
mod error;
mod feedback;
mod held;
mod id;
mod json_depth;
mod memory;
mod page;
mod plans;
mod records;
mod retention;
mod search;
mod search_index;
mod sessions;
mod sqlite_direct;

pub use attachment_contents::{AttachmentContents, Content};
pub use chat_fields::{MAX_METADATA_BYTES, MAX_TAG_CHARS, MAX_TAGS, Metadata, Tags};
pub use chats::{ChatChanges, ChatFilter, ChatWithItems, Chats};
pub use db::{Backend, DatabaseSettings, Db, SqliteSync};
pub use error::{RepoError, RepoResult};
pub use feedback::Feedback;
pub use id::{Id, IdError, given_cursor, optional_cursor};
pub use json_depth::{MAX_JSON_NESTING, nests_too_deep};
pub use memory::{
    BranchInfo, Line, LineItem, LineState, MAIN_BRANCH, Memory, Replaced, Snapshot, TailReplace,
    Turn, TurnUsage, UsageTotals, starts_turn,
};
pub use page::{Order, Page};
pub use plans::QueryPlan;
pub use records::{Exporter, Importer, KINDS, RecordKind, Records, user_tables};
pub use retention::Retention;
pub use sea_orm;
pub use search::{
    IndexChange, ItemRef, MAX_QUERY_CHARS, Search, SearchCursor, SearchHit, SearchKind,
    SearchRequest, SearchText,
};
pub use search_index::{IndexBatch, SearchIndex};
pub use sessions::{IdempotencyKey, SessionReader, Sessions};
