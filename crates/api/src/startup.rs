//! Building and running the server: testable on port 0, stoppable on demand.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::{ListenerExt, TapIo};
use repositories::{Backend, Db, IndexChange};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::TokenVerifier;
use crate::error::ApiError;
use crate::metrics::{self, Metrics};
use crate::openapi;
use crate::responder::{self, Responder};
use crate::routes;
use crate::serve::{self, ConnectionLimits};
use crate::settings::{IdempotencySettings, SearchSettings, Settings};
use crate::signed_urls::UrlSigner;
use crate::state::{AppState, Shared};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The listener every connection is accepted through, set up by [`tune_connection`].
type TunedListener = TapIo<TcpListener, fn(&mut TcpStream)>;

/// A server bound to its port, ready to run. It opens its database once running, and until
/// then answers `/healthz` and the documentation, and 503 with `Retry-After` to the rest.
#[derive(Debug)]
pub struct Application {
    listener: TunedListener,
    settings: Settings,
    verifier: TokenVerifier,
    responder: Arc<dyn Responder>,
    limits: ConnectionLimits,
    /// Holds the whole API once the database is open; every request looks here first.
    serving: watch::Sender<Option<Serving>>,
}

/// The whole API over an open database, and that database (closed at shutdown).
#[derive(Debug, Clone)]
struct Serving {
    router: Router,
    db: Db,
}

/// Resolves when a running server has opened its database and serves the whole API.
#[derive(Debug, Clone)]
pub struct Readiness(watch::Receiver<Option<Serving>>);

impl Readiness {
    /// Waits until the whole API is served; an error once the server stops without getting
    /// there (its database could not be opened, or it was stopped first).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        match self.0.wait_for(Option::is_some).await {
            Ok(_) => Ok(()),
            Err(_) => anyhow::bail!("the server stopped before its database was ready"),
        }
    }
}

impl Application {
    /// Checks the configuration and binds the listener (port 0 picks a free one). The
    /// database is opened by [`Application::run_until`], so that the server answers at once.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let responder = responder::from_settings(&settings.responder)?;
        Self::build_with_responder(settings, responder).await
    }

    /// [`Application::build`], with a responder of the caller's own instead of the configured
    /// one: how a Rust program plugs in its agent (as a Python one subclasses `ChatKitServer`).
    pub async fn build_with_responder(
        settings: Settings,
        responder: Arc<dyn Responder>,
    ) -> anyhow::Result<Self> {
        let verifier = TokenVerifier::from_settings(&settings.auth)?;
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?
            .tap_io(tune_connection as fn(&mut TcpStream));
        let limits = ConnectionLimits::from_settings(&settings.server);
        let (serving, _) = watch::channel(None);
        Ok(Self { listener, settings, verifier, responder, limits, serving })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound TcpListener always has a local address.
        axum::serve::Listener::local_addr(&self.listener)
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// What resolves once the database is open and the whole API is served.
    pub fn readiness(&self) -> Readiness {
        Readiness(self.serving.subscribe())
    }

    /// Serves until SIGTERM or SIGINT, then finishes in-flight requests. The signals are
    /// caught from this call on, before the returned future is first polled.
    pub fn run_until_stopped(self) -> impl Future<Output = anyhow::Result<()>> {
        self.run_until(shutdown_signal())
    }

    /// Opens the database and serves until `shutdown` completes, then stops accepting
    /// connections and waits (up to the configured timeout) for in-flight requests to finish.
    /// Fails when the database cannot be opened within `database.startup_timeout_secs`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self { listener, settings, verifier, responder, limits, serving } = self;
        let timeout = Duration::from_secs(settings.server.shutdown_timeout_secs);
        let served = serving.subscribe();
        let opening = tokio::spawn(open_database(settings, verifier, responder, serving));
        let stop_opening = opening.abort_handle();
        let failed = async move {
            match opening.await {
                Ok(Err(err)) => err,
                Err(err) => anyhow::Error::new(err).context("opening the database failed"),
                // Once open, it prunes idempotency keys until it is aborted.
                Ok(Ok(())) => std::future::pending().await,
            }
        };
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let server = serve::serve(listener, gate(served.clone()), limits, async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stopping_tx.send(());
        });
        let deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(timeout).await;
            } else {
                // The server ended without a shutdown request; let `server` report how.
                std::future::pending::<()>().await;
            }
        };
        let outcome = tokio::select! {
            () = server => Ok(()),
            () = deadline => {
                tracing::warn!(?timeout, "shutdown timed out; dropping open connections");
                Ok(())
            }
            err = failed => Err(err),
        };
        stop_opening.abort();
        let db = served.borrow().as_ref().map(|serving| serving.db.clone());
        if let Some(db) = db {
            db.close().await;
        }
        outcome
    }
}

/// Opens the database (retrying while it wakes up, for `database.startup_timeout_secs`),
/// migrates it when configured, then serves the whole API, prunes expired idempotency keys
/// and sweeps by the retention rules until aborted. Returns only when the database cannot be opened.
async fn open_database(
    settings: Settings,
    verifier: TokenVerifier,
    responder: Arc<dyn Responder>,
    serving: watch::Sender<Option<Serving>>,
) -> anyhow::Result<()> {
    let db = Db::connect(&settings.database).await.with_context(|| {
        format!("cannot connect to the database at {}", settings.database.redacted_url())
    })?;
    if settings.database.migrate_on_start {
        db.migrate().await.context("cannot migrate the database")?;
    }
    configure_search(&db, settings.search.enabled).await?;
    let idempotency = settings.idempotency.clone();
    let urls = UrlSigner::new(settings.attachments.url_signing_secret(), settings.auth.secret());
    let full_reads = Arc::new(tokio::sync::Semaphore::new(
        (settings.database.max_connections as usize / 4).max(1),
    ));
    let retention = settings.retention.clone();
    let search = settings.search.clone();
    let metrics = Arc::new(Metrics::default());
    let state = AppState::new(Shared {
        responder,
        full_reads,
        urls,
        db: db.clone(),
        settings: Arc::new(settings),
        verifier,
        metrics: metrics.clone(),
    });
    serving.send_replace(Some(Serving { router: router(state), db: db.clone() }));
    tracing::info!("the database is open: serving every route");
    // They run until this task is aborted (at shutdown).
    tokio::join!(
        prune_idempotency_keys(db.clone(), idempotency),
        index_appended_items(db.clone(), search, metrics.clone()),
        checkpoint_sqlite_log(db.clone()),
        crate::retention::sweep_forever(db, retention, metrics),
    );
    Ok(())
}

/// Applies `search.enabled` to the database's index (see `Search::configure`).
async fn configure_search(db: &Db, enabled: bool) -> anyhow::Result<()> {
    let change = db.search().configure(enabled).await.context("cannot apply search.enabled")?;
    match change {
        IndexChange::Unchanged => {}
        IndexChange::Rebuilt(entries) => {
            tracing::info!(entries, "search switched on: the index was rebuilt");
        }
        IndexChange::Emptied => tracing::info!("search switched off: the index was emptied"),
    }
    Ok(())
}

/// What the server answers with: the whole API once the database is open, and the starting
/// routes before that. (Each router has its own middleware, inside its routing, so that the
/// request spans name the matched route.)
fn gate(served: watch::Receiver<Option<Serving>>) -> Router {
    let starting = starting_router();
    Router::new().fallback(move |request: Request<axum::body::Body>| {
        let router = match &*served.borrow() {
            Some(serving) => serving.router.clone(),
            None => starting.clone(),
        };
        router.oneshot(request)
    })
}

/// Turns Nagle's algorithm off on an accepted connection. A streamed answer is many small
/// writes; with Nagle on, each write after the first waits for the client's delayed ACK (40 ms
/// on Linux) whenever the connection is kept alive, so every streamed answer but the first
/// stalled.
fn tune_connection(stream: &mut TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::warn!(error = %err, "cannot set TCP_NODELAY on an accepted connection");
    }
}

/// Indexes what writes left for search (see `repositories::SearchIndex`): a batch every
/// `index_interval_ms` while batches find something to index, then nothing until a write of
/// this process wakes it, so an idle server sends its database nothing (a Neon compute scales
/// to zero after five minutes without a query). The first batch, one interval after start,
/// takes what an earlier process left.
async fn index_appended_items(db: Db, settings: SearchSettings, metrics: Arc<Metrics>) {
    if !settings.enabled {
        return;
    }
    let interval = Duration::from_millis(settings.index_interval_ms.max(1));
    let index = db.search_index();
    let mut idle = false;
    loop {
        if idle {
            index.wait_for_writes().await;
        }
        // The writes of an interval are indexed together, a batch per interval under load.
        tokio::time::sleep(interval).await;
        idle = true;
        // Another batch at once only while the last one left older items waiting; what a
        // steady stream of appends adds meanwhile waits for the next interval, so that indexing
        // stays a batch per interval instead of running without pause beside the appends.
        loop {
            match index.index_batch().await {
                Ok(batch) => {
                    metrics.count_index_batch(batch.entries);
                    idle &= !batch.indexed_any();
                    if !batch.more_waiting {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "indexing appended items for search failed");
                    // Tried again after the next interval, not at the next write.
                    idle = false;
                    break;
                }
            }
        }
    }
}

/// How often the server checkpoints a SQLite file's write-ahead log.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Checkpoints a SQLite file's write-ahead log every [`CHECKPOINT_INTERVAL`], so that appends
/// never pay for it (see `Db::checkpoint_wal`); returns at once on PostgreSQL.
async fn checkpoint_sqlite_log(db: Db) {
    if db.backend() != Backend::Sqlite {
        return;
    }
    let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(err) = db.checkpoint_wal().await {
            tracing::warn!(error = %err, "checkpointing the SQLite log failed");
        }
    }
}

/// Forgets expired idempotency keys, now and then every `prune_interval_secs`.
async fn prune_idempotency_keys(db: Db, settings: IdempotencySettings) {
    let ttl = chrono::Duration::seconds(i64::try_from(settings.key_ttl_secs).unwrap_or(i64::MAX));
    let mut interval = tokio::time::interval(Duration::from_secs(settings.prune_interval_secs));
    loop {
        interval.tick().await;
        let cutoff = chrono::Utc::now() - ttl;
        match db.sessions().prune_idempotency_keys(cutoff).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "forgot expired idempotency keys"),
            Err(err) => tracing::warn!(error = %err, "pruning idempotency keys failed"),
        }
    }
}

/// The whole API over an open database: routes, documentation, and their middleware.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.server.body_limit_bytes;
    let api = routes::router(&state.settings)
        .merge(docs())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|request: Request<axum::body::Body>| async move {
            ApiError::MethodNotAllowed(format!("{} is not allowed on this route", request.method()))
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::track))
        .with_state(state);
    with_request_layers(api)
}

/// What answers until the database is open: `/healthz` and the documentation, and 503 with
/// `Retry-After` to everything else (`/readyz` included).
fn starting_router() -> Router {
    let starting = Router::new()
        .route("/healthz", get(routes::health::healthz))
        .merge(docs())
        .fallback(|| async { ApiError::Starting });
    with_request_layers(starting)
}

/// `/openapi.json` and the interactive reference at `/docs`: no database needed.
fn docs<S: Clone + Send + Sync + 'static>() -> Router<S> {
    SwaggerUi::new("/docs").url("/openapi.json", openapi::document()).into()
}

/// The middleware every request goes through, whether the database is open yet or not.
fn with_request_layers(router: Router) -> Router {
    router
        .layer(axum::middleware::from_fn(close_after_refused_body))
        .layer(CatchPanicLayer::custom(|_panic| {
            // The panic message is logged by the panic hook; the client learns nothing of it.
            ApiError::Internal(anyhow::anyhow!("a request handler panicked")).into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<axum::body::Body>| {
            let request_id =
                request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            // The route template, not the raw path: ids stay out of the logs' span fields.
            let route =
                request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
            tracing::info_span!("request", method = %request.method(), route, request_id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
}

/// An error answered before the request body was read (a 401 or 413 on a POST, say) leaves the
/// rest of the body in the connection, so it cannot carry another request. Say so with
/// `Connection: close`, or a client reuses it and its next request fails.
async fn close_after_refused_body(request: Request<axum::body::Body>, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers.get(header::CONTENT_LENGTH).is_some_and(|length| length != "0");
    let mut response = next.run(request).await;
    if has_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Registers for SIGTERM and SIGINT at once, and completes on the first of them. Registering
/// before the server says where it listens makes a signal sent as soon as it is up a clean
/// shutdown, not the default kill; a lazily polled `ctrl_c()` left that window open.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        let received = |signal: Option<Signal>| async move {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        async move {
            tokio::select! {
                () = received(terminate) => {},
                () = received(interrupt) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use axum::serve::Listener;

    use super::*;

    /// Every connection the server accepts must have Nagle's algorithm off: with it on, the
    /// second streamed answer on a kept-alive connection stalls for the client's delayed ACK.
    #[tokio::test]
    async fn accepted_connections_have_tcp_nodelay() {
        let file =
            std::env::temp_dir().join(format!("chatstore-nodelay-{}.db", uuid::Uuid::new_v4()));
        let env = HashMap::from([
            ("APP_ENV".to_owned(), "test".to_owned()),
            ("DATABASE_URL".to_owned(), format!("sqlite://{}?mode=rwc", file.display())),
        ]);
        let mut app = Application::build(Settings::load_from_env(&env).unwrap()).await.unwrap();
        let client = TcpStream::connect(app.local_addr()).await.unwrap();
        // A fresh client socket has Nagle on, so the option below was set by the server.
        assert!(!client.nodelay().unwrap());
        let (accepted, _) = app.listener.accept().await;
        assert!(accepted.nodelay().unwrap(), "the server accepted a connection with Nagle on");
        drop(app);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }
}
