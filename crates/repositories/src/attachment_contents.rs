//! The uploaded bytes of ChatKit attachments, kept apart from their metadata.

use entity::{chatkit_attachment, chatkit_attachment_content};
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, QuerySelect};

use crate::sessions::now;
use crate::{Db, RepoError, RepoResult};

/// Stored bytes and the type they were uploaded with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub mime_type: String,
    pub bytes: Vec<u8>,
}

/// Attachment-bytes operations of one database.
#[derive(Debug, Clone, Copy)]
pub struct AttachmentContents<'a> {
    db: &'a Db,
}

impl Db {
    pub fn attachment_contents(&self) -> AttachmentContents<'_> {
        AttachmentContents { db: self }
    }
}

fn key(user: &str, attachment_id: &str) -> (String, String) {
    (user.to_owned(), attachment_id.to_owned())
}

impl AttachmentContents<'_> {
    /// The MIME type the attachment's metadata declares; `None` when it does not exist.
    pub async fn declared_mime_type(
        &self,
        user: &str,
        attachment_id: &str,
    ) -> RepoResult<Option<String>> {
        Ok(chatkit_attachment::Entity::find_by_id(key(user, attachment_id))
            .select_only()
            .column(chatkit_attachment::Column::MimeType)
            .into_tuple()
            .one(self.db.connection())
            .await?)
    }

    /// Stores (or replaces) the bytes of an existing attachment.
    pub async fn put(
        &self,
        user: &str,
        attachment_id: &str,
        mime_type: &str,
        bytes: Vec<u8>,
    ) -> RepoResult<()> {
        let byte_size =
            i64::try_from(bytes.len()).map_err(|_| RepoError::Invalid("too large".into()))?;
        let _writer = self.db.write_guard().await;
        let row = chatkit_attachment_content::ActiveModel {
            user_id: sea_orm::Set(user.to_owned()),
            attachment_id: sea_orm::Set(attachment_id.to_owned()),
            mime_type: sea_orm::Set(mime_type.to_owned()),
            byte_size: sea_orm::Set(byte_size),
            content: sea_orm::Set(bytes),
            created_at: sea_orm::Set(now()),
        };
        let upsert = chatkit_attachment_content::Entity::insert(row).on_conflict(
            OnConflict::columns([
                chatkit_attachment_content::Column::UserId,
                chatkit_attachment_content::Column::AttachmentId,
            ])
            .update_columns([
                chatkit_attachment_content::Column::MimeType,
                chatkit_attachment_content::Column::ByteSize,
                chatkit_attachment_content::Column::Content,
                chatkit_attachment_content::Column::CreatedAt,
            ])
            .to_owned(),
        );
        match upsert.exec_without_returning(self.db.connection()).await {
            Ok(_) => Ok(()),
            // The metadata row is gone (or never existed): the foreign key refuses the bytes.
            Err(err)
                if matches!(
                    err.sql_err(),
                    Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
                ) =>
            {
                Err(RepoError::NotFound(format!("no attachment {attachment_id:?}")))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The stored bytes; `None` when nothing was uploaded (or the attachment is not this user's).
    pub async fn get(&self, user: &str, attachment_id: &str) -> RepoResult<Option<Content>> {
        let row = chatkit_attachment_content::Entity::find_by_id(key(user, attachment_id))
            .one(self.db.connection())
            .await?;
        Ok(row.map(|row| Content { mime_type: row.mime_type, bytes: row.content }))
    }
}
