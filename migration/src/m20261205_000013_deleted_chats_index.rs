//! The index of soft-deleted chats lists only those.
//!
//! `chats_deleted_at` serves the sweeper of `retention.inactive_days`, which looks only at
//! chats with a `deleted_at`. As a full index it also held an entry for every active chat,
//! and an append moves `updated_at` (an indexed column), so every append (every agent turn)
//! wrote a new entry into it. Partial, it holds the soft-deleted chats alone and appends to
//! active chats never touch it. The sweeper's `deleted_at < cutoff` implies `deleted_at IS NOT
//! NULL`, so both databases still use it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Both databases take these statements as they are.
const PARTIAL: &str =
    "CREATE INDEX chats_deleted_at ON chats (deleted_at) WHERE deleted_at IS NOT NULL";
const FULL: &str = "CREATE INDEX chats_deleted_at ON chats (deleted_at)";

async fn replace_index(manager: &SchemaManager<'_>, create: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared("DROP INDEX chats_deleted_at").await?;
    db.execute_unprepared(create).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace_index(manager, PARTIAL).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace_index(manager, FULL).await
    }
}
