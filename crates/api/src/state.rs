//! What every handler can reach.

use std::sync::Arc;

use repositories::Db;

use crate::auth::TokenVerifier;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::signed_urls::UrlSigner;

/// What every handler can reach, behind one shared allocation. axum clones the state into
/// every route and middleware service a request passes through, several times a request: with
/// a reference count per field (the pool, the verifier, the metrics, ...) those clones and
/// their drops, each count's cache line moving between cores, took 15% of the server's CPU at
/// 16 clients. Now each clone is one count.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state's contents.
#[derive(Debug)]
pub struct Shared {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub verifier: TokenVerifier,
    pub metrics: Arc<Metrics>,
    pub urls: UrlSigner,
    /// Permits for streamed full-history reads, each of which holds a pooled connection.
    pub full_reads: Arc<tokio::sync::Semaphore>,
    /// What answers ChatKit threads and agent turns.
    pub responder: Arc<dyn crate::responder::Responder>,
}

impl Shared {
    /// How long a streaming client may take to accept the next frame before it counts as gone.
    pub fn stalled_client(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.settings.server.stalled_read_timeout_secs)
    }
}
