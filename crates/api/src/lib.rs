//! chatstore's HTTP API: settings, startup, routes, and the error and auth plumbing they share.
//!
//! `main.rs` only parses the command line; everything else lives here so that tests can build
//! and run the real server in-process on port 0.

pub mod auth;
pub mod error;
pub mod extract;
pub mod metrics;
mod openapi;
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
