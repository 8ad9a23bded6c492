//! The OpenAI Agents SDK `Session` protocol, in Rust.
//!
//! A [`Session`] is an agent's conversation memory: [`get_items`](Session::get_items) returns
//! the latest items oldest first, [`add_items`](Session::add_items) appends a batch,
//! [`pop_item`](Session::pop_item) removes the newest, [`clear_session`](Session::clear_session)
//! empties it. Two implementations share one conformance suite:
//!
//! - [`StoreSession`]: in-process, over chatstore's repositories, for agents linked with the
//!   library;
//! - [`HttpSession`]: over chatstore's HTTP API, for agents talking to a remote server.

mod compaction;
mod error;
mod http;
mod item;
mod store;

pub use compaction::{CompactableSession, CompactionSnapshot};
pub use error::SessionError;
pub use http::HttpSession;
pub use item::Item;
pub use store::StoreSession;

/// Per-session defaults, as the SDK's `SessionSettings`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSettings {
    /// How many items `get_items(None)` returns; `None` means all of them.
    pub limit: Option<usize>,
}

impl SessionSettings {
    /// An explicit limit wins (so `Some(0)` is honoured); `None` falls back to the settings.
    pub fn resolve(&self, explicit: Option<usize>) -> Option<usize> {
        explicit.or(self.limit)
    }
}

/// An agent's conversation memory.
#[async_trait::async_trait]
pub trait Session: Send + Sync {
    /// The session's id.
    fn session_id(&self) -> &str;

    /// The session's defaults.
    fn settings(&self) -> SessionSettings;

    /// The latest `limit` items, oldest first; every item when both `limit` and the settings'
    /// limit are `None`; none for `Some(0)` or an unknown session.
    async fn get_items(&self, limit: Option<usize>) -> Result<Vec<Item>, SessionError>;

    /// Appends `items` as one batch, in order, atomically; creates the session. An empty batch
    /// does nothing.
    async fn add_items(&self, items: &[Item]) -> Result<(), SessionError>;

    /// Removes and returns the newest item, or `None` when the session is empty.
    async fn pop_item(&self) -> Result<Option<Item>, SessionError>;

    /// Removes every item.
    async fn clear_session(&self) -> Result<(), SessionError>;
}
