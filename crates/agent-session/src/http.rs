//! A session over chatstore's HTTP API, for agents talking to a remote server.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode, Url};
use serde::Deserialize;

use crate::{CompactableSession, CompactionSnapshot, Item, Session, SessionError, SessionSettings};

/// Attempts of one `add_items` call; retries reuse the idempotency key, so they never
/// duplicate the batch.
const WRITE_ATTEMPTS: u32 = 4;

/// A session kept by a chatstore server, reached with a bearer token.
#[derive(Debug, Clone)]
pub struct HttpSession {
    client: Client,
    items_url: Url,
    pop_url: Url,
    snapshot_url: Url,
    replace_url: Url,
    token: String,
    session_id: String,
    settings: SessionSettings,
}

#[derive(Deserialize)]
struct ItemsBody {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct SnapshotBody {
    items: Vec<Item>,
    first_position: Option<i64>,
    revision: i64,
    position_base: i64,
}

#[derive(Deserialize)]
struct PopBody {
    item: Option<Item>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl HttpSession {
    /// A session `session_id` on the server at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(
        client: Client,
        base_url: &str,
        token: impl Into<String>,
        session_id: impl Into<String>,
    ) -> Result<Self, SessionError> {
        let session_id = session_id.into();
        let base = Url::parse(base_url)
            .map_err(|err| SessionError::InvalidItem(format!("bad base URL {base_url}: {err}")))?;
        // Path segments are percent-encoded, so ids with `/`, `%` or spaces stay one segment.
        let url_for = |last: &str| {
            let mut url = base.clone();
            url.path_segments_mut()
                .map(|mut segments| {
                    segments.pop_if_empty().extend(["sessions", session_id.as_str(), last]);
                })
                .map_err(|()| SessionError::InvalidItem(format!("bad base URL {base_url}")))?;
            Ok::<_, SessionError>(url)
        };
        Ok(Self {
            items_url: url_for("items")?,
            pop_url: url_for("pop")?,
            snapshot_url: url_for("snapshot")?,
            replace_url: url_for("replace")?,
            client,
            token: token.into(),
            session_id,
            settings: SessionSettings::default(),
        })
    }

    pub fn with_settings(mut self, settings: SessionSettings) -> Self {
        self.settings = settings;
        self
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<reqwest::Response, SessionError> {
        let mut request = self.client.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await?;
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => ("unknown".to_owned(), text),
        };
        Err(SessionError::Server { status, code, message })
    }
}

fn is_retryable(error: &SessionError) -> bool {
    match error {
        SessionError::Transport(err) => err.is_connect() || err.is_timeout() || err.is_request(),
        SessionError::Server { status, .. } => *status == StatusCode::SERVICE_UNAVAILABLE.as_u16(),
        _ => false,
    }
}

#[async_trait::async_trait]
impl Session for HttpSession {
    fn session_id(&self) -> &str {
        &self.session_id
    }

    fn settings(&self) -> SessionSettings {
        self.settings
    }

    async fn get_items(&self, limit: Option<usize>) -> Result<Vec<Item>, SessionError> {
        let mut url = self.items_url.clone();
        if let Some(limit) = self.settings.resolve(limit) {
            url.query_pairs_mut().append_pair("limit", &limit.to_string());
        }
        let body: ItemsBody = self.send(Method::GET, url, None, None).await?.json().await?;
        Ok(body.items)
    }

    async fn add_items(&self, items: &[Item]) -> Result<(), SessionError> {
        if items.is_empty() {
            return Ok(());
        }
        // Written from the items' own text: going through `serde_json::Value` would re-encode
        // numbers (a 30-digit integer becomes a float).
        let body = format!(
            "{{\"items\":[{}]}}",
            items.iter().map(Item::as_json).collect::<Vec<_>>().join(",")
        );
        let key = uuid::Uuid::new_v4().to_string();
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let sent = self
                .send(Method::POST, self.items_url.clone(), Some(body.clone()), Some(&key))
                .await;
            match sent {
                Ok(_) => return Ok(()),
                Err(err) if attempt < WRITE_ATTEMPTS && is_retryable(&err) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn pop_item(&self) -> Result<Option<Item>, SessionError> {
        let body: PopBody =
            self.send(Method::POST, self.pop_url.clone(), None, None).await?.json().await?;
        Ok(body.item)
    }

    async fn clear_session(&self) -> Result<(), SessionError> {
        self.send(Method::DELETE, self.items_url.clone(), None, None).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl CompactableSession for HttpSession {
    async fn compaction_snapshot(&self, limit: usize) -> Result<CompactionSnapshot, SessionError> {
        let mut url = self.snapshot_url.clone();
        url.query_pairs_mut().append_pair("limit", &limit.clamp(1, 10_000).to_string());
        let body: SnapshotBody = self.send(Method::GET, url, None, None).await?.json().await?;
        let complete = body.first_position.is_none_or(|first| first == body.position_base + 1);
        Ok(CompactionSnapshot {
            items: body.items,
            complete,
            revision: body.revision,
            first_position: body.first_position,
        })
    }

    async fn replace_suffix(
        &self,
        snapshot: &CompactionSnapshot,
        start: usize,
        items: &[Item],
        prune_leading: usize,
    ) -> Result<bool, SessionError> {
        let Some(after_position) = snapshot.replace_after(start) else { return Ok(false) };
        let body = format!(
            "{{\"revision\":{},\"after_position\":{after_position},\"prune_leading\":{prune_leading},\"items\":[{}]}}",
            snapshot.revision,
            items.iter().map(Item::as_json).collect::<Vec<_>>().join(",")
        );
        // Not retried: a replace whose answer was lost may have happened, and would then
        // answer 409.
        match self.send(Method::POST, self.replace_url.clone(), Some(body), None).await {
            Ok(_) => Ok(true),
            Err(SessionError::Server { status: 409 | 404, .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }
}
