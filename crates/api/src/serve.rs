//! The accept loop: each connection served by hyper's HTTP/1.1 server, with the limits that
//! `axum::serve` does not have and a server facing the internet needs.
//!
//! - **A request's headers** must arrive within `header_read_timeout` of its first byte, so a
//!   client that sends half a request line and stops holds its connection only that long.
//! - **A kept-alive connection** with no request in flight is closed after `idle_timeout`
//!   (counted from the end of the last response, or from the accept). A response in flight is
//!   never cut, however quiet: a Server-Sent Events stream waiting for its model is a request
//!   in flight.
//! - **At most `max_connections`** are served at once. Past that, a connection is answered
//!   `503` with `Retry-After` and closed, rather than left to wait in the accept queue; at most
//!   as many again are being answered so at once, and beyond even that they are closed at once.
//!
//! Both timeouts follow Go's `net/http` (`ReadHeaderTimeout`, `IdleTimeout`): hyper's own header
//! timeout also runs while a kept-alive connection waits, so it could not tell the two apart.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::serve::Listener;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::settings::ServerSettings;

/// How long a connection may take over each step, and how many may be open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
}

impl ConnectionLimits {
    pub(crate) fn from_settings(settings: &ServerSettings) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(settings.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(settings.idle_timeout_secs),
            max_connections: settings.max_connections,
        }
    }
}

/// Serves `router` on every connection `listener` accepts until `shutdown` completes; then
/// stops accepting, lets each connection finish its request in flight, and returns once all
/// are closed.
pub(crate) async fn serve<L: Listener>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let served = Arc::new(Semaphore::new(limits.max_connections));
    let refused = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a receiver; `closed()` resolves once all are gone.
    let (all_closed_tx, all_closed_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        if let Ok(permit) = Arc::clone(&served).try_acquire_owned() {
            let connection = Connection { limits, permit, stop: stop_rx.clone() };
            let open = all_closed_rx.clone();
            let router = router.clone();
            tokio::spawn(async move {
                connection.serve(io, router).await;
                drop(open);
            });
        } else if let Ok(permit) = Arc::clone(&refused).try_acquire_owned() {
            if refused.available_permits() + 1 == limits.max_connections {
                tracing::warn!(limits.max_connections, "connection limit reached: answering 503");
            }
            tokio::spawn(refuse(io, limits.header_read_timeout, permit));
        }
        // Else even the refusals are at their bound: dropping `io` closes it at once.
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(all_closed_rx);
    all_closed_tx.closed().await;
}

/// Answers a connection over the limit with a `503` and closes it.
async fn refuse<Io>(io: Io, header_read_timeout: Duration, _permit: OwnedSemaphorePermit)
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(|_request: hyper::Request<Incoming>| async {
        Ok::<_, Infallible>(ApiError::TooManyConnections.into_response())
    });
    let connection =
        http1::Builder::new().keep_alive(false).serve_connection(TokioIo::new(io), service);
    // A client that never finishes its request is not waited for past the header timeout.
    let _ = tokio::time::timeout(header_read_timeout, connection).await;
}

/// One served connection: its share of the limit, and the signal to finish.
struct Connection {
    limits: ConnectionLimits,
    permit: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn serve<Io>(mut self, io: Io, router: Router)
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Watched::default());
        let io = TokioIo::new(WatchedIo { inner: io, activity: Arc::clone(&activity) });
        let service = service_fn({
            let activity = Arc::clone(&activity);
            move |request: hyper::Request<Incoming>| {
                let in_flight = InFlight::begin(&activity);
                let response = router.clone().oneshot(request);
                async move {
                    let response = response.await?;
                    // The request is in flight until its body is sent (or the client leaves).
                    Ok::<_, Infallible>(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            let _in_flight = &in_flight;
                            frame
                        }))
                    }))
                }
            }
        });
        let connection = http1::Builder::new().serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        let mut stopping = false;
        loop {
            let deadline = activity.lock().deadline(&self.limits);
            let changed = activity.changed.notified();
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                    break;
                }
                _ = self.stop.wait_for(|stop| *stop), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
                // The deadline moved: a request began or ended.
                () = changed => {}
                () = sleep_until(deadline) => {
                    tracing::debug!("closing a connection that is idle or slow to send its headers");
                    break;
                }
            }
        }
        drop(self.permit);
    }
}

/// What a connection is doing, as far as its deadlines care.
#[derive(Debug)]
struct Activity {
    /// Requests whose responses are not fully sent yet.
    in_flight: usize,
    /// When the connection last had nothing to do: accepted, or its last response sent.
    idle_since: Instant,
    /// When the first byte of the next request arrived, while no request is in flight.
    request_started: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self { in_flight: 0, idle_since: Instant::now(), request_started: None }
    }

    /// When the connection is to be closed, unless something happens first.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.in_flight > 0 {
            None
        } else if let Some(started) = self.request_started {
            Some(started + limits.header_read_timeout)
        } else {
            Some(self.idle_since + limits.idle_timeout)
        }
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A connection's [`Activity`], and the signal that its deadline may have moved.
#[derive(Debug)]
struct Watched {
    state: Mutex<Activity>,
    changed: Notify,
}

impl Default for Watched {
    fn default() -> Self {
        Self { state: Mutex::new(Activity::new()), changed: Notify::new() }
    }
}

impl Watched {
    fn lock(&self) -> std::sync::MutexGuard<'_, Activity> {
        // The state stays consistent whatever panicked while holding it: it is plain counters.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the state and wakes the connection's task to look at its deadline again.
    fn update(&self, change: impl FnOnce(&mut Activity)) {
        change(&mut self.lock());
        self.changed.notify_one();
    }
}

/// A request in flight on a connection, from its headers to the end of its response.
struct InFlight(Arc<Watched>);

impl InFlight {
    fn begin(activity: &Arc<Watched>) -> Self {
        activity.update(|state| {
            state.in_flight += 1;
            state.request_started = None;
        });
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|state| {
            state.in_flight -= 1;
            if state.in_flight == 0 {
                state.idle_since = Instant::now();
            }
        });
    }
}

/// The connection's socket, noting when a request's first bytes arrive.
struct WatchedIo<Io> {
    inner: Io,
    activity: Arc<Watched>,
}

impl<Io: AsyncRead + Unpin> AsyncRead for WatchedIo<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let starts_a_request = {
                let state = self.activity.lock();
                state.in_flight == 0 && state.request_started.is_none()
            };
            if starts_a_request {
                self.activity.update(|state| state.request_started = Some(Instant::now()));
            }
        }
        result
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for WatchedIo<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
