//! A stand-in for an OpenAI-compatible Chat Completions endpoint (the real API is out of reach
//! in tests): it speaks the streaming wire format, answers from a script, and records what it
//! was asked.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// How the fake model answers one request.
#[derive(Debug, Clone)]
pub enum FakeAnswer {
    /// Streams these pieces, a finishing chunk and `[DONE]`.
    Text(Vec<&'static str>),
    /// Streams these pieces, then drops the connection mid-answer.
    Break(Vec<&'static str>),
    /// Answers with this status and body, no stream.
    Status(u16, &'static str),
    /// Streams these pieces, then sends nothing more, ever (a model thinking forever).
    Silent(Vec<&'static str>),
    /// Streams pieces without end (a model that never stops talking).
    Endless,
    /// Streams exactly this body text (for wire-format edge cases), then ends cleanly.
    Raw(&'static str),
}

/// One request the fake model received.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Debug, Default)]
struct Script {
    answers: VecDeque<FakeAnswer>,
    requests: Vec<FakeRequest>,
    /// Answers whose stream the client dropped before it ended.
    abandoned: usize,
}

/// Counts an answer as abandoned when its stream is dropped before the end.
struct Watch {
    script: Shared,
    ended: bool,
}

impl Watch {
    fn end(&mut self) {
        self.ended = true;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.ended {
            self.script.lock().expect("script lock").abandoned += 1;
        }
    }
}

type Shared = Arc<Mutex<Script>>;

/// A running fake endpoint; stopped when dropped.
#[derive(Debug)]
pub struct FakeModel {
    /// The API root to configure as `responder.openai.base_url`.
    pub base_url: String,
    script: Shared,
    server: JoinHandle<()>,
}

impl FakeModel {
    /// Starts answering requests with `answers`, in order; once they run out, with a 500.
    pub async fn start(answers: Vec<FakeAnswer>) -> Self {
        let script = Arc::new(Mutex::new(Script { answers: answers.into(), ..Script::default() }));
        let router = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { base_url: format!("http://{address}/v1"), script, server }
    }

    /// How many answers were abandoned by the client (connection closed mid-stream).
    pub fn abandoned(&self) -> usize {
        self.script.lock().expect("script lock").abandoned
    }

    /// What it was asked so far, in order.
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.script.lock().expect("script lock").requests.clone()
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn complete(State(script): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = {
        let mut script = script.lock().expect("script lock");
        script.requests.push(FakeRequest {
            authorization: headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        script.answers.pop_front()
    };
    let chunk = |delta: Value, finish_reason: Value| {
        let chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
            "model": "fake", "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]});
        Bytes::from(format!("data: {chunk}\n\n"))
    };
    let start = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    let said = move |pieces: Vec<&'static str>| {
        let mut frames = vec![start.clone()];
        frames.extend(pieces.iter().map(|piece| chunk(json!({"content": piece}), Value::Null)));
        frames
    };
    let frames: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>> = match answer {
        Some(FakeAnswer::Text(pieces)) => {
            let mut frames = said(pieces);
            frames.push(chunk(json!({}), json!("stop")));
            frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
            Box::pin(futures::stream::iter(frames.into_iter().map(Ok)))
        }
        Some(FakeAnswer::Break(pieces)) => {
            // The pieces go out; then, after a moment (so they are not lost with the
            // connection), the body fails and the connection is cut.
            let cut = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(std::io::Error::other("the fake model fell over"))
            });
            Box::pin(futures::stream::iter(said(pieces).into_iter().map(Ok)).chain(cut))
        }
        Some(FakeAnswer::Silent(pieces)) => Box::pin(
            futures::stream::iter(said(pieces).into_iter().map(Ok))
                .chain(futures::stream::pending()),
        ),
        Some(FakeAnswer::Endless) => {
            let piece = chunk(json!({"content": "and on "}), Value::Null);
            Box::pin(futures::stream::repeat_with(move || Ok(piece.clone())).then(|piece| async {
                tokio::task::yield_now().await;
                piece
            }))
        }
        Some(FakeAnswer::Raw(text)) => {
            Box::pin(futures::stream::iter([Ok(Bytes::from_static(text.as_bytes()))]))
        }
        Some(FakeAnswer::Status(status, body)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        None => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "no scripted answer left").into_response();
        }
    };
    // The watch lives as long as the body: dropped at its end, or when the client goes away.
    let watch = Watch { script, ended: false };
    let frames = futures::stream::unfold((frames, watch), |(mut frames, mut watch)| async move {
        match frames.next().await {
            Some(frame) => Some((frame, (frames, watch))),
            None => {
                watch.end();
                None
            }
        }
    });
    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(frames)).into_response()
}
