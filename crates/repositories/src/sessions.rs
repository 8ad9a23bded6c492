//! Agent-session memory: the items of a chat, in the order their batches committed.
//!
//! Writers to one chat are serialised by a lock on its `chats` row (taken by the upsert that
//! creates or touches it), so a batch gets consecutive sequence numbers and commits whole or
//! not at all. On SQLite the process-wide writer lock of [`Db`] plays that role.

use chrono::{DateTime, SubsecRound, Utc};
use entity::{chat, conversation_item, session_idempotency_key};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use crate::{Db, RepoError, RepoResult};

/// Rows per INSERT statement: well under PostgreSQL's 65,535 and SQLite's 32,766 bind
/// parameters (4 per row).
const INSERT_CHUNK: usize = 1000;

/// An `Idempotency-Key` and a digest of the batch it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: String,
}

/// The session operations of one database.
#[derive(Debug, Clone, Copy)]
pub struct Sessions<'a> {
    db: &'a Db,
}

impl Db {
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { db: self }
    }
}

/// Now, at the precision both databases store (microseconds), so values read back compare
/// equal to values written.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn of_session(user: &str, session: &str) -> sea_orm::sea_query::Condition {
    sea_orm::sea_query::Condition::all()
        .add(conversation_item::Column::UserId.eq(user))
        .add(conversation_item::Column::ChatId.eq(session))
}

impl Sessions<'_> {
    /// The newest `limit` items, oldest first, as stored JSON text.
    pub async fn latest_items(
        &self,
        user: &str,
        session: &str,
        limit: u64,
    ) -> RepoResult<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut items: Vec<String> = conversation_item::Entity::find()
            .select_only()
            .column(conversation_item::Column::Data)
            .filter(of_session(user, session))
            .order_by_desc(conversation_item::Column::Seq)
            .limit(limit)
            .into_tuple()
            .all(self.db.connection())
            .await?;
        items.reverse();
        Ok(items)
    }

    /// The sequence number of the newest item, or `None` for an empty or unknown session.
    /// A full read pages up to this bound, so it is a snapshot of what had committed.
    pub async fn newest_seq(&self, user: &str, session: &str) -> RepoResult<Option<i64>> {
        let newest: Option<Option<i64>> = conversation_item::Entity::find()
            .select_only()
            .column_as(conversation_item::Column::Seq.max(), "newest")
            .filter(of_session(user, session))
            .into_tuple()
            .one(self.db.connection())
            .await?;
        Ok(newest.flatten())
    }

    /// Up to `limit` items with `after < seq <= upto`, oldest first, with their sequence
    /// numbers: one page of a full read.
    pub async fn items_between(
        &self,
        user: &str,
        session: &str,
        after: i64,
        upto: i64,
        limit: u64,
    ) -> RepoResult<Vec<(i64, String)>> {
        Ok(conversation_item::Entity::find()
            .select_only()
            .column(conversation_item::Column::Seq)
            .column(conversation_item::Column::Data)
            .filter(of_session(user, session))
            .filter(conversation_item::Column::Seq.gt(after))
            .filter(conversation_item::Column::Seq.lte(upto))
            .order_by_asc(conversation_item::Column::Seq)
            .limit(limit)
            .into_tuple()
            .all(self.db.connection())
            .await?)
    }

    /// Appends `items` (JSON object texts) as one contiguous batch, creating the chat if it
    /// does not exist. With an idempotency key already used on this session, adds nothing and
    /// returns what the first request added; used with a different batch, that is a conflict.
    pub async fn add_items(
        &self,
        user: &str,
        session: &str,
        items: &[&str],
        idempotency: Option<&IdempotencyKey>,
    ) -> RepoResult<u64> {
        if items.is_empty() && idempotency.is_none() {
            return Ok(0);
        }
        let added = u64::try_from(items.len()).unwrap_or(u64::MAX);
        let now = now();
        let _writer = self.db.write_guard().await;
        let txn = self.db.connection().begin().await?;

        // Creates the chat, or touches it; either way its row is now locked until commit.
        let touch = Query::insert()
            .into_table(chat::Entity)
            .columns([
                chat::Column::UserId,
                chat::Column::ChatId,
                chat::Column::IsActive,
                chat::Column::ItemCount,
                chat::Column::CreatedAt,
                chat::Column::UpdatedAt,
            ])
            .values([
                user.into(),
                session.into(),
                true.into(),
                i64::try_from(added).unwrap_or(i64::MAX).into(),
                now.into(),
                now.into(),
            ])
            .map_err(|err| RepoError::Invalid(err.to_string()))?
            .on_conflict(
                OnConflict::columns([chat::Column::UserId, chat::Column::ChatId])
                    .value(chat::Column::UpdatedAt, now)
                    .value(
                        chat::Column::ItemCount,
                        Expr::col((chat::Entity, chat::Column::ItemCount)).add(added),
                    )
                    .to_owned(),
            )
            .to_owned();
        txn.execute(&touch).await?;

        if let Some(key) = idempotency {
            let earlier = session_idempotency_key::Entity::find_by_id((
                user.to_owned(),
                session.to_owned(),
                key.key.clone(),
            ))
            .one(&txn)
            .await?;
            if let Some(earlier) = earlier {
                txn.rollback().await?;
                if earlier.request_hash != key.request_hash {
                    return Err(RepoError::Conflict(
                        "this Idempotency-Key was already used with a different batch".into(),
                    ));
                }
                return Ok(u64::try_from(earlier.added).unwrap_or(0));
            }
        }

        for chunk in items.chunks(INSERT_CHUNK) {
            let mut insert = Query::insert();
            insert.into_table(conversation_item::Entity).columns([
                conversation_item::Column::UserId,
                conversation_item::Column::ChatId,
                conversation_item::Column::Data,
                conversation_item::Column::CreatedAt,
            ]);
            for item in chunk {
                insert
                    .values([user.into(), session.into(), (*item).into(), now.into()])
                    .map_err(|err| RepoError::Invalid(err.to_string()))?;
            }
            txn.execute(&insert).await?;
        }

        if let Some(key) = idempotency {
            session_idempotency_key::Entity::insert(session_idempotency_key::ActiveModel {
                user_id: sea_orm::Set(user.to_owned()),
                chat_id: sea_orm::Set(session.to_owned()),
                idempotency_key: sea_orm::Set(key.key.clone()),
                request_hash: sea_orm::Set(key.request_hash.clone()),
                added: sea_orm::Set(i64::try_from(added).unwrap_or(i64::MAX)),
                created_at: sea_orm::Set(now),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(added)
    }

    /// Removes and returns the newest item; `None` when the session is empty or unknown.
    pub async fn pop_item(&self, user: &str, session: &str) -> RepoResult<Option<String>> {
        let _writer = self.db.write_guard().await;
        let txn = self.db.connection().begin().await?;
        // Concurrent pops queue on the chat's row, so each claims a different item.
        let locked = chat::Entity::find_by_id((user.to_owned(), session.to_owned()))
            .lock_exclusive()
            .one(&txn)
            .await?;
        if locked.is_none() {
            return Ok(None);
        }
        let newest: Option<(i64, String)> = conversation_item::Entity::find()
            .select_only()
            .column(conversation_item::Column::Seq)
            .column(conversation_item::Column::Data)
            .filter(of_session(user, session))
            .order_by_desc(conversation_item::Column::Seq)
            .limit(1)
            .into_tuple()
            .one(&txn)
            .await?;
        let Some((seq, data)) = newest else {
            return Ok(None);
        };
        conversation_item::Entity::delete_by_id(seq).exec(&txn).await?;
        chat::Entity::update_many()
            .col_expr(chat::Column::ItemCount, Expr::col(chat::Column::ItemCount).sub(1))
            .col_expr(chat::Column::UpdatedAt, Expr::value(now()))
            .filter(chat::Column::UserId.eq(user))
            .filter(chat::Column::ChatId.eq(session))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some(data))
    }

    /// Removes every item of the session; the chat itself stays. Unknown sessions are a no-op.
    pub async fn clear(&self, user: &str, session: &str) -> RepoResult<()> {
        let _writer = self.db.write_guard().await;
        let txn = self.db.connection().begin().await?;
        let locked = chat::Entity::find_by_id((user.to_owned(), session.to_owned()))
            .lock_exclusive()
            .one(&txn)
            .await?;
        if locked.is_none() {
            return Ok(());
        }
        conversation_item::Entity::delete_many()
            .filter(of_session(user, session))
            .exec(&txn)
            .await?;
        chat::Entity::update_many()
            .col_expr(chat::Column::ItemCount, Expr::value(0i64))
            .col_expr(chat::Column::UpdatedAt, Expr::value(now()))
            .filter(chat::Column::UserId.eq(user))
            .filter(chat::Column::ChatId.eq(session))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }
}
