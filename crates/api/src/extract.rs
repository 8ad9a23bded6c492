//! Extractors whose rejections use the error shape of `API.md`.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};

use repositories::Id;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `axum::Json`, with malformed bodies answered as `400`/`413`/`415` error JSON.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// `axum::extract::Query`, with bad query strings answered as `400` error JSON.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum_extra::extract::Query`, which also reads a parameter given more than once
/// (`?tag=a&tag=b`) into a list, with bad query strings answered as `400` error JSON.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum_extra::extract::Query), rejection(ApiError))]
pub struct RepeatedQuery<T>(pub T);

/// `axum::extract::Path`, with undecodable segments answered as `400` error JSON. Ids in a
/// path are extracted as [`repositories::Id`], so a bad one is a `400` before the handler runs.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(
                "expected a JSON body with Content-Type: application/json".into(),
            ),
            JsonRejection::JsonSyntaxError(err) => {
                Self::InvalidRequest(format!("malformed JSON: {}", err.body_text()))
            }
            JsonRejection::JsonDataError(err) => {
                Self::InvalidRequest(format!("unexpected JSON: {}", err.body_text()))
            }
            JsonRejection::BytesRejection(err) => err.into(),
            other => {
                Self::InvalidRequest(format!("unreadable request body: {}", other.body_text()))
            }
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge("the request body is larger than this server accepts".into())
        } else {
            Self::InvalidRequest(format!("unreadable request body: {}", rejection.body_text()))
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::InvalidRequest(format!("bad query string: {}", rejection.body_text()))
    }
}

impl From<axum_extra::extract::QueryRejection> for ApiError {
    fn from(rejection: axum_extra::extract::QueryRejection) -> Self {
        Self::InvalidRequest(format!("bad query string: {}", rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::InvalidRequest(format!("bad path: {}", rejection.body_text()))
    }
}

/// The authenticated caller: the `sub` of a valid bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser(pub String);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(state, parts.headers.get(AUTHORIZATION)).map(Self)
    }
}

/// The user of an `Authorization` header's bearer token.
pub(crate) fn authenticate(state: &AppState, header: Option<&HeaderValue>) -> ApiResult<String> {
    let header = header
        .map(|value| {
            value.to_str().map_err(|_| {
                ApiError::Unauthorized("the Authorization header is not valid text".into())
            })
        })
        .transpose()?;
    let user = state.verifier.verify_header(header)?;
    // The user id keys every row: it must be storable like any other id.
    let user = Id::parse("the token's sub", user)
        .map_err(|err| ApiError::Unauthorized(err.to_string()))?;
    Ok(user.into_string())
}
