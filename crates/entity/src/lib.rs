//! sea-orm entities, one module per table of `migration/`.
//!
//! Written to match the migrations column for column; the repository tests, which run on the
//! migrated schema of both databases, read and write every one of them.

pub mod chat;
pub mod chat_tag;
pub mod chatkit_attachment;
pub mod chatkit_attachment_content;
pub mod chatkit_item;
pub mod chatkit_item_feedback;
pub mod chatkit_thread;
pub mod conversation_item;
pub mod session_idempotency_key;
