//! A responder backed by any OpenAI-compatible Chat Completions endpoint (OpenAI, Azure OpenAI,
//! vLLM, Ollama, LiteLLM, ...), streaming its answer as it arrives.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use super::{Message, Responder, ResponderError, TextStream};
use crate::settings::ResponderSettings;

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
            let mut events = response?.bytes_stream().eventsource();
            let mut finished = false;
            loop {
                let next = tokio::time::timeout(read_timeout, events.next())
                    .await
                    .map_err(|_| quiet())?;
                let Some(event) = next else { break };
                let event = event.map_err(|err| failed("the model's stream broke", &err))?;
                if event.data.trim() == "[DONE]" {
                    finished = true;
                    break;
                }
                let chunk: Value = serde_json::from_str(&event.data)
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
                    finished |= choice["finish_reason"].is_string();
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

/// The conversation as Chat Completions messages. Consecutive tool calls become one assistant
/// message with several `tool_calls`, each followed by its `tool` answer; a call without an
/// answer, or an answer without its call (cut off by the history limit), is left out, since the
/// API refuses either.
fn chat_messages(conversation: &[Message]) -> Vec<Value> {
    let answered: HashSet<&str> = conversation
        .iter()
        .filter_map(|message| match message {
            Message::ToolResult { call_id, .. } => Some(call_id.as_str()),
            _ => None,
        })
        .collect();
    let mut called = HashSet::new();
    let mut messages: Vec<Value> = Vec::with_capacity(conversation.len());
    // The assistant message still collecting tool calls, if the previous message was a call.
    let mut open_calls: Option<usize> = None;
    for message in conversation {
        let (role, content) = match message {
            Message::System(text) => ("system", text),
            Message::User(text) => ("user", text),
            Message::Assistant(text) => ("assistant", text),
            Message::ToolCall { call_id, name, arguments } => {
                if !answered.contains(call_id.as_str()) {
                    continue;
                }
                called.insert(call_id.as_str());
                let call = json!({"id": call_id, "type": "function",
                                  "function": {"name": name, "arguments": arguments}});
                match open_calls.and_then(|index| messages.get_mut(index)) {
                    Some(open) => {
                        if let Some(calls) = open["tool_calls"].as_array_mut() {
                            calls.push(call);
                        }
                    }
                    None => {
                        open_calls = Some(messages.len());
                        messages.push(
                            json!({"role": "assistant", "content": null, "tool_calls": [call]}),
                        );
                    }
                }
                continue;
            }
            Message::ToolResult { call_id, output } => {
                if called.contains(call_id.as_str()) {
                    messages
                        .push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
                }
                open_calls = None;
                continue;
            }
        };
        open_calls = None;
        messages.push(json!({"role": role, "content": content}));
    }
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

    #[test]
    fn tool_calls_are_grouped_and_orphans_left_out() {
        let conversation = [
            result("cut-off"),
            Message::User("Hi".into()),
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
