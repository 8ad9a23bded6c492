//! Prometheus metrics: request counts and latencies per route, and the database pool.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use repositories::Db;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    /// The route template (`/sessions/{session_id}/items`), never the raw path, so that ids do
    /// not become label values.
    route: String,
    status: u16,
}

/// What the retention sweeper deleted, and under which rule.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetentionLabels {
    /// `chat` or `thread`.
    kind: &'static str,
    /// `idle_days` or `inactive_days`.
    rule: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    pool_connections: Gauge,
    pool_idle: Gauge,
    retention_deleted: Family<RetentionLabels, Counter>,
    index_batches: Counter,
    indexed_entries: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RouteLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
        });
        let pool_connections = Gauge::default();
        let pool_idle = Gauge::default();
        let mut registry = Registry::with_prefix("chatstore");
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to the start of the body for streams)",
            durations.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Open database connections",
            pool_connections.clone(),
        );
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections",
            pool_idle.clone(),
        );
        let retention_deleted = Family::<RetentionLabels, Counter>::default();
        registry.register(
            "retention_deleted",
            "Conversations deleted for good by the retention sweeper",
            retention_deleted.clone(),
        );
        let index_batches = Counter::default();
        registry.register(
            "search_index_batches",
            "Batches the background search indexer ran (none while nothing is written)",
            index_batches.clone(),
        );
        let indexed_entries = Counter::default();
        registry.register(
            "search_indexed_entries",
            "Search entries written by the background indexer",
            indexed_entries.clone(),
        );
        Self {
            registry,
            requests,
            durations,
            pool_connections,
            pool_idle,
            retention_deleted,
            index_batches,
            indexed_entries,
        }
    }
}

impl Metrics {
    /// Counts `deleted` conversations of `kind` (`chat`, `thread`) that retention `rule`
    /// (`idle_days`, `inactive_days`) removed.
    pub fn count_retention(&self, kind: &'static str, rule: &'static str, deleted: u64) {
        self.retention_deleted.get_or_create(&RetentionLabels { kind, rule }).inc_by(deleted);
    }

    /// Counts one background indexing batch, which wrote `entries` search entries.
    pub fn count_index_batch(&self, entries: u64) {
        self.index_batches.inc();
        self.indexed_entries.inc_by(entries);
    }

    /// The Prometheus text exposition of every metric, with the pool gauges read now.
    pub fn render(&self, db: &Db) -> String {
        let (size, idle) = db.pool_status();
        self.pool_connections.set(i64::from(size));
        self.pool_idle.set(i64::try_from(idle).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Middleware recording every request under its route template.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Label values must come from a small fixed set: any string is a valid HTTP method.
    let method = match request.method().as_str() {
        known @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => known,
        _ => "other",
    }
    .to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let labels = RouteLabels { method, route, status: response.status().as_u16() };
    metrics.requests.get_or_create(&labels).inc();
    metrics.durations.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    response
}
