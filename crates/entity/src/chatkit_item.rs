//! A ChatKit thread item (message, tool call, widget, ...), as the client's JSON.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chatkit_items")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub user_id: String,
    pub thread_id: String,
    pub item_id: String,
    pub item_type: String,
    pub created_at: DateTimeUtc,
    #[sea_orm(column_type = "Text")]
    pub data: String,
}

impl ActiveModelBehavior for ActiveModel {}
