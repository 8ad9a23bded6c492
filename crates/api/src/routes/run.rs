//! `POST /chat/run`: one agent turn with session memory, the agent endpoint of the seeds. The
//! session's history is read, the configured responder answers it, and the turn (the user's
//! message and the answer) is appended to the session in one batch.
//!
//! The turn is stored only once the answer is complete: a failed model call or a client that
//! leaves mid-answer leaves the session as it was, so the turn can simply be retried. (The
//! Agents SDK's `Runner` stores the input before calling the model, which leaves an unanswered
//! message behind when the call fails.)

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json};
use crate::responder::{Message, TextStream, convert};
use crate::routes::validate_id;
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
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\u0000]*$")]
    session_id: Option<String>,
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
    let session = match request.session_id {
        Some(session) => {
            validate_id("session_id", &session)?;
            session
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let history =
        state.db.sessions().latest_items(&user, &session, state.responder.history_items()).await?;
    // Items are any JSON objects; one that cannot be read is left out of the model's input.
    let history: Vec<Value> =
        history.iter().filter_map(|item| serde_json::from_str(item).ok()).collect();
    let mut conversation = convert::session_items(&history);
    conversation.push(Message::User(request.input.clone()));
    let answer = state.responder.reply(conversation);
    let turn = Turn { state, user, session, input: request.input };
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
    state: AppState,
    user: String,
    session: String,
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
        let texts: Vec<String> = items.iter().map(Value::to_string).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.state.db.sessions().add_items(&self.user, &self.session, &texts, None).await?;
        Ok(RunResult { session_id: self.session.clone(), output, items })
    }

    /// The turn as Server-Sent Events; it is stored only if the answer completes while the
    /// client is still there.
    fn stream(self, mut answer: TextStream) -> Response {
        let (sender, response) = sse::channel(self.state.stalled_client());
        tokio::spawn(async move {
            let send = async |event: Value| sender.send(sse::frame(&event)).await;
            if !send(json!({"type": "run.started", "session_id": self.session})).await {
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
        });
        response
    }
}

/// An error inside a stream, in the error body's terms; the cause is logged as for a response.
fn error_event(error: &ApiError) -> Value {
    error.log();
    json!({"type": "error", "code": error.code(), "message": error.to_string()})
}
