//! The bytes of ChatKit attachments: the target of `upload_descriptor.url`, and what an
//! image's `preview_url` shows.
//!
//! Both routes take either a bearer token or a signed URL (see `signed_urls`), because a
//! browser uploading a file or showing an image sends no token.

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use repositories::Id;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query, authenticate};
use crate::signed_urls::Access;
use crate::state::AppState;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(upload_content, download_content),
    tags((name = "attachments", description = "Attachment bytes, uploaded and served by this server"))
)]
pub(crate) struct Doc;

pub(crate) fn router(max_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/attachments/{attachment_id}/content", get(download_content).put(upload_content))
        .route_layer(DefaultBodyLimit::max(max_bytes))
}

/// The proof a signed URL carries instead of a bearer token.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SignedQuery {
    /// The owner, for a signed URL.
    user: Option<String>,
    /// Unix seconds after which the signed URL is refused.
    expires: Option<i64>,
    /// The URL's signature.
    signature: Option<String>,
}

/// The caller: the bearer token's user, or the user a valid signed URL names.
fn caller(
    state: &AppState,
    headers: &HeaderMap,
    signed: &SignedQuery,
    access: Access,
    attachment_id: &str,
) -> ApiResult<String> {
    let authorization = headers.get(header::AUTHORIZATION);
    if let (None, Some(signature)) = (authorization, &signed.signature) {
        let (Some(user), Some(expires)) = (&signed.user, signed.expires) else {
            return Err(ApiError::Unauthorized("a signed URL needs user and expires".into()));
        };
        if !state.urls.verify(access, user, attachment_id, expires, signature) {
            return Err(ApiError::Unauthorized("the signed URL is invalid or expired".into()));
        }
        return Ok(user.clone());
    }
    authenticate(state, authorization)
}

/// `image/png; charset=x` → `image/png`
fn essence(mime_type: &str) -> String {
    mime_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Uploads the attachment's bytes (the raw body), replacing any earlier upload.
#[utoipa::path(put, path = "/attachments/{attachment_id}/content", tag = "attachments",
    params(("attachment_id" = String, Path, description = "The attachment id"), SignedQuery),
    request_body(content = Vec<u8>, description = "The file, with the attachment's declared Content-Type", content_type = "application/octet-stream"),
    security(("bearer" = []), ()),
    responses(
        (status = 204, description = "Stored"),
        (status = 401, description = "No valid token or signed URL", body = ErrorBody),
        (status = 404, description = "No such attachment for this user", body = ErrorBody),
        (status = 413, description = "Larger than attachments.max_bytes", body = ErrorBody),
        (status = 415, description = "Content-Type differs from the attachment's mime_type", body = ErrorBody),
    ))]
pub(crate) async fn upload_content(
    State(state): State<AppState>,
    Path(attachment_id): Path<Id>,
    Query(signed): Query<SignedQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    // Who is asking comes before reading up to max_bytes of what they send.
    let user = caller(&state, &headers, &signed, Access::Upload, &attachment_id)?;
    let max_bytes = state.settings.attachments.max_bytes;
    let body = axum::body::to_bytes(body, max_bytes).await.map_err(|err| {
        if std::error::Error::source(&err)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
        {
            ApiError::PayloadTooLarge(format!("attachments are limited to {max_bytes} bytes"))
        } else {
            ApiError::invalid(format!("unreadable body: {err}"))
        }
    })?;
    let contents = state.db.attachment_contents();
    let declared = contents
        .declared_mime_type(&user, &attachment_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no attachment {attachment_id:?}")))?;
    let sent =
        headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if essence(sent) != essence(&declared) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "this attachment is declared as {declared}; upload it with that Content-Type"
        )));
    }
    contents.put(&user, &attachment_id, &essence(&declared), body.to_vec()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The attachment's bytes, with the type they were uploaded as (owner only).
#[utoipa::path(get, path = "/attachments/{attachment_id}/content", tag = "attachments",
    params(("attachment_id" = String, Path, description = "The attachment id"), SignedQuery),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "The bytes, with the Content-Type the attachment was declared with",
            content_type = "*/*"),
        (status = 401, description = "No valid token or signed URL", body = ErrorBody),
        (status = 404, description = "Nothing uploaded for this attachment and user", body = ErrorBody),
    ))]
pub(crate) async fn download_content(
    State(state): State<AppState>,
    Path(attachment_id): Path<Id>,
    Query(signed): Query<SignedQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let user = caller(&state, &headers, &signed, Access::Download, &attachment_id)?;
    let content =
        state.db.attachment_contents().get(&user, &attachment_id).await?.ok_or_else(|| {
            ApiError::not_found(format!("nothing uploaded for {attachment_id:?}"))
        })?;
    let content_type = HeaderValue::from_str(&content.mime_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    // Images show inline (previews); anything else downloads. Either way the browser must not
    // sniff a different type or run what it got: uploads are user content on our origin.
    let disposition = if content.mime_type.starts_with("image/") { "inline" } else { "attachment" };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static(disposition)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox")),
            (header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300")),
        ],
        content.bytes,
    )
        .into_response())
}
