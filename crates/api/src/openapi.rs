//! The OpenAPI document (`GET /openapi.json`) and its interactive page (`GET /docs`).

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::routes::{
    attachment_content, chatkit, chats, console, data, health, memory, run, search, sessions,
    threads,
};

/// The whole document: the shared parts below, plus each route module's own `Doc`.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.merge(health::Doc::openapi());
    document.merge(sessions::Doc::openapi());
    document.merge(memory::Doc::openapi());
    document.merge(chats::Doc::openapi());
    document.merge(threads::Doc::openapi());
    document.merge(attachment_content::Doc::openapi());
    document.merge(chatkit::Doc::openapi());
    document.merge(run::Doc::openapi());
    document.merge(console::Doc::openapi());
    console::document_assets(&mut document);
    document.merge(data::Doc::openapi());
    document.merge(search::Doc::openapi());
    document_shared_rules(&mut document);
    document
}

/// Writes down, on every operation they concern, the rules every route shares, so that no
/// route can forget one: they are enforced in one place each too.
///
/// - A path id is any UTF-8 text of 1 to 255 bytes without NUL (`repositories::Id`).
/// - A request with parameters or a body can be malformed: `400`.
/// - A JSON body can be too large (`413`) or not JSON (`415`), as `extract::Json` answers.
/// - Any request can meet the connection cap or an unreachable database: `503`.
fn document_shared_rules(document: &mut utoipa::openapi::OpenApi) {
    for item in document.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            document_operation_rules(operation);
        }
    }
}

fn document_operation_rules(operation: &mut Operation) {
    let mut has_input = operation.request_body.is_some();
    for parameter in operation.parameters.iter_mut().flatten() {
        has_input = true;
        let RefOr::T(parameter) = parameter else { continue };
        if parameter.parameter_in == ParameterIn::Path {
            parameter.schema = Some(id_schema());
            let description = parameter.description.get_or_insert_with(String::new);
            description.push_str(" (1 to 255 bytes of UTF-8, without NUL; percent-encoded)");
        }
    }
    let takes_json = operation.request_body.as_ref().is_some_and(|body| match body {
        RefOr::T(body) => body.content.contains_key("application/json"),
        RefOr::Ref(_) => false,
    });
    let responses = &mut operation.responses.responses;
    let mut add = |status: &str, description: &str| {
        responses.entry(status.to_owned()).or_insert_with(|| error_response(description));
    };
    if has_input {
        add("400", "Malformed request: a bad id, query parameter, header or body");
    }
    if takes_json {
        add("413", "The body is larger than `server.body_limit_bytes`");
        add("415", "The body is not sent as `Content-Type: application/json`");
    }
    add(
        "503",
        "The server is at its connection limit, or its database is unreachable; retry after \
         `Retry-After` seconds",
    );
}

/// The schema of an id in a path.
fn id_schema() -> RefOr<utoipa::openapi::Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(255))
        .pattern(Some("^[^\\u0000]*$"))
        .into()
}

fn error_response(description: &str) -> RefOr<Response> {
    let body = Content::new(Some(Ref::from_schema_name("ErrorBody")));
    RefOr::T(
        utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content("application/json", body)
            .build(),
    )
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "chatstore",
        description = "Durable, multi-tenant storage for AI chat applications: chats, agent \
                       session memory (OpenAI Agents SDK `Session`), and the ChatKit store and \
                       protocol.\n\nEvery route except the operations routes needs \
                       `Authorization: Bearer <JWT>`; the user is the token's `sub`. Errors are \
                       `{\"error\": {\"code\", \"message\"}}`.\n\nEvery JSON value that is \
                       stored (a session or conversation item, a ChatKit thread, item or \
                       attachment, a ChatKit request) may nest at most 127 arrays and objects, \
                       the most serde_json reads back; deeper is a 400 that stores nothing."
    ),
    components(schemas(ErrorBody, ErrorDetail, crate::sse::ServerSentEvent)),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Liveness, readiness and metrics; no token needed"),
        (name = "sessions", description = "Agent session memory: the OpenAI Agents SDK `Session` \
            protocol (`get_items`, `add_items`, `pop_item`, `clear_session`)"),
        (name = "memory", description = "Advanced agent memory: conditional tail replace \
            (compaction), turns, branches and run usage (the SDK's `AdvancedSQLiteSession`)"),
        (name = "console", description = "The web console at `/console`: its page and files \
            need no token; it signs in with a bearer token"),
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
