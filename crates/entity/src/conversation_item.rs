//! One agent-session item (a Responses API input item), as the exact JSON text received.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversation_items")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub user_id: String,
    pub chat_id: String,
    #[sea_orm(column_type = "Text")]
    pub data: String,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
