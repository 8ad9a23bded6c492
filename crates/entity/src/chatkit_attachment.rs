//! A ChatKit attachment's metadata, as the client's JSON plus the columns queried on.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chatkit_attachments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub attachment_id: String,
    pub thread_id: Option<String>,
    pub name: String,
    pub mime_type: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    #[sea_orm(column_type = "Text")]
    pub data: String,
}

impl ActiveModelBehavior for ActiveModel {}
