//! chatstore's HTTP API: settings, startup, routes, and the error and auth plumbing they share.
//!
//! `main.rs` only parses the command line; everything else lives here so that tests can build
//! and run the real server in-process on port 0.

pub mod auth;
pub mod copy;
pub mod error;
pub mod extract;
/// What the API accepts from clients, parsed and checked once: the very types and functions
/// the handlers use, public so that the fuzz targets (`fuzz/`) run them too.
pub mod input {
    pub use crate::routes::chats::ListQuery;
    pub use crate::routes::sessions::{AddItemsRequest, idempotency_key};
    pub use crate::routes::{PageOrder, object_items, page_limit};
}
pub mod metrics;
mod openapi;
mod retention;
mod routes;
mod serve;
pub mod settings;
pub mod signed_urls;
mod sse;
pub mod startup;
pub mod state;
pub mod telemetry;

/// Responders live in the ChatKit engine; re-exported for Rust programs that plug theirs into
/// [`startup::Application::build_with_responder`].
pub use chatkit_server::responder;
