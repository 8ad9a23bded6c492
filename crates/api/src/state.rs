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
