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
//! namespace.

mod iso_time;
mod stored;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Utc};
use entity::{chatkit_attachment, chatkit_attachment_content, chatkit_item, chatkit_thread};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query, SelectStatement};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, DbBackend, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Select, Statement, TransactionTrait,
};

pub use iso_time::parse_iso_timestamp;

pub use crate::Page;
use crate::chats::cursor_alias;
use crate::sessions::now;
use crate::{Db, RepoError, RepoResult};

// ---------------------------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------------------------

/// `chatkit.store.StoreItemType`: what an id is generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreItemType {
    Thread,
    Message,
    ToolCall,
    Task,
    Workflow,
    Attachment,
    SdkHiddenContext,
}

impl StoreItemType {
    pub const ALL: [Self; 7] = [
        Self::Thread,
        Self::Message,
        Self::ToolCall,
        Self::Task,
        Self::Workflow,
        Self::Attachment,
        Self::SdkHiddenContext,
    ];

    /// The SDK's name for it (`"tool_call"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thread => "thread",
            Self::Message => "message",
            Self::ToolCall => "tool_call",
            Self::Task => "task",
            Self::Workflow => "workflow",
            Self::Attachment => "attachment",
            Self::SdkHiddenContext => "sdk_hidden_context",
        }
    }

    /// The SDK's id prefix (`thr`, `msg`, `tc`, `tsk`, `wf`, `atc`, `shcx`).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Thread => "thr",
            Self::Message => "msg",
            Self::ToolCall => "tc",
            Self::Task => "tsk",
            Self::Workflow => "wf",
            Self::Attachment => "atc",
            Self::SdkHiddenContext => "shcx",
        }
    }
}

impl FromStr for StoreItemType {
    type Err = RepoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| RepoError::Invalid(format!("unknown store item type `{text}`")))
    }
}

/// `<prefix>_` and 32 lowercase hex digits: 128 random bits from the operating system's
/// generator. The SDK uses 8 hex digits (32 bits), which collide in large tables; the prefix
/// is the same, and ids stay opaque strings either way.
pub fn default_generate_id(item_type: StoreItemType) -> String {
    format!("{}_{:032x}", item_type.prefix(), random_u128())
}

/// 128 random bits. A v4 UUID carries 122 (all but its version bits 76..80 and variant bits
/// 62..64); those six come from a second UUID's random bits 84..88 and 70..72.
fn random_u128() -> u128 {
    const FIXED: u128 = (0xF << 76) | (0x3 << 62);
    let first = uuid::Uuid::new_v4().as_u128();
    let second = uuid::Uuid::new_v4().as_u128();
    (first & !FIXED) | ((second >> 8) & FIXED)
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// Page direction by the list's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    Desc,
}

impl SortOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }

    fn sql(self) -> Order {
        match self {
            Self::Asc => Order::Asc,
            Self::Desc => Order::Desc,
        }
    }
}

impl FromStr for SortOrder {
    type Err = RepoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "asc" => Ok(Self::Asc),
            "desc" => Ok(Self::Desc),
            _ => Err(RepoError::Invalid(format!("order must be `asc` or `desc`, not `{text}`"))),
        }
    }
}

/// The crate-wide list order.
impl From<crate::Order> for SortOrder {
    fn from(order: crate::Order) -> Self {
        match order {
            crate::Order::Asc => Self::Asc,
            crate::Order::Desc => Self::Desc,
        }
    }
}

impl From<SortOrder> for crate::Order {
    fn from(order: SortOrder) -> Self {
        match order {
            SortOrder::Asc => Self::Asc,
            SortOrder::Desc => Self::Desc,
        }
    }
}

impl fmt::Display for SortOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored ChatKit object: its id and its exact JSON text.
pub trait StoredObject {
    fn id(&self) -> &str;
    fn json(&self) -> &str;
}

/// Thread metadata as stored (`ThreadMetadata` JSON, without any `items`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredThread {
    pub id: String,
    pub title: Option<String>,
    /// `created_at`, normalised to UTC (naive values taken as UTC); the text keeps the original.
    pub created_at: DateTime<Utc>,
    pub json: String,
}

/// A thread item as stored (`ThreadItem` JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    pub id: String,
    pub thread_id: String,
    /// The item's `type` (`user_message`, `hidden_context_item`, ...).
    pub item_type: String,
    pub created_at: DateTime<Utc>,
    pub json: String,
}

/// Attachment metadata as stored (`Attachment` JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    pub id: String,
    pub thread_id: Option<String>,
    pub name: String,
    pub mime_type: String,
    pub json: String,
}

impl StoredObject for StoredThread {
    fn id(&self) -> &str {
        &self.id
    }
    fn json(&self) -> &str {
        &self.json
    }
}

impl StoredObject for StoredItem {
    fn id(&self) -> &str {
        &self.id
    }
    fn json(&self) -> &str {
        &self.json
    }
}

impl StoredObject for StoredAttachment {
    fn id(&self) -> &str {
        &self.id
    }
    fn json(&self) -> &str {
        &self.json
    }
}

/// What an upsert stored, and whether it created the object (`false`: it replaced one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved<T> {
    pub stored: T,
    pub created: bool,
}

/// Pages of stored objects (the crate's [`Page`], `chatkit.types.Page`'s shape) encode
/// themselves from the stored text.
impl<T: StoredObject> Page<T> {
    /// `{"data":[...],"has_more":bool,"after":string|null}`, the elements' stored text as is.
    pub fn to_json(&self) -> String {
        let size: usize = self.data.iter().map(|row| row.json().len() + 1).sum();
        let mut out = String::with_capacity(size + 64);
        out.push_str("{\"data\":[");
        for (index, row) in self.data.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(row.json());
        }
        out.push_str("],\"has_more\":");
        out.push_str(if self.has_more { "true" } else { "false" });
        out.push_str(",\"after\":");
        match &self.after {
            Some(after) => out.push_str(&serde_json::Value::from(after.as_str()).to_string()),
            None => out.push_str("null"),
        }
        out.push('}');
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing and validating the stored form
// ---------------------------------------------------------------------------------------------

fn invalid(message: String) -> RepoError {
    RepoError::Invalid(message)
}

/// The text without surrounding JSON whitespace.
fn trim_json(json: &str) -> &str {
    json.trim_matches([' ', '\t', '\n', '\r'])
}

/// Ids are non-empty and free of NUL (which PostgreSQL cannot store in text).
fn check_id(what: &str, id: &str) -> RepoResult<()> {
    if id.is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if id.contains('\0') {
        return Err(invalid(format!("{what} must not contain NUL characters")));
    }
    Ok(())
}

fn check_ids(ids: &[(&str, &str)]) -> RepoResult<()> {
    ids.iter().try_for_each(|(what, id)| check_id(what, id))
}

/// A decoded string for an informational column: NUL (unstorable in PostgreSQL text) becomes
/// U+FFFD there; the JSON text keeps the original escape.
fn column_text(text: String) -> String {
    if text.contains('\0') { text.replace('\0', "\u{FFFD}") } else { text }
}

fn parse_created_at(what: &str, value: Option<serde_json::Value>) -> RepoResult<DateTime<Utc>> {
    let text = stored::required_string(what, "created_at", value).map_err(invalid)?;
    let at = parse_iso_timestamp(&text).map_err(|reason| {
        invalid(format!(
            "the {what}'s `created_at` ({text:?}) is not an ISO 8601 timestamp: {reason}"
        ))
    })?;
    // Python's datetime stops there too; and outside it, the text SQLite compares would sort
    // wrongly (a fifth year digit, or year 0).
    if !(1..=9999).contains(&at.year()) {
        return Err(invalid(format!(
            "the {what}'s `created_at` ({text:?}) is outside years 1 to 9999 in UTC"
        )));
    }
    Ok(at)
}

/// The whole text must be JSON that parses, not only the fields read out of it: a lone
/// surrogate escape deep inside would otherwise break every later read that parses it.
fn check_well_formed(what: &str, json: &str) -> RepoResult<()> {
    serde_json::from_str::<serde_json::Value>(json)
        .map(drop)
        .map_err(|err| invalid(format!("the {what} is not valid JSON: {err}")))
}

impl StoredThread {
    /// Validates `ThreadMetadata` (or `Thread`) JSON: an object with a string `id`, an ISO
    /// 8601 `created_at`, and a `title` that is a string, `null` or absent. An `items` key is
    /// dropped from the text; every other byte is kept.
    pub fn parse(json: &str) -> RepoResult<Self> {
        let json = trim_json(json);
        check_well_formed("thread", json)?;
        let fields = stored::fields("thread", json).map_err(invalid)?;
        let id = stored::required_string("thread", "id", fields.id).map_err(invalid)?;
        check_id("the thread's `id`", &id)?;
        let created_at = parse_created_at("thread", fields.created_at)?;
        let title = stored::optional_string("thread", "title", fields.title)
            .map_err(invalid)?
            .map(column_text);
        let json = stored::without_top_level_key(json, "items").map_err(invalid)?.into_owned();
        Ok(Self { id, title, created_at, json })
    }
}

impl StoredItem {
    /// Validates `ThreadItem` JSON of thread `thread_id`: an object with a string `id`, a
    /// non-empty string `type` (any: newer SDKs add types), an ISO 8601 `created_at`, and a
    /// `thread_id` that is a string, `null` or absent. The item's own `thread_id` may name
    /// another thread: the SDK's stores file an item under the thread it is written to and
    /// return it as given, so this one does too.
    pub fn parse(thread_id: &str, json: &str) -> RepoResult<Self> {
        let json = trim_json(json);
        check_well_formed("item", json)?;
        let fields = stored::fields("item", json).map_err(invalid)?;
        let id = stored::required_string("item", "id", fields.id).map_err(invalid)?;
        check_id("the item's `id`", &id)?;
        let item_type =
            column_text(stored::required_string("item", "type", fields.kind).map_err(invalid)?);
        let created_at = parse_created_at("item", fields.created_at)?;
        stored::optional_string("item", "thread_id", fields.thread_id).map_err(invalid)?;
        Ok(Self {
            id,
            thread_id: thread_id.to_owned(),
            item_type,
            created_at,
            json: json.to_owned(),
        })
    }
}

impl StoredAttachment {
    /// Validates `Attachment` JSON: an object with string `id`, `type`, `name` and
    /// `mime_type`, and a `thread_id` that is a string, `null` or absent.
    pub fn parse(json: &str) -> RepoResult<Self> {
        let json = trim_json(json);
        check_well_formed("attachment", json)?;
        let fields = stored::fields("attachment", json).map_err(invalid)?;
        let id = stored::required_string("attachment", "id", fields.id).map_err(invalid)?;
        check_id("the attachment's `id`", &id)?;
        stored::required_string("attachment", "type", fields.kind).map_err(invalid)?;
        let name = column_text(
            stored::required_string("attachment", "name", fields.name).map_err(invalid)?,
        );
        let mime_type = column_text(
            stored::required_string("attachment", "mime_type", fields.mime_type)
                .map_err(invalid)?,
        );
        let thread_id = stored::optional_string("attachment", "thread_id", fields.thread_id)
            .map_err(invalid)?;
        if let Some(thread_id) = &thread_id {
            check_id("the attachment's `thread_id`", thread_id)?;
        }
        Ok(Self { id, thread_id, name, mime_type, json: json.to_owned() })
    }
}

impl From<chatkit_thread::Model> for StoredThread {
    fn from(row: chatkit_thread::Model) -> Self {
        Self { id: row.thread_id, title: row.title, created_at: row.created_at, json: row.data }
    }
}

impl From<chatkit_item::Model> for StoredItem {
    fn from(row: chatkit_item::Model) -> Self {
        Self {
            id: row.item_id,
            thread_id: row.thread_id,
            item_type: row.item_type,
            created_at: row.created_at,
            json: row.data,
        }
    }
}

impl From<chatkit_attachment::Model> for StoredAttachment {
    fn from(row: chatkit_attachment::Model) -> Self {
        Self {
            id: row.attachment_id,
            thread_id: row.thread_id,
            name: row.name,
            mime_type: row.mime_type,
            json: row.data,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The trait
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// The database implementation
// ---------------------------------------------------------------------------------------------

/// [`Store`] over the database. Cheap to clone (it holds the pool).
#[derive(Debug, Clone)]
pub struct DbStore {
    db: Db,
}

impl DbStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Loads a thread, lets `edit` change its JSON, and saves it, in one transaction that
    /// holds the thread's row lock: a save that lands between the read and the write (another
    /// field changed by another request) is not lost. The id cannot change. `NotFound` when
    /// the user has no such thread.
    pub async fn update_thread(
        &self,
        thread_id: &str,
        user: &str,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> RepoResult<StoredThread> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        let _writer = self.db.write_guard().await;
        let txn = self.db.connection().begin().await?;
        let current: Option<String> =
            chatkit_thread::Entity::find_by_id((user.to_owned(), thread_id.to_owned()))
                .select_only()
                .column(chatkit_thread::Column::Data)
                .lock_exclusive()
                .into_tuple()
                .one(&txn)
                .await?;
        let current = current
            .ok_or_else(|| RepoError::NotFound(format!("thread {thread_id:?} not found")))?;
        let mut thread: serde_json::Value = serde_json::from_str(&current)
            .map_err(|err| RepoError::Invalid(format!("stored thread is not JSON: {err}")))?;
        edit(&mut thread);
        thread["id"] = serde_json::Value::String(thread_id.to_owned());
        let stored = StoredThread::parse(&thread.to_string())?;
        chatkit_thread::Entity::update_many()
            .col_expr(chatkit_thread::Column::Title, Expr::value(stored.title.clone()))
            .col_expr(chatkit_thread::Column::CreatedAt, Expr::value(stored.created_at))
            .col_expr(chatkit_thread::Column::UpdatedAt, Expr::value(now()))
            .col_expr(chatkit_thread::Column::Data, Expr::value(stored.json.clone()))
            .filter(chatkit_thread::Column::UserId.eq(user))
            .filter(chatkit_thread::Column::ThreadId.eq(thread_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(stored)
    }
}

impl Db {
    /// The ChatKit store on this database.
    pub fn chatkit(&self) -> DbStore {
        DbStore::new(self.clone())
    }
}

fn check_limit(limit: u64) -> RepoResult<()> {
    if limit == 0 { Err(invalid("limit must be at least 1".into())) } else { Ok(()) }
}

/// A page from up to `limit + 1` rows read in page order.
fn page_of<T: StoredObject>(rows: Vec<T>, limit: u64) -> Page<T> {
    Page::from_rows(rows, limit, |row| row.id().to_owned())
}

fn page_size(limit: u64) -> u64 {
    limit.saturating_add(1)
}

fn thread_of(user: &str, thread_id: &str) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(chatkit_item::Column::UserId.eq(user))
        .add(chatkit_item::Column::ThreadId.eq(thread_id))
}

/// `limit` threads after the thread `after` (exclusive), in `order`. The cursor's key
/// `(created_at, thread_id)` is looked up inside the same statement, so a page is one round
/// trip however deep it is; a cursor naming no thread of the user makes the page empty.
fn threads_page_query(
    user: &str,
    after: Option<&str>,
    order: SortOrder,
    limit: u64,
) -> Select<chatkit_thread::Entity> {
    let mut query = chatkit_thread::Entity::find().filter(chatkit_thread::Column::UserId.eq(user));
    if let Some(after) = after {
        let key = Expr::tuple([
            Expr::col((chatkit_thread::Entity, chatkit_thread::Column::CreatedAt)),
            Expr::col((chatkit_thread::Entity, chatkit_thread::Column::ThreadId)),
        ]);
        let cursor = Query::select()
            .column((cursor_alias(), chatkit_thread::Column::CreatedAt))
            .column((cursor_alias(), chatkit_thread::Column::ThreadId))
            .from_as(chatkit_thread::Entity, cursor_alias())
            .and_where(Expr::col((cursor_alias(), chatkit_thread::Column::UserId)).eq(user))
            .and_where(Expr::col((cursor_alias(), chatkit_thread::Column::ThreadId)).eq(after))
            .to_owned();
        query = query.filter(after_cursor(key, cursor, order));
    }
    query
        .order_by(chatkit_thread::Column::CreatedAt, order.sql())
        .order_by(chatkit_thread::Column::ThreadId, order.sql())
        .limit(limit)
}

/// `limit` items of a thread after the item `after` (exclusive), in `order`. The cursor's key
/// `(created_at, seq)` is looked up inside the same statement, as for threads; a cursor naming
/// no item of the thread makes the page empty.
fn items_page_query(
    user: &str,
    thread_id: &str,
    after: Option<&str>,
    order: SortOrder,
    limit: u64,
) -> Select<chatkit_item::Entity> {
    let mut query = chatkit_item::Entity::find().filter(thread_of(user, thread_id));
    if let Some(after) = after {
        let key = Expr::tuple([
            Expr::col((chatkit_item::Entity, chatkit_item::Column::CreatedAt)),
            Expr::col((chatkit_item::Entity, chatkit_item::Column::Seq)),
        ]);
        let cursor = Query::select()
            .column((cursor_alias(), chatkit_item::Column::CreatedAt))
            .column((cursor_alias(), chatkit_item::Column::Seq))
            .from_as(chatkit_item::Entity, cursor_alias())
            .and_where(Expr::col((cursor_alias(), chatkit_item::Column::UserId)).eq(user))
            .and_where(Expr::col((cursor_alias(), chatkit_item::Column::ThreadId)).eq(thread_id))
            .and_where(Expr::col((cursor_alias(), chatkit_item::Column::ItemId)).eq(after))
            .to_owned();
        query = query.filter(after_cursor(key, cursor, order));
    }
    query
        .order_by(chatkit_item::Column::CreatedAt, order.sql())
        .order_by(chatkit_item::Column::Seq, order.sql())
        .limit(limit)
}

/// `key` past the key `cursor` selects, in `order`.
fn after_cursor(key: Expr, cursor: SelectStatement, order: SortOrder) -> Expr {
    let bound = Expr::SubQuery(None, Box::new(cursor.into()));
    match order {
        SortOrder::Asc => key.gt(bound),
        SortOrder::Desc => key.lt(bound),
    }
}

/// The page key of an item named by a cursor.
fn item_cursor_query(user: &str, thread_id: &str, item_id: &str) -> Select<chatkit_item::Entity> {
    chatkit_item::Entity::find()
        .select_only()
        .column(chatkit_item::Column::CreatedAt)
        .column(chatkit_item::Column::Seq)
        .filter(thread_of(user, thread_id))
        .filter(chatkit_item::Column::ItemId.eq(item_id))
}

/// The page key of a thread named by a cursor.
fn thread_cursor_query(user: &str, thread_id: &str) -> Select<chatkit_thread::Entity> {
    chatkit_thread::Entity::find_by_id((user.to_owned(), thread_id.to_owned()))
        .select_only()
        .column(chatkit_thread::Column::CreatedAt)
}

/// The read statements of this module, for checking their query plans.
pub(crate) fn read_statements(backend: DbBackend) -> Vec<(&'static str, Statement)> {
    vec![
        (
            "chatkit threads page",
            threads_page_query("u1", None, SortOrder::Desc, 21).build(backend),
        ),
        (
            "chatkit threads page after (asc)",
            threads_page_query("u1", Some("thr_1"), SortOrder::Asc, 21).build(backend),
        ),
        (
            "chatkit threads page after (desc)",
            threads_page_query("u1", Some("thr_1"), SortOrder::Desc, 21).build(backend),
        ),
        ("chatkit threads cursor", thread_cursor_query("u1", "thr_1").build(backend)),
        (
            "chatkit items page",
            items_page_query("u1", "thr_1", None, SortOrder::Asc, 21).build(backend),
        ),
        (
            "chatkit items page after (asc)",
            items_page_query("u1", "thr_1", Some("msg_1"), SortOrder::Asc, 21).build(backend),
        ),
        (
            "chatkit items page after (desc)",
            items_page_query("u1", "thr_1", Some("msg_1"), SortOrder::Desc, 21).build(backend),
        ),
        ("chatkit items cursor", item_cursor_query("u1", "thr_1", "msg_1").build(backend)),
    ]
}

impl DbStore {
    /// `add_thread_item` and `save_item`: both upsert by `(user, thread, item id)`.
    async fn upsert_item(
        &self,
        thread_id: &str,
        item: &str,
        user: &str,
    ) -> RepoResult<Saved<StoredItem>> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        let stored = StoredItem::parse(thread_id, item)?;
        let _writer = self.db.write_guard().await;
        let txn = self.db.connection().begin().await?;
        // The thread row stays share-locked until commit, so it cannot be deleted under us.
        let thread: Option<String> =
            chatkit_thread::Entity::find_by_id((user.to_owned(), thread_id.to_owned()))
                .select_only()
                .column(chatkit_thread::Column::ThreadId)
                .lock_shared()
                .into_tuple()
                .one(&txn)
                .await?;
        if thread.is_none() {
            return Err(RepoError::NotFound(format!("thread {thread_id:?} not found")));
        }
        let existing: Option<i64> = chatkit_item::Entity::find()
            .select_only()
            .column(chatkit_item::Column::Seq)
            .filter(thread_of(user, thread_id))
            .filter(chatkit_item::Column::ItemId.eq(stored.id.as_str()))
            .into_tuple()
            .one(&txn)
            .await?;
        chatkit_item::Entity::insert(chatkit_item::ActiveModel {
            seq: NotSet,
            user_id: Set(user.to_owned()),
            thread_id: Set(thread_id.to_owned()),
            item_id: Set(stored.id.clone()),
            item_type: Set(stored.item_type.clone()),
            created_at: Set(stored.created_at),
            data: Set(stored.json.clone()),
        })
        .on_conflict(
            // A repeat keeps its `seq`, hence its place among items of equal `created_at`.
            OnConflict::columns([
                chatkit_item::Column::UserId,
                chatkit_item::Column::ThreadId,
                chatkit_item::Column::ItemId,
            ])
            .update_columns([
                chatkit_item::Column::ItemType,
                chatkit_item::Column::CreatedAt,
                chatkit_item::Column::Data,
            ])
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(Saved { stored, created: existing.is_none() })
    }
}

#[async_trait]
impl Store for DbStore {
    async fn load_thread(&self, thread_id: &str, user: &str) -> RepoResult<StoredThread> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        chatkit_thread::Entity::find_by_id((user.to_owned(), thread_id.to_owned()))
            .one(self.db.connection())
            .await?
            .map(StoredThread::from)
            .ok_or_else(|| RepoError::NotFound(format!("thread {thread_id:?} not found")))
    }

    async fn save_thread(&self, thread: &str, user: &str) -> RepoResult<Saved<StoredThread>> {
        check_ids(&[("user id", user)])?;
        let stored = StoredThread::parse(thread)?;
        let now = now();
        let _writer = self.db.write_guard().await;
        let txn = self.db.connection().begin().await?;
        let existing: Option<String> =
            chatkit_thread::Entity::find_by_id((user.to_owned(), stored.id.clone()))
                .select_only()
                .column(chatkit_thread::Column::ThreadId)
                .into_tuple()
                .one(&txn)
                .await?;
        chatkit_thread::Entity::insert(chatkit_thread::ActiveModel {
            user_id: Set(user.to_owned()),
            thread_id: Set(stored.id.clone()),
            title: Set(stored.title.clone()),
            created_at: Set(stored.created_at),
            updated_at: Set(now),
            data: Set(stored.json.clone()),
        })
        .on_conflict(
            OnConflict::columns([chatkit_thread::Column::UserId, chatkit_thread::Column::ThreadId])
                .update_columns([
                    chatkit_thread::Column::Title,
                    chatkit_thread::Column::CreatedAt,
                    chatkit_thread::Column::UpdatedAt,
                    chatkit_thread::Column::Data,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(Saved { stored, created: existing.is_none() })
    }

    async fn load_thread_items(
        &self,
        thread_id: &str,
        after: Option<&str>,
        limit: u64,
        order: SortOrder,
        user: &str,
    ) -> RepoResult<Page<StoredItem>> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        if let Some(after) = after {
            check_id("after", after)?;
        }
        check_limit(limit)?;
        let connection = self.db.connection();
        let rows = items_page_query(user, thread_id, after, order, page_size(limit))
            .all(connection)
            .await?;
        // An empty page after a cursor: the end of the thread, or a cursor naming nothing in it.
        if let Some(after) = after
            && rows.is_empty()
        {
            let key: Option<(DateTime<Utc>, i64)> =
                item_cursor_query(user, thread_id, after).into_tuple().one(connection).await?;
            if key.is_none() {
                return Err(invalid(format!("`after` ({after:?}) names no item of this thread")));
            }
        }
        Ok(page_of(rows.into_iter().map(StoredItem::from).collect(), limit))
    }

    async fn save_attachment(
        &self,
        attachment: &str,
        user: &str,
    ) -> RepoResult<Saved<StoredAttachment>> {
        check_ids(&[("user id", user)])?;
        let stored = StoredAttachment::parse(attachment)?;
        let now = now();
        let _writer = self.db.write_guard().await;
        let txn = self.db.connection().begin().await?;
        let existing: Option<String> =
            chatkit_attachment::Entity::find_by_id((user.to_owned(), stored.id.clone()))
                .select_only()
                .column(chatkit_attachment::Column::AttachmentId)
                .into_tuple()
                .one(&txn)
                .await?;
        chatkit_attachment::Entity::insert(chatkit_attachment::ActiveModel {
            user_id: Set(user.to_owned()),
            attachment_id: Set(stored.id.clone()),
            thread_id: Set(stored.thread_id.clone()),
            name: Set(stored.name.clone()),
            mime_type: Set(stored.mime_type.clone()),
            created_at: Set(now),
            updated_at: Set(now),
            data: Set(stored.json.clone()),
        })
        .on_conflict(
            // `created_at` stays the first save's.
            OnConflict::columns([
                chatkit_attachment::Column::UserId,
                chatkit_attachment::Column::AttachmentId,
            ])
            .update_columns([
                chatkit_attachment::Column::ThreadId,
                chatkit_attachment::Column::Name,
                chatkit_attachment::Column::MimeType,
                chatkit_attachment::Column::UpdatedAt,
                chatkit_attachment::Column::Data,
            ])
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(Saved { stored, created: existing.is_none() })
    }

    async fn load_attachment(
        &self,
        attachment_id: &str,
        user: &str,
    ) -> RepoResult<StoredAttachment> {
        check_ids(&[("attachment id", attachment_id), ("user id", user)])?;
        chatkit_attachment::Entity::find_by_id((user.to_owned(), attachment_id.to_owned()))
            .one(self.db.connection())
            .await?
            .map(StoredAttachment::from)
            .ok_or_else(|| RepoError::NotFound(format!("attachment {attachment_id:?} not found")))
    }

    async fn delete_attachment(&self, attachment_id: &str, user: &str) -> RepoResult<()> {
        check_ids(&[("attachment id", attachment_id), ("user id", user)])?;
        let _writer = self.db.write_guard().await;
        let txn = self.db.connection().begin().await?;
        // The foreign key cascades too; deleting the bytes first does not depend on it.
        chatkit_attachment_content::Entity::delete_many()
            .filter(chatkit_attachment_content::Column::UserId.eq(user))
            .filter(chatkit_attachment_content::Column::AttachmentId.eq(attachment_id))
            .exec(&txn)
            .await?;
        chatkit_attachment::Entity::delete_many()
            .filter(chatkit_attachment::Column::UserId.eq(user))
            .filter(chatkit_attachment::Column::AttachmentId.eq(attachment_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn load_threads(
        &self,
        limit: u64,
        after: Option<&str>,
        order: SortOrder,
        user: &str,
    ) -> RepoResult<Page<StoredThread>> {
        check_ids(&[("user id", user)])?;
        if let Some(after) = after {
            check_id("after", after)?;
        }
        check_limit(limit)?;
        let connection = self.db.connection();
        let rows = threads_page_query(user, after, order, page_size(limit)).all(connection).await?;
        // An empty page after a cursor: the end of the list, or a cursor naming no thread.
        if let Some(after) = after
            && rows.is_empty()
        {
            let created_at: Option<DateTime<Utc>> =
                thread_cursor_query(user, after).into_tuple().one(connection).await?;
            if created_at.is_none() {
                return Err(invalid(format!("`after` ({after:?}) names no thread")));
            }
        }
        Ok(page_of(rows.into_iter().map(StoredThread::from).collect(), limit))
    }

    async fn add_thread_item(
        &self,
        thread_id: &str,
        item: &str,
        user: &str,
    ) -> RepoResult<Saved<StoredItem>> {
        self.upsert_item(thread_id, item, user).await
    }

    async fn save_item(
        &self,
        thread_id: &str,
        item: &str,
        user: &str,
    ) -> RepoResult<Saved<StoredItem>> {
        self.upsert_item(thread_id, item, user).await
    }

    async fn load_item(
        &self,
        thread_id: &str,
        item_id: &str,
        user: &str,
    ) -> RepoResult<StoredItem> {
        check_ids(&[("thread id", thread_id), ("item id", item_id), ("user id", user)])?;
        chatkit_item::Entity::find()
            .filter(thread_of(user, thread_id))
            .filter(chatkit_item::Column::ItemId.eq(item_id))
            .one(self.db.connection())
            .await?
            .map(StoredItem::from)
            .ok_or_else(|| {
                RepoError::NotFound(format!("item {item_id:?} not found in thread {thread_id:?}"))
            })
    }

    async fn delete_thread(&self, thread_id: &str, user: &str) -> RepoResult<()> {
        check_ids(&[("thread id", thread_id), ("user id", user)])?;
        let _writer = self.db.write_guard().await;
        // One statement: the thread row first, then its items and their feedback through the
        // foreign keys' cascade. Item writers lock the thread row before their item, so both
        // take their locks in the same order and cannot deadlock.
        chatkit_thread::Entity::delete_many()
            .filter(chatkit_thread::Column::UserId.eq(user))
            .filter(chatkit_thread::Column::ThreadId.eq(thread_id))
            .exec(self.db.connection())
            .await?;
        Ok(())
    }

    async fn delete_thread_item(
        &self,
        thread_id: &str,
        item_id: &str,
        user: &str,
    ) -> RepoResult<()> {
        check_ids(&[("thread id", thread_id), ("item id", item_id), ("user id", user)])?;
        let _writer = self.db.write_guard().await;
        chatkit_item::Entity::delete_many()
            .filter(thread_of(user, thread_id))
            .filter(chatkit_item::Column::ItemId.eq(item_id))
            .exec(self.db.connection())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn thread_parse_drops_items_and_keeps_the_rest_verbatim() {
        let json = r#" {"title": null, "id": "thr_1", "created_at": "2025-10-06T12:00:00.123456", "status": {"type": "active"}, "items": {"data": [], "has_more": false, "after": null}, "metadata": {}} "#;
        let thread = StoredThread::parse(json).unwrap();
        assert_eq!(thread.id, "thr_1");
        assert_eq!(thread.title, None);
        assert_eq!(
            thread.json,
            r#"{"title": null, "id": "thr_1", "created_at": "2025-10-06T12:00:00.123456", "status": {"type": "active"}, "metadata": {}}"#
        );
        assert_eq!(thread.created_at.to_rfc3339(), "2025-10-06T12:00:00.123456+00:00");
    }

    #[test]
    fn malformed_objects_are_invalid() {
        let bad_threads = [
            "[]",
            "\"x\"",
            "{",
            r#"{"created_at":"2025-10-06"}"#,
            r#"{"id":"","created_at":"2025-10-06"}"#,
            r#"{"id":7,"created_at":"2025-10-06"}"#,
            r#"{"id":"t"}"#,
            r#"{"id":"t","created_at":"yesterday"}"#,
            r#"{"id":"t","created_at":1760000000}"#,
            r#"{"id":"t","created_at":"2025-10-06","title":5}"#,
            r#"{"id":"a\u0000b","created_at":"2025-10-06"}"#,
            r#"{"id":"t","id":"u","created_at":"2025-10-06"}"#,
        ];
        for json in bad_threads {
            assert!(matches!(StoredThread::parse(json), Err(RepoError::Invalid(_))), "{json}");
        }
        let bad_items = [
            r#"{"type":"end_of_turn","created_at":"2025-10-06"}"#,
            r#"{"id":"m","created_at":"2025-10-06"}"#,
            r#"{"id":"m","type":"","created_at":"2025-10-06"}"#,
            r#"{"id":"m","type":"end_of_turn"}"#,
            r#"{"id":"m","type":"end_of_turn","created_at":"2025-10-06","thread_id":3}"#,
        ];
        for json in bad_items {
            assert!(matches!(StoredItem::parse("t", json), Err(RepoError::Invalid(_))), "{json}");
        }
        let bad_attachments = [
            r#"{"name":"a","mime_type":"text/plain","type":"file"}"#,
            r#"{"id":"a","mime_type":"text/plain","type":"file"}"#,
            r#"{"id":"a","name":"a","type":"file"}"#,
            r#"{"id":"a","name":"a","mime_type":"text/plain"}"#,
            r#"{"id":"a","name":"a","mime_type":"text/plain","type":"file","thread_id":3}"#,
        ];
        for json in bad_attachments {
            assert!(matches!(StoredAttachment::parse(json), Err(RepoError::Invalid(_))), "{json}");
        }
    }

    #[test]
    fn pages_are_encoded_from_the_stored_text() {
        let item = |id: &str, json: &str| StoredAttachment {
            id: id.into(),
            thread_id: None,
            name: "n".into(),
            mime_type: "m".into(),
            json: json.into(),
        };
        let rows =
            vec![item("a", r#"{"id": "a"}"#), item("b\"c", r#"{"id":"b\"c"}"#), item("d", "{}")];
        assert_eq!(
            page_of(rows, 2).to_json(),
            r#"{"data":[{"id": "a"},{"id":"b\"c"}],"has_more":true,"after":"b\"c"}"#
        );
        let last = page_of(vec![item("a", r#"{"id": "a"}"#)], 2);
        assert_eq!(last.to_json(), r#"{"data":[{"id": "a"}],"has_more":false,"after":null}"#);
    }

    #[test]
    fn generated_ids_carry_128_random_bits() {
        let (mut ones, mut zeros) = (0u128, 0u128);
        for _ in 0..2000 {
            let bits = random_u128();
            ones |= bits;
            zeros |= !bits;
        }
        assert_eq!(ones, u128::MAX, "some bit is never 1");
        assert_eq!(zeros, u128::MAX, "some bit is never 0");
    }

    #[test]
    fn generated_ids_keep_the_sdk_prefixes() {
        for kind in StoreItemType::ALL {
            let id = default_generate_id(kind);
            let (prefix, random) = id.split_once('_').unwrap();
            assert_eq!(prefix, kind.prefix());
            assert_eq!(random.len(), 32);
            assert!(random.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert_eq!(kind.as_str().parse::<StoreItemType>().unwrap(), kind);
        }
    }
}
