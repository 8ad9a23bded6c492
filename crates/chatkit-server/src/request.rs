//! ChatKit requests, typed: one variant per request type, with its params.

use std::collections::HashMap;

use repositories::{Id, MAX_JSON_NESTING, Order, nests_too_deep};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ChatKitError, ChatKitResult};

/// One ChatKit request (`{"type", "params", "metadata"}`; `metadata` is ignored, as in the
/// SDK). An unknown type or params of the wrong shape fail to deserialise, so a request that
/// parses is one the engine can act on.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", content = "params")]
pub enum ChatKitRequest {
    #[serde(rename = "threads.get_by_id")]
    GetThread(ThreadParams),
    #[serde(rename = "threads.list")]
    ListThreads(ListParams),
    #[serde(rename = "items.list")]
    ListItems(ItemsListParams),
    #[serde(rename = "threads.update")]
    UpdateThread(UpdateThreadParams),
    #[serde(rename = "threads.delete")]
    DeleteThread(ThreadParams),
    #[serde(rename = "items.feedback")]
    Feedback(FeedbackParams),
    #[serde(rename = "attachments.create")]
    CreateAttachment(CreateAttachmentParams),
    #[serde(rename = "attachments.delete")]
    DeleteAttachment(AttachmentParams),
    #[serde(rename = "threads.create")]
    CreateThread(CreateThreadParams),
    #[serde(rename = "threads.add_user_message")]
    AddUserMessage(AddUserMessageParams),
    #[serde(rename = "threads.add_client_tool_output")]
    AddClientToolOutput(ToolOutputParams),
    #[serde(rename = "threads.add_structured_input")]
    AddStructuredInput(StructuredInputParams),
    #[serde(rename = "threads.retry_after_item")]
    RetryAfterItem(RetryParams),
    #[serde(rename = "threads.custom_action")]
    CustomAction(CustomActionParams),
    /// Known to the protocol, but needs a handler this server does not have.
    #[serde(rename = "input.transcribe")]
    Transcribe(serde::de::IgnoredAny),
    /// Known to the protocol, but needs a handler this server does not have.
    #[serde(rename = "threads.sync_custom_action")]
    SyncCustomAction(serde::de::IgnoredAny),
}

/// The envelope, read first so that an error can name the request's type.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    params: Option<Box<serde_json::value::RawValue>>,
}

impl ChatKitRequest {
    /// Parses a request body; anything that is not a request this engine knows, with params
    /// of the right shape, is [`ChatKitError::Invalid`], and so is one nested deeper than
    /// stored JSON may be: parts of it are kept as raw text or skipped unread, where
    /// serde_json's own depth limit does not apply.
    pub fn parse(body: &[u8]) -> ChatKitResult<Self> {
        if nests_too_deep(body) {
            return Err(ChatKitError::invalid(format!(
                "the request nests more than {MAX_JSON_NESTING} arrays and objects"
            )));
        }
        let Envelope { kind, params } = serde_json::from_slice(body)
            .map_err(|err| ChatKitError::invalid(format!("not a ChatKit request: {err}")))?;
        // The type first, so that serde reads the params straight into their variant's type.
        let params = params.as_deref().map_or("null", serde_json::value::RawValue::get);
        let typed = format!(r#"{{"type":{},"params":{params}}}"#, Value::from(kind.as_str()));
        serde_json::from_str(&typed)
            .map_err(|err| ChatKitError::invalid(format!("bad ChatKit request {kind:?}: {err}")))
    }

    /// Whether the answer is a stream of events rather than one JSON value.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            Self::CreateThread(_)
                | Self::AddUserMessage(_)
                | Self::AddClientToolOutput(_)
                | Self::AddStructuredInput(_)
                | Self::RetryAfterItem(_)
                | Self::CustomAction(_)
        )
    }
}

#[derive(Debug, Deserialize)]
pub struct ThreadParams {
    pub thread_id: Id,
}

/// `threads.list`: a page of the user's threads.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    /// 1 to 1000; absent or `0` means the SDK's default, 20.
    pub limit: Option<i64>,
    #[serde(default)]
    pub order: Option<Order>,
    /// An empty cursor means none, as the SDK's stores test `if after:`.
    #[serde(default, deserialize_with = "repositories::optional_cursor")]
    pub after: Option<Id>,
}

/// `items.list`: a page of a thread's items.
#[derive(Debug, Deserialize)]
pub struct ItemsListParams {
    pub thread_id: Id,
    pub limit: Option<i64>,
    #[serde(default)]
    pub order: Option<Order>,
    #[serde(default, deserialize_with = "repositories::optional_cursor")]
    pub after: Option<Id>,
}

#[derive(Debug, Deserialize)]
pub struct UpdateThreadParams {
    pub thread_id: Id,
    pub title: String,
}

#[derive(Debug, Deserialize)]
pub struct FeedbackParams {
    pub thread_id: Id,
    pub item_ids: Vec<String>,
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub struct CreateAttachmentParams {
    pub name: String,
    pub size: u64,
    pub mime_type: String,
}

#[derive(Debug, Deserialize)]
pub struct AttachmentParams {
    pub attachment_id: Id,
}

/// `UserMessageInput`: `content`, `attachments` (ids) and `inference_options` are required.
#[derive(Debug, Deserialize)]
pub struct UserMessageInput {
    pub content: Vec<Value>,
    pub attachments: Vec<Id>,
    #[serde(default)]
    pub quoted_text: Option<String>,
    pub inference_options: Value,
}

#[derive(Debug, Deserialize)]
pub struct CreateThreadParams {
    pub input: UserMessageInput,
}

#[derive(Debug, Deserialize)]
pub struct AddUserMessageParams {
    pub input: UserMessageInput,
    pub thread_id: Id,
}

#[derive(Debug, Deserialize)]
pub struct ToolOutputParams {
    pub thread_id: Id,
    pub result: Value,
}

#[derive(Debug, Deserialize)]
pub struct RetryParams {
    pub thread_id: Id,
    pub item_id: Id,
}

#[derive(Debug, Deserialize)]
pub struct StructuredInputParams {
    pub thread_id: Id,
    pub item_id: Id,
    pub input: StructuredInputSubmission,
}

/// The user's answers to a pending structured input item.
#[derive(Debug, Deserialize)]
pub struct StructuredInputSubmission {
    #[serde(default)]
    pub status: SubmissionStatus,
    #[serde(default)]
    pub answers: HashMap<String, AnswerSubmission>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubmissionStatus {
    #[default]
    Answered,
    Skipped,
}

#[derive(Debug, Deserialize)]
pub struct AnswerSubmission {
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub skipped: bool,
}

#[derive(Debug, Deserialize)]
pub struct CustomActionParams {
    pub thread_id: Id,
    /// The widget the action came from; empty means none.
    #[serde(default)]
    pub item_id: Option<String>,
    pub action: Action,
}

#[derive(Debug, Deserialize)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub payload: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_into_their_variant_or_fail_naming_the_type() {
        let list = ChatKitRequest::parse(
            br#"{"type": "items.list", "params": {"thread_id": "thr_1", "after": "", "order": "asc"}, "metadata": {}}"#,
        );
        match list {
            Ok(ChatKitRequest::ListItems(params)) => {
                assert_eq!(params.thread_id.as_str(), "thr_1");
                assert_eq!((params.after, params.order), (None, Some(Order::Asc)));
            }
            other => panic!("not items.list: {other:?}"),
        }
        for (body, kind) in [
            (r#"{"type": "threads.explode", "params": {}}"#, "threads.explode"),
            (r#"{"type": "threads.create", "params": {}}"#, "threads.create"),
            (r#"{"type": "threads.list", "params": {"order": "up"}}"#, "threads.list"),
            (r#"{"type": "threads.get_by_id", "params": {"thread_id": ""}}"#, "threads.get_by_id"),
        ] {
            match ChatKitRequest::parse(body.as_bytes()) {
                Err(ChatKitError::Invalid(message)) => assert!(message.contains(kind), "{message}"),
                other => panic!("{body} parsed: {other:?}"),
            }
        }
        assert!(ChatKitRequest::parse(br#"{"params": {}}"#).is_err());
        assert!(ChatKitRequest::parse(b"[]").is_err());
    }
}
