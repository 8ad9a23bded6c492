//! A conversation owned by one user; its items are `conversation_item` rows.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chats")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub chat_id: String,
    pub title: Option<String>,
    pub is_active: bool,
    pub item_count: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The JSON object text the client sent, exactly; `{}` when none was given.
    #[sea_orm(column_type = "Text")]
    pub metadata: String,
    /// The tags as a JSON array of strings; `chat_tags` holds the same set, for filtering.
    #[sea_orm(column_type = "Text")]
    pub tags: String,
    /// When the chat was soft-deleted; `None` while it is active. Retention counts from it.
    pub deleted_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
