//! Owning one's data: all of it out (`GET /export`), back in (`POST /import`), or gone
//! (`DELETE /me/data`). The records and their order are `repositories::KINDS`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures::StreamExt;
use repositories::Importer;
use serde::Serialize;
use tracing::Instrument;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json};
use crate::state::AppState;

/// The media type of exports and imports: one JSON object a line.
const NDJSON: &str = "application/x-ndjson";

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(export, import, erase),
    components(schemas(Imported)),
    tags((name = "data", description = "Your data: export it all, import it back, erase it all"))
)]
pub(crate) struct Doc;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/export", get(export))
        .route("/import", post(import))
        .route("/me/data", delete(erase))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Imported {
    /// Records written.
    imported: u64,
}

/// Every record of the caller as NDJSON, streamed from one snapshot.
///
/// One JSON object a line, its `kind` first: `chat`, `session_item`, `idempotency_key`,
/// `session_branch`, `session_branch_item`, `turn_usage`, `thread`, `thread_item`,
/// `feedback`, `attachment`, `attachment_content`, in that order (parents before children). Stored JSON (items, ChatKit objects, chat metadata) is a JSON
/// string holding the exact stored text; attachment bytes are base64; timestamps are RFC
/// 3339 UTC with microseconds. A body cut short ends in an error rather than cleanly.
#[utoipa::path(get, path = "/export", tag = "data",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The records, one a line", content_type = "application/x-ndjson", body = String),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn export(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Response> {
    let wait = Duration::from_secs(state.settings.database.acquire_timeout_secs);
    let permit = tokio::time::timeout(wait, state.full_reads.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| ApiError::Unavailable(anyhow::anyhow!("too many exports in progress")))?;
    // The snapshot and its first page come before the answer: an unreachable database is
    // still a clean 503.
    let mut exporter = state.db.records().exporter(&user).await?;
    let first = exporter.next_chunk().await?;

    let stalled_read = state.stalled_client();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
    let completed = Arc::new(AtomicBool::new(false));
    let producer_completed = completed.clone();
    let producer = async move {
        let _permit = permit;
        let mut chunk = first;
        while let Some(text) = chunk {
            match tokio::time::timeout(stalled_read, sender.send(Bytes::from(text))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return, // the client went away
                Err(_) => {
                    tracing::warn!("a client stopped reading its export; ending it");
                    return;
                }
            }
            chunk = match exporter.next_chunk().await {
                Ok(chunk) => chunk,
                Err(err) => {
                    tracing::error!(error = %err, "an export failed part way");
                    return;
                }
            };
        }
        producer_completed.store(true, Ordering::Release);
        if let Err(err) = exporter.finish().await {
            tracing::warn!(error = %err, "ending an export snapshot failed");
        }
    };
    tokio::spawn(producer.instrument(tracing::Span::current()));
    let body = super::producer_body(receiver, completed, "the export ended early");
    Ok(([(header::CONTENT_TYPE, NDJSON)], body).into_response())
}

/// Restores records (the format of `GET /export`) into the caller's namespace.
///
/// Read and written line by line in one transaction: a bad line is a 400 naming it, and
/// nothing of the import is kept. A record whose id exists replaces it (a chat or thread
/// whole, with its items: the lines after it bring them back), so importing the same file
/// twice changes nothing. A chat's `session_item`s come after it, in order from its
/// `position_base` + 1 (0 + 1 unless a prune dropped its first items); a branch's own
/// `session_branch_item`s come after it, in order from its `fork_position` + 1. Empty lines are skipped. The body may be at most `import.max_bytes`.
#[utoipa::path(post, path = "/import", tag = "data",
    security(("bearer" = [])),
    request_body(content = String, description = "Records as `GET /export` writes them", content_type = "application/x-ndjson"),
    responses(
        (status = 200, description = "Imported", body = Imported),
        (status = 400, description = "A bad line (the message names it); nothing was kept", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 413, description = "Larger than `import.max_bytes`; nothing was kept", body = ErrorBody),
        (status = 415, description = "Not sent as `application/x-ndjson`", body = ErrorBody),
    ))]
pub(crate) async fn import(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Imported>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase());
    if content_type.as_deref() != Some(NDJSON) {
        return Err(ApiError::UnsupportedMediaType(format!("send the import as {NDJSON}")));
    }
    let max_bytes = state.settings.import.max_bytes;
    let stalled = state.stalled_client();
    let mut importer = state.db.records().importer(&user).await?;
    let mut lines = Lines::default();
    let mut stream = body.into_data_stream();
    let mut received = 0usize;
    loop {
        // The import holds a transaction (on SQLite, the writer lock): a client that stops
        // sending loses it.
        let chunk = match tokio::time::timeout(stalled, stream.next()).await {
            Err(_) => return Err(ApiError::invalid("the import body stopped arriving")),
            Ok(None) => break,
            Ok(Some(Err(err))) => return Err(ApiError::invalid(format!("unreadable body: {err}"))),
            Ok(Some(Ok(chunk))) => chunk,
        };
        received = received.saturating_add(chunk.len());
        if received > max_bytes {
            return Err(ApiError::PayloadTooLarge(format!(
                "imports are limited to {max_bytes} bytes (import.max_bytes)"
            )));
        }
        lines.buffer.extend_from_slice(&chunk);
        while let Some((number, line)) = lines.next_line() {
            apply(&mut importer, number, &lines.buffer[line]).await?;
        }
        lines.compact();
    }
    if let Some((number, line)) = lines.rest() {
        apply(&mut importer, number, &line).await?;
    }
    let imported = importer.commit().await?;
    Ok(Json(Imported { imported }))
}

/// Writes one line; a bad record is a 400 that names the line (the importer's message).
async fn apply(importer: &mut Importer<'_>, number: u64, line: &[u8]) -> ApiResult<()> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let line = std::str::from_utf8(line)
        .map_err(|_| ApiError::invalid(format!("line {number}: not UTF-8")))?;
    importer.apply(number, line).await?;
    Ok(())
}

/// Splits the bytes received so far into lines. A line is handed out as a range of the
/// buffer; the buffer drops the lines handed out once per chunk, and a long line that comes
/// in many chunks is scanned once.
#[derive(Debug, Default)]
struct Lines {
    buffer: Vec<u8>,
    /// Where the next line starts.
    start: usize,
    /// How far the buffer is known to hold no line break (from `start`).
    scanned: usize,
    number: u64,
}

impl Lines {
    /// The next complete line's number (from 1) and its bytes' range, without the break.
    fn next_line(&mut self) -> Option<(u64, std::ops::Range<usize>)> {
        let from = self.scanned.max(self.start);
        let Some(offset) = self.buffer[from..].iter().position(|byte| *byte == b'\n') else {
            self.scanned = self.buffer.len();
            return None;
        };
        let line = self.start..from + offset;
        self.start = line.end + 1;
        self.scanned = self.start;
        self.number += 1;
        Some((self.number, line))
    }

    /// Forgets the lines handed out.
    fn compact(&mut self) {
        self.buffer.drain(..self.start);
        self.scanned -= self.start;
        self.start = 0;
    }

    /// What follows the last line break, if anything.
    fn rest(&mut self) -> Option<(u64, Vec<u8>)> {
        self.compact();
        if self.buffer.is_empty() {
            return None;
        }
        self.number += 1;
        Some((self.number, std::mem::take(&mut self.buffer)))
    }
}

/// Erases every record of the caller: chats and their items, tags and idempotency keys,
/// ChatKit threads, items, feedback, attachments and their bytes. Idempotent: `204` also
/// when there was nothing. Afterwards `GET /export` is empty.
#[utoipa::path(delete, path = "/me/data", tag = "data",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Everything of the caller is gone"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub(crate) async fn erase(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<StatusCode> {
    let deleted = state.db.records().erase(&user).await?;
    tracing::info!(deleted, "erased a user's data");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::Lines;

    /// Every way of cutting the body into chunks gives the same numbered lines.
    #[test]
    fn lines_come_out_whole_however_the_body_is_cut() {
        let body = b"{\"a\":1}\nsecond line\r\n\n\xc3\xa9 last without a break";
        for chunk_size in 1..=body.len() {
            let mut lines = Lines::default();
            let mut seen = Vec::new();
            for chunk in body.chunks(chunk_size) {
                lines.buffer.extend_from_slice(chunk);
                while let Some((number, range)) = lines.next_line() {
                    seen.push((number, lines.buffer[range].to_vec()));
                }
                lines.compact();
            }
            seen.extend(lines.rest());
            let expected: Vec<(u64, Vec<u8>)> = vec![
                (1, b"{\"a\":1}".to_vec()),
                (2, b"second line\r".to_vec()),
                (3, Vec::new()),
                (4, "é last without a break".as_bytes().to_vec()),
            ];
            assert_eq!(seen, expected, "chunks of {chunk_size}");
        }
        let mut ended = Lines::default();
        ended.buffer.extend_from_slice(b"one\n");
        assert!(ended.next_line().is_some());
        assert_eq!(ended.rest(), None, "a final line break leaves no empty last line");
    }
}
