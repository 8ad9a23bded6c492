//! Chats: conversations with a title and an active flag, whose items are the agent session
//! of the same id (see `sessions`).

use entity::{chat, chat_tag, conversation_item};
use sea_orm::sea_query::{Condition, Expr, ExprTrait, IntoIden, Query};
use sea_orm::{
    AccessMode, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    IsolationLevel, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Statement,
    TransactionTrait,
};

use crate::chat_fields::{Metadata, Tags};
use crate::page::{KeysetCursor, Order, Page, cursor_alias, finish_page, keyset_query};
use crate::sessions::{chat_insert, insert_items, now};
use crate::{Db, RepoError, RepoResult};

/// A chat with its whole conversation (stored item texts, oldest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatWithItems {
    pub chat: chat::Model,
    pub items: Vec<String>,
}

/// What `update` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ChatChanges<'a> {
    /// `Some(None)` clears the title.
    pub title: Option<Option<String>>,
    /// Replaces every item.
    pub items: Option<Vec<&'a str>>,
    pub is_active: Option<bool>,
    pub metadata: Option<Metadata>,
    /// Replaces the set of tags.
    pub tags: Option<Tags>,
}

/// Which of a user's chats a list shows.
#[derive(Debug, Clone, Default)]
pub struct ChatFilter {
    /// Soft-deleted chats too.
    pub include_inactive: bool,
    /// Only chats carrying every one of these tags.
    pub tags: Tags,
}

/// The chat operations of one database.
#[derive(Debug, Clone, Copy)]
pub struct Chats<'a> {
    db: &'a Db,
}

impl Db {
    pub fn chats(&self) -> Chats<'_> {
        Chats { db: self }
    }
}

fn key(user: &str, chat_id: &str) -> (String, String) {
    (user.to_owned(), chat_id.to_owned())
}

fn visible(user: &str, filter: &ChatFilter) -> Condition {
    let mut condition = Condition::all().add(chat::Column::UserId.eq(user));
    if !filter.include_inactive {
        condition = condition.add(chat::Column::IsActive.eq(true));
    }
    condition.add(carries(&chat::Entity, &filter.tags))
}

/// The chats row known as `chats` carries every one of `tags`: a primary-key lookup in
/// `chat_tags` per tag.
fn carries<T: IntoIden + Clone>(chats: &T, tags: &Tags) -> Condition {
    let mut all = Condition::all();
    for tag in tags.as_slice() {
        let lookup = Query::select()
            .expr(Expr::val(1))
            .from(chat_tag::Entity)
            .and_where(
                Expr::col((chat_tag::Entity, chat_tag::Column::UserId))
                    .equals((chats.clone(), chat::Column::UserId)),
            )
            .and_where(
                Expr::col((chat_tag::Entity, chat_tag::Column::ChatId))
                    .equals((chats.clone(), chat::Column::ChatId)),
            )
            .and_where(Expr::col((chat_tag::Entity, chat_tag::Column::Tag)).eq(tag.as_str()))
            .to_owned();
        all = all.add(Expr::exists(lookup));
    }
    all
}

/// A page of chats by `(updated_at, chat_id)`, after the chat `after` (exclusive), which must
/// be an element of this list (no inactive chat in the active list, no chat without the
/// tags in a list of tagged chats).
fn list_query(
    user: &str,
    filter: &ChatFilter,
    after: Option<&str>,
    order: Order,
    limit: u64,
) -> Select<chat::Entity> {
    let cursor = after.map(|after| {
        let mut cursor =
            vec![(chat::Column::UserId, user.into()), (chat::Column::ChatId, after.into())];
        if !filter.include_inactive {
            cursor.push((chat::Column::IsActive, true.into()));
        }
        KeysetCursor::new(cursor).and(carries(&cursor_alias(), &filter.tags))
    });
    keyset_query(
        chat::Entity::find().filter(visible(user, filter)),
        [chat::Column::UpdatedAt, chat::Column::ChatId],
        cursor,
        order,
        limit.saturating_add(1),
    )
}

/// The read statements of this module, for checking their query plans.
pub(crate) fn read_statements(backend: DbBackend) -> Vec<(&'static str, Statement)> {
    let active = ChatFilter::default();
    let all = ChatFilter { include_inactive: true, ..ChatFilter::default() };
    let tagged = |tags: &[&str]| ChatFilter {
        include_inactive: false,
        tags: Tags::parse(tags.iter().map(|tag| (*tag).to_owned()).collect())
            .expect("sample tags are valid"),
    };
    let count = chat::Entity::find()
        .filter(visible("u1", &active))
        .select_only()
        .column_as(chat::Column::ChatId.count(), "count");
    vec![
        ("chats first page", list_query("u1", &active, None, Order::Desc, 20).build(backend)),
        ("chats later page", list_query("u1", &active, Some("c1"), Order::Desc, 20).build(backend)),
        (
            "chats later page, inactive too",
            list_query("u1", &all, Some("c1"), Order::Asc, 20).build(backend),
        ),
        (
            "chats with a tag, first page",
            list_query("u1", &tagged(&["t1"]), None, Order::Desc, 20).build(backend),
        ),
        (
            "chats with two tags, later page",
            list_query("u1", &tagged(&["t1", "t2"]), Some("c1"), Order::Desc, 20).build(backend),
        ),
        ("chats count", count.build(backend)),
    ]
}

impl Chats<'_> {
    /// Creates a chat with its first items; an existing `chat_id` is a conflict.
    pub async fn create(
        &self,
        user: &str,
        chat_id: &str,
        title: Option<String>,
        items: &[&str],
        metadata: Metadata,
        tags: Tags,
    ) -> RepoResult<ChatWithItems> {
        let now = now();
        let count =
            i64::try_from(items.len()).map_err(|_| RepoError::Invalid("too many items".into()))?;
        let (_writer, txn) = self.db.begin_write().await?;
        let insert = chat_insert(user, chat_id, title.clone(), count, now, &metadata, &tags)?
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([
                    chat::Column::UserId,
                    chat::Column::ChatId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .to_owned();
        if txn.execute(&insert).await?.rows_affected() == 0 {
            return Err(RepoError::Conflict(format!("a chat with id {chat_id:?} already exists")));
        }
        insert_items(&txn, user, chat_id, 1, items, now).await?;
        replace_tags(&txn, user, chat_id, &tags).await?;
        txn.commit().await?;
        if !items.is_empty() {
            self.db.search_index().wake();
        }
        Ok(ChatWithItems {
            chat: chat::Model {
                user_id: user.to_owned(),
                chat_id: chat_id.to_owned(),
                title,
                is_active: true,
                item_count: count,
                created_at: now,
                updated_at: now,
                metadata: metadata.as_str().to_owned(),
                tags: tags.to_json(),
                deleted_at: None,
            },
            items: items.iter().map(|item| (*item).to_owned()).collect(),
        })
    }

    /// The chat and its whole conversation, read as one consistent snapshot.
    pub async fn get(&self, user: &str, chat_id: &str) -> RepoResult<ChatWithItems> {
        let txn = self
            .db
            .connection()
            .begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly))
            .await?;
        let read = self.get_in(&txn, user, chat_id).await;
        txn.commit().await?;
        read
    }

    async fn get_in(
        &self,
        txn: &DatabaseTransaction,
        user: &str,
        chat_id: &str,
    ) -> RepoResult<ChatWithItems> {
        let chat = chat::Entity::find_by_id(key(user, chat_id))
            .one(txn)
            .await?
            .ok_or_else(|| RepoError::NotFound(format!("no chat {chat_id:?}")))?;
        let items = conversation_item::Entity::find()
            .select_only()
            .column(conversation_item::Column::Data)
            .filter(conversation_item::Column::UserId.eq(user))
            .filter(conversation_item::Column::ChatId.eq(chat_id))
            .order_by_asc(conversation_item::Column::Position)
            .into_tuple()
            .all(txn)
            .await?;
        Ok(ChatWithItems { chat, items })
    }

    /// A page of the user's chats, most recently updated first (`Order::Desc`). `after` must
    /// name a chat of this list.
    pub async fn list(
        &self,
        user: &str,
        filter: &ChatFilter,
        after: Option<&str>,
        order: Order,
        limit: u64,
    ) -> RepoResult<Page<chat::Model>> {
        let rows = list_query(user, filter, after, order, limit).all(self.db.connection()).await?;
        let cursor_exists = async || {
            let cursor = chat::Entity::find_by_id(key(user, after.unwrap_or_default()))
                .filter(visible(user, filter))
                .one(self.db.connection())
                .await?;
            Ok(cursor.is_some())
        };
        let id_of = |chat: &chat::Model| chat.chat_id.clone();
        finish_page(rows, limit, after, "chat of this list", cursor_exists, id_of).await
    }

    /// How many chats the user has (active ones only unless `include_inactive`).
    pub async fn count(&self, user: &str, include_inactive: bool) -> RepoResult<u64> {
        let filter = ChatFilter { include_inactive, ..ChatFilter::default() };
        let count: Option<i64> = chat::Entity::find()
            .filter(visible(user, &filter))
            .select_only()
            .column_as(chat::Column::ChatId.count(), "count")
            .into_tuple()
            .one(self.db.connection())
            .await?;
        Ok(count.and_then(|count| u64::try_from(count).ok()).unwrap_or(0))
    }

    /// Applies `changes` in one transaction: a new conversation replaces every item at once,
    /// so readers see the old list or the new one. Moves the chat to the top of the list.
    pub async fn update(
        &self,
        user: &str,
        chat_id: &str,
        changes: ChatChanges<'_>,
    ) -> RepoResult<ChatWithItems> {
        let now = now();
        let (_writer, txn) = self.db.begin_write().await?;
        let locked =
            chat::Entity::find_by_id(key(user, chat_id)).lock_exclusive().one(&txn).await?;
        if locked.is_none() {
            return Err(RepoError::NotFound(format!("no chat {chat_id:?}")));
        }
        let mut update = chat::Entity::update_many()
            .col_expr(chat::Column::UpdatedAt, Expr::value(now))
            .filter(chat::Column::UserId.eq(user))
            .filter(chat::Column::ChatId.eq(chat_id));
        if let Some(title) = changes.title {
            update = update.col_expr(chat::Column::Title, Expr::value(title));
        }
        if let Some(is_active) = changes.is_active {
            update = update.col_expr(chat::Column::IsActive, Expr::value(is_active));
            // A restore forgets the soft delete; deactivating an inactive chat keeps the
            // time of its first soft delete, which retention counts from.
            let deleted_at = if is_active {
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None)
            } else {
                first_soft_delete(now)
            };
            update = update.col_expr(chat::Column::DeletedAt, deleted_at);
        }
        if let Some(metadata) = &changes.metadata {
            update = update.col_expr(chat::Column::Metadata, Expr::value(metadata.as_str()));
        }
        if let Some(tags) = &changes.tags {
            replace_tags(&txn, user, chat_id, tags).await?;
            update = update.col_expr(chat::Column::Tags, Expr::value(tags.to_json()));
        }
        if let Some(items) = &changes.items {
            // Branches keep the history they forked from.
            crate::memory::detach_branches(&txn, user, chat_id, 0).await?;
            conversation_item::Entity::delete_many()
                .filter(conversation_item::Column::UserId.eq(user))
                .filter(conversation_item::Column::ChatId.eq(chat_id))
                .exec(&txn)
                .await?;
            insert_items(&txn, user, chat_id, 1, items, now).await?;
            let count = i64::try_from(items.len()).unwrap_or(i64::MAX);
            crate::sessions::set_item_range(&txn, user, chat_id, 0, count).await?;
        }
        update.exec(&txn).await?;
        let updated = self.get_in(&txn, user, chat_id).await?;
        txn.commit().await?;
        if changes.items.as_ref().is_some_and(|items| !items.is_empty()) {
            self.db.search_index().wake();
        }
        Ok(updated)
    }

    /// Marks the chat inactive: it leaves lists and counts but stays readable by id.
    /// A repeated soft delete keeps the time of the first, which retention counts from.
    pub async fn soft_delete(&self, user: &str, chat_id: &str) -> RepoResult<()> {
        let now = now();
        let _writer = self.db.write_guard().await;
        let updated = chat::Entity::update_many()
            .col_expr(chat::Column::IsActive, Expr::value(false))
            .col_expr(chat::Column::UpdatedAt, Expr::value(now))
            .col_expr(chat::Column::DeletedAt, first_soft_delete(now))
            .filter(chat::Column::UserId.eq(user))
            .filter(chat::Column::ChatId.eq(chat_id))
            .exec(self.db.connection())
            .await?;
        if updated.rows_affected == 0 {
            return Err(RepoError::NotFound(format!("no chat {chat_id:?}")));
        }
        Ok(())
    }

    /// Deletes the chat with every item, tag and idempotency key; its id can be used again.
    pub async fn hard_delete(&self, user: &str, chat_id: &str) -> RepoResult<()> {
        let _writer = self.db.write_guard().await;
        let deleted =
            chat::Entity::delete_by_id(key(user, chat_id)).exec(self.db.connection()).await?;
        if deleted.rows_affected == 0 {
            return Err(RepoError::NotFound(format!("no chat {chat_id:?}")));
        }
        Ok(())
    }
}

/// `deleted_at` as a soft delete at `now` leaves it: the first soft delete's time stays.
fn first_soft_delete(now: chrono::DateTime<chrono::Utc>) -> Expr {
    sea_orm::sea_query::Func::coalesce([Expr::col(chat::Column::DeletedAt), Expr::value(now)])
        .into()
}

/// Makes `tags` the whole set of `chat_tags` rows of the chat, inside the caller's
/// transaction (which also writes the chat's `tags` column).
async fn replace_tags(
    txn: &DatabaseTransaction,
    user: &str,
    chat_id: &str,
    tags: &Tags,
) -> RepoResult<()> {
    chat_tag::Entity::delete_many()
        .filter(chat_tag::Column::UserId.eq(user))
        .filter(chat_tag::Column::ChatId.eq(chat_id))
        .exec(txn)
        .await?;
    if tags.is_empty() {
        return Ok(());
    }
    let rows = tags.as_slice().iter().map(|tag| chat_tag::ActiveModel {
        user_id: sea_orm::Set(user.to_owned()),
        chat_id: sea_orm::Set(chat_id.to_owned()),
        tag: sea_orm::Set(tag.clone()),
    });
    chat_tag::Entity::insert_many(rows).exec_without_returning(txn).await?;
    Ok(())
}
