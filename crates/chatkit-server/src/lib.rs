//! The ChatKit protocol engine: what `chatkit.server.ChatKitServer.process()` does, over the
//! store of `repositories::chatkit`, without HTTP.
//!
//! [`ChatKitServer::process`] takes a user (already authenticated), a typed
//! [`ChatKitRequest`] and answers JSON in ChatKit's wire form, or a stream of events that a
//! [`Responder`] produces and the engine persists as they go. A transport (the `chatstore`
//! HTTP server) parses the body with [`ChatKitRequest::parse`], authenticates, and frames the
//! answer (Server-Sent Events).

mod error;
pub mod events;
mod request;
pub mod responder;
mod server;
mod stream;
pub mod wire;

pub use error::{ChatKitError, ChatKitResult};
pub use request::*;
pub use responder::Responder;
pub use server::{Answer, AttachmentUrls, ChatKitServer, Limits};
