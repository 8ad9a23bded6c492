//! What every handler can reach.

use std::sync::Arc;

use repositories::Db;

use crate::auth::TokenVerifier;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::signed_urls::UrlSigner;

#[derive(Debug, Clone)]
pub struct AppState {
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

impl AppState {
    /// How long a streaming client may take to accept the next frame before it counts as gone.
    pub fn stalled_client(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.settings.server.stalled_read_timeout_secs)
    }
}
