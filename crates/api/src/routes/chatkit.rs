//! `POST /chatkit`: the ChatKit protocol endpoint a ChatKit front end talks to.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::post;

use crate::chatkit::{self, Origin};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::AuthUser;
use crate::state::AppState;
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(chatkit_request),
    components(schemas(ChatKitRequest)),
    tags((name = "chatkit", description = "The ChatKit protocol, as `chatkit.server.ChatKitServer.process()` answers it"))
)]
pub(crate) struct Doc;

/// Where the client reached us: a proxy's `X-Forwarded-Proto`/`X-Forwarded-Host`, else
/// `http://` and `Host`. (`server.public_url`, when set, wins over both.)
fn request_origin(headers: &HeaderMap) -> Origin {
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
    Origin(format!("{scheme}://{host}"))
}

/// A ChatKit request, as chatkit-python's `ChatKitReq` models it. What `params` holds depends
/// on `type` (chatkit-python's `*Params` models); a request without what its type needs, or
/// naming an id this user does not have, is a 400 or a 404.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body, which `chatkit::process` parses
pub(crate) struct ChatKitRequest {
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
    request_body(content = ChatKitRequest, description = "A ChatKit request; JSON nesting at most \
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
    let body = body?;
    let origin = match &state.settings.server.public_url {
        Some(url) if !url.is_empty() => Origin(url.clone()),
        _ => request_origin(&headers),
    };
    chatkit::process(&state, &user, &origin, &body).await
}
