//! The OpenAPI document (`GET /openapi.json`) and its interactive page (`GET /docs`).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::routes::{attachment_content, chatkit, chats, health, run, sessions, threads};

/// The whole document: the shared parts below, plus each route module's own `Doc`.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.merge(health::Doc::openapi());
    document.merge(sessions::Doc::openapi());
    document.merge(chats::Doc::openapi());
    document.merge(threads::Doc::openapi());
    document.merge(attachment_content::Doc::openapi());
    document.merge(chatkit::Doc::openapi());
    document.merge(run::Doc::openapi());
    document
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "chatstore",
        description = "Durable, multi-tenant storage for AI chat applications: chats, agent \
                       session memory (OpenAI Agents SDK `Session`), and the ChatKit store and \
                       protocol.\n\nEvery route except the operations routes needs \
                       `Authorization: Bearer <JWT>`; the user is the token's `sub`. Errors are \
                       `{\"error\": {\"code\", \"message\"}}`."
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Liveness, readiness and metrics; no token needed"),
        (name = "sessions", description = "Agent session memory: the OpenAI Agents SDK `Session` \
            protocol (`get_items`, `add_items`, `pop_item`, `clear_session`)"),
    ),
)]
pub(crate) struct ApiDoc;

/// Declares the bearer-token scheme that the authenticated routes refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}
