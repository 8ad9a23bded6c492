//! The web console (`GET /console`): a page and its scripts and styles, compiled into the
//! binary, and the development sign-in route it uses.
//!
//! The assets are plain files under `crates/api/console/`, written by hand with no build
//! step, so `cargo run` needs no Node. They hold no data and need no token; everything they
//! show they fetch with the token the user signs in with. That page holds a bearer token and
//! shows arbitrary user JSON, so every answer of this module carries a strict
//! Content-Security-Policy: scripts, styles, images and requests only from this server, no
//! inline script or style, no framing.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Json;
use crate::settings::DEVELOPMENT_JWT_SECRET;
use crate::state::AppState;

/// The longest user name the development sign-in accepts, in characters (as JSON Schema's
/// `maxLength` counts them).
const MAX_USER_CHARS: usize = 255;

/// The policy of every console answer. `connect-src 'self'` covers the API calls and the
/// ChatKit stream, `img-src 'self'` the signed attachment URLs this server hands out.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// An embedded file: its name under `/console/`, its media type, and its bytes.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console but its page. The page loads `app.js`, which imports the rest.
const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        media_type: "text/css; charset=utf-8",
        body: include_str!("../../console/style.css"),
    },
    Asset { name: "app.js", media_type: JS, body: include_str!("../../console/app.js") },
    Asset { name: "api.js", media_type: JS, body: include_str!("../../console/api.js") },
    Asset { name: "dom.js", media_type: JS, body: include_str!("../../console/dom.js") },
    Asset { name: "reader.js", media_type: JS, body: include_str!("../../console/reader.js") },
    Asset { name: "lists.js", media_type: JS, body: include_str!("../../console/lists.js") },
    Asset { name: "composer.js", media_type: JS, body: include_str!("../../console/composer.js") },
];

const PAGE: &str = include_str!("../../console/index.html");

#[derive(utoipa::OpenApi)]
#[openapi(paths(console_page, dev_token), components(schemas(DevTokenRequest, DevTokenResponse)))]
pub(crate) struct Doc;

pub(crate) fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route("/console", get(console_page))
        .route("/console/dev-token", post(dev_token));
    // One route per file, so any other name is the API's plain 404.
    for asset in ASSETS {
        router = router.route(
            &format!("/console/{}", asset.name),
            get(move || async move { with_console_headers(asset.media_type, asset.body) }),
        );
    }
    router
}

/// Adds each console file to the OpenAPI document: the files are a list, not a pattern.
pub(crate) fn document_assets(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder};
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    for asset in ASSETS {
        let media_type = asset.media_type.split(';').next().unwrap_or(asset.media_type);
        let response = ResponseBuilder::new()
            .description("The file, embedded in the binary; no token needed")
            .content(media_type, ContentBuilder::new().build())
            .build();
        let operation = OperationBuilder::new()
            .tag("console")
            .summary(Some(format!("The console's {}", asset.name)))
            .operation_id(Some(format!("console_{}", asset.name.replace('.', "_"))))
            .response("200", response)
            .build();
        document.paths.add_path_operation(
            format!("/console/{}", asset.name),
            vec![HttpMethod::Get],
            operation,
        );
    }
}

/// The console's page: a single-page app over the routes of this API. It loads
/// `/console/app.js` and `/console/style.css`, which load the other files listed here.
#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 200, description = "The console's HTML page; no token needed", content_type = "text/html")))]
pub(crate) async fn console_page() -> Response {
    with_console_headers("text/html; charset=utf-8", PAGE)
}

/// `{"user": str}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DevTokenRequest {
    /// The user id to sign in as (the token's `sub`): 1 to 255 characters, without NUL.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\u0000]*$")]
    user: String,
}

/// `{"token": str}`
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DevTokenResponse {
    /// A bearer token for the user, as `chatstore token USER` prints.
    token: String,
}

/// Development only: a token for any user name, so the console can sign in by name. It
/// exists only while the server verifies tokens with the development secret (which anyone
/// can read in the source, so such a server protects nothing anyway); otherwise `404`.
#[utoipa::path(post, path = "/console/dev-token", tag = "console",
    request_body = DevTokenRequest,
    responses(
        (status = 200, description = "A token for the user", body = DevTokenResponse),
        (status = 400, description = "No user, or a user id that is empty, too long or has a NUL", body = ErrorBody),
        (status = 404, description = "The server does not use the development secret", body = ErrorBody),
    ))]
pub(crate) async fn dev_token(
    State(state): State<AppState>,
    body: Result<Json<DevTokenRequest>, ApiError>,
) -> ApiResult<Json<DevTokenResponse>> {
    // Whether the route exists comes first: elsewhere it is a 404 whatever the body.
    if state.settings.auth.secret() != Some(DEVELOPMENT_JWT_SECRET) {
        return Err(ApiError::not_found("no such route"));
    }
    let Json(DevTokenRequest { user }) = body?;
    if user.is_empty() || user.chars().count() > MAX_USER_CHARS || user.contains('\0') {
        return Err(ApiError::invalid(format!(
            "user must be 1 to {MAX_USER_CHARS} characters without NUL"
        )));
    }
    let token = crate::auth::mint_token(&state.settings.auth, &user).map_err(ApiError::Internal)?;
    Ok(Json(DevTokenResponse { token }))
}

/// A console file with the headers that keep a hostile item from doing anything: the policy
/// above, no MIME sniffing, no referrer (a signed URL must not leak), no framing.
fn with_console_headers(media_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, media_type)], body).into_response();
    let headers = response.headers_mut();
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change with the binary, not by name: revalidate rather than cache blindly.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}
