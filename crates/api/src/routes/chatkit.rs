//! `POST /chatkit`: the ChatKit protocol endpoint a ChatKit front end talks to.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chatkit_server::{Answer, AttachmentUrls, ChatKitRequest, ChatKitServer, Limits};
use futures::StreamExt as _;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json};
use crate::signed_urls::Access;
use crate::sse;
use crate::state::AppState;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(chatkit_request),
    components(schemas(ChatKitRequestBody)),
    tags((name = "chatkit", description = "The ChatKit protocol, as `chatkit.server.ChatKitServer.process()` answers it"))
)]
pub(crate) struct Doc;

/// Where the client reached us: a proxy's `X-Forwarded-Proto`/`X-Forwarded-Host`, else
/// `http://` and `Host`. (`server.public_url`, when set, wins over both.)
fn request_origin(headers: &HeaderMap) -> String {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let scheme = first("x-forwarded-proto").unwrap_or("http");
    let host = first("x-forwarded-host").or_else(|| first("host")).unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// A ChatKit request, as chatkit-python's `ChatKitReq` models it. What `params` holds depends
/// on `type` (chatkit-python's `*Params` models); a request without what its type needs, or
/// naming an id this user does not have, is a 400 or a 404.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body, which `ChatKitRequest::parse` reads
pub(crate) struct ChatKitRequestBody {
    #[serde(rename = "type")]
    #[schema(inline)]
    kind: ChatKitRequestType,
    /// The request's parameters.
    #[schema(value_type = Option<Object>)]
    params: (),
    /// Free-form metadata, passed on as chatkit-python does.
    #[schema(value_type = Option<Object>)]
    metadata: (),
}

/// The requests this server answers (`input.transcribe` and `threads.sync_custom_action` are
/// a 400: no handler is configured for them).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documentation only
pub(crate) enum ChatKitRequestType {
    #[serde(rename = "threads.get_by_id")]
    ThreadsGetById,
    #[serde(rename = "threads.list")]
    ThreadsList,
    #[serde(rename = "items.list")]
    ItemsList,
    #[serde(rename = "threads.update")]
    ThreadsUpdate,
    #[serde(rename = "threads.delete")]
    ThreadsDelete,
    #[serde(rename = "items.feedback")]
    ItemsFeedback,
    #[serde(rename = "attachments.create")]
    AttachmentsCreate,
    #[serde(rename = "attachments.delete")]
    AttachmentsDelete,
    #[serde(rename = "threads.create")]
    ThreadsCreate,
    #[serde(rename = "threads.add_user_message")]
    ThreadsAddUserMessage,
    #[serde(rename = "threads.add_client_tool_output")]
    ThreadsAddClientToolOutput,
    #[serde(rename = "threads.add_structured_input")]
    ThreadsAddStructuredInput,
    #[serde(rename = "threads.retry_after_item")]
    ThreadsRetryAfterItem,
    #[serde(rename = "threads.custom_action")]
    ThreadsCustomAction,
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/chatkit", post(chatkit_request))
}

/// One ChatKit request (`{"type", "params", "metadata"}`), answered in ChatKit's wire form:
/// `threads.get_by_id`, `threads.list`, `items.list`, `threads.update`, `threads.delete`,
/// `items.feedback`, `attachments.create`, `attachments.delete` as JSON; `threads.create`,
/// `threads.add_user_message`, `threads.add_client_tool_output`,
/// `threads.add_structured_input`, `threads.retry_after_item` and `threads.custom_action` as
/// `text/event-stream` (`data: <json>` frames) from the configured responder.
/// `input.transcribe` and `threads.sync_custom_action` answer 400 while no handler is
/// configured.
#[utoipa::path(post, path = "/chatkit", tag = "chatkit",
    request_body(content = ChatKitRequestBody, description = "A ChatKit request; JSON nesting at most \
        127 arrays and objects deep"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The SDK's JSON answer (wire form), or its event stream",
            content((Object = "application/json"), (crate::sse::ServerSentEvent = "text/event-stream"))),
        (status = 400, description = "Unknown or malformed request, or one this server cannot answer", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "The thread does not exist for this user", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ))]
pub(crate) async fn chatkit_request(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(
            "expected a JSON body with Content-Type: application/json".into(),
        ));
    }
    let request = ChatKitRequest::parse(&body?)?;
    let origin = match &state.settings.server.public_url {
        Some(url) if !url.is_empty() => url.clone(),
        _ => request_origin(&headers),
    };
    let urls = SignedUrls { state: &state, origin };
    match engine(&state).process(&user, request, &urls).await? {
        Answer::Json(value) => Ok(Json(value).into_response()),
        Answer::Stream(events) => Ok(sse::response(events.map(|event| sse::frame(&event)))),
    }
}

/// The ChatKit engine over this server's database and responder.
pub(crate) fn engine(state: &AppState) -> ChatKitServer {
    let limits = Limits {
        max_attachment_bytes: state.settings.attachments.max_bytes as u64,
        stalled_client: state.stalled_client(),
    };
    ChatKitServer::new(state.db.clone(), state.responder.clone(), limits)
}

/// Attachment URLs on this server (`/attachments/{id}/content`), signed and expiring, as the
/// client reached it.
struct SignedUrls<'a> {
    state: &'a AppState,
    origin: String,
}

impl SignedUrls<'_> {
    fn url(&self, access: Access, user: &str, attachment_id: &str, ttl: u64) -> Option<String> {
        let now = chrono::Utc::now().timestamp();
        let expires = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let signature = self.state.urls.sign(access, user, attachment_id, expires)?;
        Some(format!(
            "{}?user={}&expires={expires}&signature={signature}",
            content_url(&self.origin, attachment_id),
            percent_encode(user)
        ))
    }
}

impl AttachmentUrls for SignedUrls<'_> {
    fn upload(&self, user: &str, attachment_id: &str) -> Option<String> {
        let ttl = self.state.settings.attachments.url_ttl_secs;
        self.url(Access::Upload, user, attachment_id, ttl)
    }

    fn preview(&self, user: &str, attachment_id: &str) -> Option<String> {
        let ttl = self.state.settings.attachments.preview_url_ttl_secs;
        self.url(Access::Download, user, attachment_id, ttl)
    }
}

/// `{origin}/attachments/{id}/content`, the id percent-encoded as one path segment.
fn content_url(origin: &str, attachment_id: &str) -> String {
    format!(
        "{}/attachments/{}/content",
        origin.trim_end_matches('/'),
        percent_encode(attachment_id)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
