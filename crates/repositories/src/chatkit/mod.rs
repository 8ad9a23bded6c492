//! The ChatKit store: threads, thread items and attachment metadata.
//!
//! [`Store`] mirrors `chatkit.store.Store` of the ChatKit Python SDK (1.6.5): its two sync id
//! generators and its twelve async methods, each taking the user id as the tenant context.
//! [`DbStore`] implements it over the database (`db.chatkit()`).
//!
//! Objects are ChatKit's *stored form* JSON, kept as the exact text received and returned
//! unchanged (`null`s, unknown fields, key order, spacing and the `created_at` string). The
//! store reads only what it needs out of them (`id`, `type`, `created_at`, `title`,
//! `thread_id`, `name`, `mime_type`) and answers [`RepoError::Invalid`] when those are
//! missing or malformed. The exceptions to "stored verbatim" are surrounding whitespace, which
//! is trimmed, and a thread's top-level `items` key, which is cut out of the text (the SDK
//! sometimes passes a whole `Thread` to `save_thread`); every other byte is kept.
//!
//! Ordering: `created_at` strings are parsed as Python's `datetime.fromisoformat` does (see
//! [`parse_iso_timestamp`]; naive values are taken as UTC) into a normalised column. Items
//! are ordered by `(created_at, seq)`, `seq` being the insertion order (kept when an item is
//! replaced); threads by `(created_at, thread_id)`. Page cursors resolve the `after` id to
//! that key and compare tuples, so ties are never skipped or repeated in either order.
//!
//! Tenancy: every statement is scoped by the user id. Another user's objects behave exactly as
//! missing ones: loads are [`RepoError::NotFound`] (an empty page for `load_thread_items`, as
//! in the SDK), deletes are silent no-ops, item writes are `NotFound` (the thread must exist
//! in the writer's namespace), and thread and attachment writes go to the writer's own

mod ids;
mod iso_time;
mod objects;
mod queries;
mod steps;
mod stored;
mod turn_path;

use async_trait::async_trait;

pub use ids::{StoreItemType, default_generate_id};
pub use iso_time::parse_iso_timestamp;
pub use objects::{Saved, StoredAttachment, StoredItem, StoredObject, StoredThread};
pub use queries::DbStore;
pub(crate) use queries::read_statements;
pub use steps::ItemChanges;

/// `chatkit.store.Store`'s name for the crate's one list order.
pub use crate::Order as SortOrder;
pub use crate::Page;
use crate::RepoResult;

/// `chatkit.store.Store` (ChatKit Python SDK 1.6.5), with the user id as the context.
///
/// Objects go in and come out as ChatKit stored-form JSON text. Errors: malformed input is
/// [`RepoError::Invalid`], a missing (or another user's) object [`RepoError::NotFound`]
/// (the SDK's `NotFoundError`).
#[async_trait]
pub trait Store: Send + Sync {
    /// A new thread id: `thr_` and 32 hex digits.
    fn generate_thread_id(&self, _user: &str) -> String {
        default_generate_id(StoreItemType::Thread)
    }

    /// A new id for an object of `item_type` in thread `thread_id`: the SDK's prefix and 32
    /// hex digits.
    fn generate_item_id(&self, item_type: StoreItemType, _thread_id: &str, _user: &str) -> String {
        default_generate_id(item_type)
    }

    /// Thread metadata; `NotFound` when missing or another user's.
    async fn load_thread(&self, thread_id: &str, user: &str) -> RepoResult<StoredThread>;

    /// Upserts thread metadata (`ThreadMetadata` JSON; an `items` key is dropped).
    async fn save_thread(&self, thread: &str, user: &str) -> RepoResult<Saved<StoredThread>>;

    /// A page of the thread's items by `(created_at, insertion order)`. A missing or another
    /// user's thread gives an empty page (as in the SDK); an `after` that names no item of the
    /// thread is `Invalid`; `limit` must be at least 1.
    async fn load_thread_items(
        &self,
        thread_id: &str,
        after: Option<&str>,
        limit: u64,
        order: SortOrder,
        user: &str,
    ) -> RepoResult<Page<StoredItem>>;

    /// Upserts attachment metadata (it is saved again once `thread_id` is set).
    async fn save_attachment(
        &self,
        attachment: &str,
        user: &str,
    ) -> RepoResult<Saved<StoredAttachment>>;

    /// Attachment metadata; `NotFound` when missing or another user's.
    async fn load_attachment(
        &self,
        attachment_id: &str,
        user: &str,
    ) -> RepoResult<StoredAttachment>;

    /// Deletes attachment metadata and any uploaded bytes; missing is a no-op.
    async fn delete_attachment(&self, attachment_id: &str, user: &str) -> RepoResult<()>;

    /// A page of the user's threads by `(created_at, thread id)`. An `after` that names no
    /// thread of the user is `Invalid`; `limit` must be at least 1.
    async fn load_threads(
        &self,
        limit: u64,
        after: Option<&str>,
        order: SortOrder,
        user: &str,
    ) -> RepoResult<Page<StoredThread>>;

    /// Stores a new item; idempotent by item id: a repeat replaces the stored item and keeps
    /// its place among equal `created_at`s. The thread must exist (else `NotFound`).
    async fn add_thread_item(
        &self,
        thread_id: &str,
        item: &str,
        user: &str,
    ) -> RepoResult<Saved<StoredItem>>;

    /// Upserts an item by id (same semantics as `add_thread_item`). The thread must exist.
    async fn save_item(
        &self,
        thread_id: &str,
        item: &str,
        user: &str,
    ) -> RepoResult<Saved<StoredItem>>;

    /// One item; `NotFound` when missing, in another thread, or another user's.
    async fn load_item(&self, thread_id: &str, item_id: &str, user: &str)
    -> RepoResult<StoredItem>;

    /// Deletes the thread and its items (not its attachments); missing is a no-op.
    async fn delete_thread(&self, thread_id: &str, user: &str) -> RepoResult<()>;

    /// Deletes one item; missing is a no-op.
    async fn delete_thread_item(
        &self,
        thread_id: &str,
        item_id: &str,
        user: &str,
    ) -> RepoResult<()>;
}
