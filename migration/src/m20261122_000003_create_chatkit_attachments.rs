//! ChatKit attachments: metadata, and the uploaded bytes in a table of their own so that
//! metadata reads never touch them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("chatkit_attachments")
                    .col(text("user_id"))
                    .col(text("attachment_id"))
                    // Set once the attachment is sent in a user message.
                    .col(text_null("thread_id"))
                    .col(text("name"))
                    .col(text("mime_type"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(text("data"))
                    .primary_key(Index::create().col("user_id").col("attachment_id"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("chatkit_attachment_contents")
                    .col(text("user_id"))
                    .col(text("attachment_id"))
                    // The Content-Type the bytes were uploaded with.
                    .col(text("mime_type"))
                    .col(big_integer("byte_size"))
                    .col(blob("content"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("user_id").col("attachment_id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("chatkit_attachment_contents_attachment_fk")
                            .from_tbl("chatkit_attachment_contents")
                            .from_col("user_id")
                            .from_col("attachment_id")
                            .to_tbl("chatkit_attachments")
                            .to_col("user_id")
                            .to_col("attachment_id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["chatkit_attachment_contents", "chatkit_attachments"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
