//! `POST /chat/run`: one agent turn with session memory, the agent endpoint of the seeds. The
//! session's history is read, the configured responder answers it, and the turn (the user's
//! message and the answer) is appended to the session in one batch.
//!
//! The turn is stored only once the answer is complete: a failed model call or a client that
//! leaves mid-answer leaves the session as it was, so the turn can simply be retried. (The
//! Agents SDK's `Runner` stores the input before calling the model, which leaves an unanswered
//! message behind when the call fails.)

use agent_session::{Item, Session as _, StoreSession};
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chatkit_server::events;
use futures::StreamExt as _;
use repositories::Id;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument as _;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json};
use crate::responder::{Message, TextStream, convert};
use crate::sse;
use crate::state::AppState;

#[derive(utoipa::OpenApi)]
#[openapi(paths(run))]
pub(crate) struct Doc;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/chat/run", post(run))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunRequest {
    /// What the user says: not only white space.
    #[schema(min_length = 1, pattern = "\\S")]
    input: String,
    /// The session whose memory the turn uses and extends (created if absent); without it, a
    /// new session. 1 to 255 bytes of UTF-8, without NUL.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255, pattern = "^[^\\u0000]*$")]
    session_id: Option<Id>,
    /// `true` (the default): Server-Sent Events as the answer is written; `false`: one JSON
    /// answer at the end.
    #[serde(default = "streams_by_default")]
    stream: bool,
}

fn streams_by_default() -> bool {
    true
}

/// A finished turn (the body of `"stream": false`, and the last event of a stream).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunResult {
    session_id: String,
    /// The assistant's answer.
    output: String,
    /// What the turn appended to the session: the user's message and the answer, as
    /// Responses API items.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
}

/// Runs one turn. Streamed, the events are `data: <json>` frames:
/// `{"type": "run.started", "session_id"}`, then `{"type": "output_text.delta", "delta"}` as
/// the answer is written, then `{"type": "run.completed", "session_id", "output", "items"}`
/// once the turn is stored, or `{"type": "error", "code", "message"}` (nothing stored).
#[utoipa::path(post, path = "/chat/run", tag = "sessions",
    request_body = RunRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The finished turn, or its event stream",
            content((RunResult = "application/json"), (crate::sse::ServerSentEvent = "text/event-stream"))),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = "The model failed (`unavailable`, with `Retry-After`); nothing was stored", body = ErrorBody),
    ))]
pub(crate) async fn run(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(request): Json<RunRequest>,
) -> ApiResult<Response> {
    if request.input.trim().is_empty() {
        return Err(ApiError::invalid("input must not be empty"));
    }
    let session_id =
        request.session_id.map_or_else(|| uuid::Uuid::new_v4().to_string(), Id::into_string);
    // The agent's memory, through the Agents SDK's `Session` protocol, as an agent linked with
    // the library would use it.
    let session = StoreSession::new(state.db.clone(), user, session_id);
    let wanted = usize::try_from(state.responder.history_items()).unwrap_or(usize::MAX);
    let history: Vec<Value> =
        session.get_items(Some(wanted)).await?.iter().map(Item::to_value).collect();
    let mut conversation = convert::session_items(&history);
    conversation.push(Message::User(request.input.clone()));
    let answer = state.responder.reply(conversation);
    let turn = Turn { stalled_client: state.stalled_client(), session, input: request.input };
    if request.stream {
        Ok(turn.stream(answer))
    } else {
        let mut output = String::new();
        let mut answer = answer;
        while let Some(piece) = answer.next().await {
            output.push_str(&piece?);
        }
        Ok(Json(turn.store(output).await?).into_response())
    }
}

/// A turn whose answer is on its way.
struct Turn {
    stalled_client: std::time::Duration,
    session: StoreSession,
    input: String,
}

impl Turn {
    /// Appends the user's message and the answer to the session, in one batch, shaped as the
    /// Agents SDK's `Runner` stores a plain-string input and a final output message.
    async fn store(&self, output: String) -> ApiResult<RunResult> {
        let items = vec![
            json!({"role": "user", "content": self.input}),
            json!({
                "id": format!("msg_{}", uuid::Uuid::new_v4().simple()),
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": output, "annotations": [], "logprobs": []}],
            }),
        ];
        let batch = items.iter().map(Item::from_value).collect::<Result<Vec<_>, _>>()?;
        self.session.add_items(&batch).await?;
        Ok(RunResult { session_id: self.session.session_id().to_owned(), output, items })
    }

    /// The turn as Server-Sent Events; it is stored only if the answer completes while the
    /// client is still there.
    fn stream(self, mut answer: TextStream) -> Response {
        let (sender, events) = events::channel(self.stalled_client);
        let producer = async move {
            let send = async |event: Value| sender.send(event).await;
            let started = json!({"type": "run.started", "session_id": self.session.session_id()});
            if !send(started).await {
                return;
            }
            let mut output = String::new();
            loop {
                let piece = tokio::select! {
                    piece = answer.next() => piece,
                    () = sender.closed() => return, // the client left: drop the model call
                };
                match piece {
                    None => break,
                    Some(Ok(piece)) => {
                        output.push_str(&piece);
                        if !send(json!({"type": "output_text.delta", "delta": piece})).await {
                            return;
                        }
                    }
                    Some(Err(err)) => {
                        send(error_event(&ApiError::from(err))).await;
                        return;
                    }
                }
            }
            let last = match self.store(output).await {
                Ok(result) => json!({"type": "run.completed", "session_id": result.session_id,
                                     "output": result.output, "items": result.items}),
                Err(err) => error_event(&err),
            };
            send(last).await;
        };
        // The task logs under the request's span (its request id), not as an orphan.
        tokio::spawn(producer.instrument(tracing::Span::current()));
        sse::response(events.map(|event| sse::frame(&event)))
    }
}

/// An error inside a stream, in the error body's terms; the cause is logged as for a response.
fn error_event(error: &ApiError) -> Value {
    error.log();
    json!({"type": "error", "code": error.code(), "message": error.to_string()})
}
