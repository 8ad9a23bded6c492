//! A responder backed by any OpenAI-compatible Chat Completions endpoint (OpenAI, Azure OpenAI,
//! vLLM, Ollama, LiteLLM, ...), streaming its answer as it arrives.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use super::ResponderSettings;
use super::{Message, Responder, ResponderError, TextStream};

/// The longest upstream error body repeated in our logs.
const ERROR_EXCERPT_CHARS: usize = 300;

#[derive(Debug, Clone)]
pub struct OpenAiResponder {
    client: reqwest::Client,
    /// `{base_url}/chat/completions`.
    endpoint: String,
    model: String,
    api_key: Option<SecretString>,
    instructions: Option<String>,
    /// How long the endpoint may stay silent (before its answer starts, or between chunks).
    read_timeout: Duration,
    history_items: u64,
}

impl OpenAiResponder {
    pub fn new(settings: &ResponderSettings) -> anyhow::Result<Self> {
        let openai = &settings.openai;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(openai.connect_timeout_secs))
            // reqwest's default today, said out loud: the request to the model is small
            // writes too, and must not wait for a delayed ACK.
            .tcp_nodelay(true)
            .build()
            .context("cannot build the HTTP client for the model endpoint")?;
        Ok(Self {
            client,
            endpoint: format!("{}/chat/completions", openai.base_url.trim_end_matches('/')),
            model: openai.model.clone(),
            api_key: openai.api_key.clone().filter(|key| !key.expose_secret().is_empty()),
            instructions: openai.instructions.clone().filter(|text| !text.trim().is_empty()),
            read_timeout: Duration::from_secs(openai.read_timeout_secs),
            history_items: settings.history_items,
        })
    }

    /// The request body: the instructions, then the conversation as chat messages.
    fn request_body(&self, conversation: &[Message]) -> Value {
        let mut messages = Vec::with_capacity(conversation.len() + 1);
        if let Some(instructions) = &self.instructions {
            messages.push(json!({"role": "system", "content": instructions}));
        }
        messages.extend(chat_messages(conversation));
        json!({"model": self.model, "messages": messages, "stream": true})
    }
}

impl Responder for OpenAiResponder {
    fn history_items(&self) -> u64 {
        self.history_items
    }

    fn reply(&self, conversation: Vec<Message>) -> TextStream {
        let mut request = self.client.post(&self.endpoint).json(&self.request_body(&conversation));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let api_key = self.api_key.clone();
        let read_timeout = self.read_timeout;
        let quiet = move || {
            ResponderError::Failed(format!(
                "the model endpoint sent nothing for {}s",
                read_timeout.as_secs()
            ))
        };
        Box::pin(async_stream::try_stream! {
            let response = tokio::time::timeout(read_timeout, request.send())
                .await
                .map_err(|_| quiet())?
                .map_err(|err| failed("cannot reach the model endpoint", &err))?;
            let response = if response.status().is_success() {
                Ok(response)
            } else {
                Err(refused(response, api_key.as_ref()).await)
            };
            let mut events = Box::pin(body_until_silent(response?, read_timeout).eventsource());
            let mut finished = false;
            while let Some(event) = events.next().await {
                let event = event.map_err(|err| failed("the model's stream broke", &err))?;
                let data = event.data.trim();
                if data.is_empty() {
                    continue; // a named event without data (a ping): nothing to read
                }
                if data == "[DONE]" {
                    finished = true;
                    break;
                }
                let chunk: Value = serde_json::from_str(data)
                    .map_err(|err| failed("the model sent a chunk that is not JSON", &err))?;
                if let Some(error) = chunk.get("error") {
                    let message = error["message"].as_str().map_or_else(|| error.to_string(), str::to_owned);
                    Err(ResponderError::Failed(format!(
                        "the model endpoint failed mid-answer: {}",
                        excerpt(&message)
                    )))?;
                }
                for choice in chunk["choices"].as_array().into_iter().flatten() {
                    if choice["index"].as_u64().unwrap_or(0) != 0 {
                        continue;
                    }
                    if let Some(piece) = choice["delta"]["content"].as_str().filter(|p| !p.is_empty()) {
                        yield piece.to_owned();
                    }
                    match choice["finish_reason"].as_str() {
                        None => {}
                        // What was said is withheld; the user should know why the answer stops.
                        Some("content_filter") => Err(ResponderError::Custom {
                            message: "The model's content filter withheld the rest of this answer.".into(),
                            allow_retry: false,
                        })?,
                        // stop, or length (a truncated answer is still the model's answer).
                        Some(_) => finished = true,
                    }
                }
            }
            if !finished {
                Err(ResponderError::Failed(
                    "the model's stream ended before the answer was finished".into(),
                ))?;
            }
        })
    }
}

/// Why the endpoint's body could not be read to its end.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("{0}")]
    Broken(reqwest::Error),
    #[error("the model endpoint sent nothing for {0}s")]
    Silent(u64),
}

/// The response body, failing once the endpoint sends no bytes at all for `read_timeout`.
/// Bytes, not events: the SSE comments some proxies send to keep a connection alive while the
/// model thinks count as signs of life.
fn body_until_silent(
    response: reqwest::Response,
    read_timeout: Duration,
) -> impl futures::Stream<Item = Result<bytes::Bytes, BodyError>> {
    let mut body = Box::pin(response.bytes_stream());
    async_stream::stream! {
        loop {
            match tokio::time::timeout(read_timeout, body.next()).await {
                Ok(Some(chunk)) => yield chunk.map_err(BodyError::Broken),
                Ok(None) => break,
                Err(_) => {
                    yield Err(BodyError::Silent(read_timeout.as_secs()));
                    break;
                }
            }
        }
    }
}

/// The error for an answer other than 2xx, with the start of what the endpoint said (for the
/// log, so without our key should the endpoint repeat it).
async fn refused(response: reqwest::Response, api_key: Option<&SecretString>) -> ResponderError {
    let status = response.status();
    let mut body = response.text().await.unwrap_or_default();
    if let Some(key) = api_key {
        body = body.replace(key.expose_secret(), "[REDACTED]");
    }
    ResponderError::Failed(format!("the model endpoint answered {status}: {}", excerpt(&body)))
}

fn failed(what: &str, err: &dyn std::fmt::Display) -> ResponderError {
    ResponderError::Failed(format!("{what}: {err}"))
}

fn excerpt(text: &str) -> String {
    let mut excerpt: String = text.trim().chars().take(ERROR_EXCERPT_CHARS).collect();
    if text.trim().chars().count() > ERROR_EXCERPT_CHARS {
        excerpt.push('…');
    }
    excerpt
}

/// The conversation as Chat Completions messages. A run of tool calls and their results
/// becomes one assistant message with `tool_calls`, followed by one `tool` message per result,
/// as the API requires. A call whose result is not in the same run, or a result whose call is
/// not (cut off by the history limit, or never answered), is left out: the API refuses either.
fn chat_messages(conversation: &[Message]) -> Vec<Value> {
    let mut messages = Vec::with_capacity(conversation.len());
    let mut rest = conversation;
    while let Some(first) = rest.first() {
        let (role, text) = match first {
            Message::System(text) => ("system", text),
            Message::User(text) => ("user", text),
            Message::Assistant(text) => ("assistant", text),
            Message::ToolCall { .. } | Message::ToolResult { .. } => {
                let run = rest
                    .iter()
                    .position(|m| {
                        !matches!(m, Message::ToolCall { .. } | Message::ToolResult { .. })
                    })
                    .unwrap_or(rest.len());
                messages.extend(tool_run(&rest[..run]));
                rest = &rest[run..];
                continue;
            }
        };
        messages.push(json!({"role": role, "content": text}));
        rest = &rest[1..];
    }
    messages
}

/// One run of tool calls and results, as an assistant message and the `tool` answers.
fn tool_run(run: &[Message]) -> Vec<Value> {
    let called: HashSet<&str> = run
        .iter()
        .filter_map(|m| match m {
            Message::ToolCall { call_id, .. } => Some(call_id.as_str()),
            _ => None,
        })
        .collect();
    let answered: HashSet<&str> = run
        .iter()
        .filter_map(|m| match m {
            Message::ToolResult { call_id, .. } if called.contains(call_id.as_str()) => {
                Some(call_id.as_str())
            }
            _ => None,
        })
        .collect();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    let mut seen = HashSet::new();
    for message in run {
        match message {
            // Each id once: a repeated call or result would be refused too.
            Message::ToolCall { call_id, name, arguments }
                if answered.contains(call_id.as_str()) && seen.insert(("call", call_id)) =>
            {
                calls.push(json!({"id": call_id, "type": "function",
                                  "function": {"name": name, "arguments": arguments}}));
            }
            Message::ToolResult { call_id, output }
                if answered.contains(call_id.as_str()) && seen.insert(("result", call_id)) =>
            {
                results.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
            }
            _ => {}
        }
    }
    if calls.is_empty() {
        return Vec::new();
    }
    let mut messages = vec![json!({"role": "assistant", "content": null, "tool_calls": calls})];
    messages.extend(results);
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> Message {
        Message::ToolCall { call_id: id.into(), name: "f".into(), arguments: "{}".into() }
    }

    fn result(id: &str) -> Message {
        Message::ToolResult { call_id: id.into(), output: "ok".into() }
    }

    #[tokio::test]
    async fn a_refusal_is_described_without_our_key() {
        let key = SecretString::from("sk-live-0123456789");
        let answer = http::Response::builder()
            .status(401)
            .body(r#"{"error": {"message": "Incorrect API key provided: sk-live-0123456789"}}"#)
            .map(reqwest::Response::from)
            .expect("a response");
        let described = refused(answer, Some(&key)).await.to_string();
        assert!(described.contains("401") && described.contains("[REDACTED]"), "{described}");
        assert!(!described.contains("sk-live"), "{described}");
    }

    #[test]
    fn tool_calls_are_grouped_and_orphans_left_out() {
        let conversation = [
            result("cut-off"),
            Message::User("Hi".into()),
            call("split"),
            Message::User("interrupting".into()),
            result("split"),
            call("a"),
            call("b"),
            result("a"),
            result("b"),
            call("never-answered"),
            Message::Assistant("Done".into()),
        ];
        assert_eq!(
            chat_messages(&conversation),
            vec![
                json!({"role": "user", "content": "Hi"}),
                json!({"role": "user", "content": "interrupting"}),
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
                json!({"role": "tool", "tool_call_id": "a", "content": "ok"}),
                json!({"role": "tool", "tool_call_id": "b", "content": "ok"}),
                json!({"role": "assistant", "content": "Done"}),
            ]
        );
    }
}
