//! chatstore's schema, as ordered sea-orm migrations.
//!
//! Conventions every table follows:
//! - Tenant-owned rows carry `user_id`, and every client-chosen id is unique per user only
//!   (composite keys), so two users may use the same id and the data can later be sharded
//!   by user.
//! - Orderings that must be exact use a `bigint` sequence (`position`, `seq`), never a
//!   timestamp alone.
//! - Payloads (agent items, ChatKit objects) are stored as the exact JSON text the client
//!   sent: byte-exact round trips (including `\u0000`, which JSONB rejects) and no re-encoding
//!   on the way out. The columns the server queries on are typed columns beside them.

// `MigrationTrait` declares `&SchemaManager` with an elided lifetime, and async_trait makes
// an implementation that names it a mismatch (E0195), so the idiom lint cannot be followed.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_chats;
mod m20261122_000002_create_chatkit_threads;
mod m20261122_000003_create_chatkit_attachments;
mod m20261130_000004_chat_metadata_and_tags;
mod m20261130_000005_search;
mod m20261130_000006_agent_memory;
mod m20261130_000007_retention;
mod m20261130_000008_search_user_gin;
mod m20261130_000009_search_plpgsql;
mod m20261130_000010_search_deferred;
mod m20261201_000011_search_mark_above_base;
mod m20261205_000012_search_thread_queue;
mod m20261205_000013_deleted_chats_index;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_chats::Migration),
            Box::new(m20261122_000002_create_chatkit_threads::Migration),
            Box::new(m20261122_000003_create_chatkit_attachments::Migration),
            Box::new(m20261130_000004_chat_metadata_and_tags::Migration),
            Box::new(m20261130_000005_search::Migration),
            Box::new(m20261130_000006_agent_memory::Migration),
            Box::new(m20261130_000007_retention::Migration),
            Box::new(m20261130_000008_search_user_gin::Migration),
            Box::new(m20261130_000009_search_plpgsql::Migration),
            Box::new(m20261130_000010_search_deferred::Migration),
            Box::new(m20261201_000011_search_mark_above_base::Migration),
            Box::new(m20261205_000012_search_thread_queue::Migration),
            Box::new(m20261205_000013_deleted_chats_index::Migration),
        ]
    }
}
