//! What chooses and configures a responder (the `[responder]` section of the server's
//! configuration).

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

/// What answers ChatKit threads and `POST /chat/run`.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponderSettings {
    pub kind: ResponderKind,
    /// The echo responder's pause before each word, in milliseconds.
    pub echo_delay_ms: u64,
    /// How many of a conversation's newest items the model reads.
    pub history_items: u64,
    pub openai: OpenAiSettings,
}

/// The responders this build has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponderKind {
    /// Offline: repeats the user's words.
    Echo,
    /// Any OpenAI-compatible Chat Completions endpoint.
    Openai,
}

/// An OpenAI-compatible Chat Completions endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenAiSettings {
    /// The API root, e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    /// Sent as a bearer token; `OPENAI_API_KEY` when unset here.
    pub api_key: Option<SecretString>,
    /// A system message sent before the conversation.
    pub instructions: Option<String>,
    pub connect_timeout_secs: u64,
    /// How long the endpoint may stay silent before its answer starts or between chunks.
    pub read_timeout_secs: u64,
}

/// The endpoint that needs an API key for sure (self-hosted ones often need none).
const OPENAI_API_HOST: &str = "https://api.openai.com/";

impl ResponderSettings {
    /// Checks what the `openai` responder needs; the message names the setting to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.kind != ResponderKind::Openai {
            return Ok(());
        }
        let openai = &self.openai;
        if !(openai.base_url.starts_with("http://") || openai.base_url.starts_with("https://")) {
            return Err(format!(
                "responder.openai.base_url must be an http(s) URL, not {:?}",
                openai.base_url
            ));
        }
        if openai.model.trim().is_empty() {
            return Err("the openai responder needs a model: set responder.openai.model".into());
        }
        let has_key = openai.api_key.as_ref().is_some_and(|key| !key.expose_secret().is_empty());
        if !has_key && openai.base_url.starts_with(OPENAI_API_HOST) {
            return Err("the openai responder needs an API key: set OPENAI_API_KEY or \
                 APP__RESPONDER__OPENAI__API_KEY"
                .into());
        }
        if openai.read_timeout_secs == 0 || openai.connect_timeout_secs == 0 {
            return Err("responder.openai timeouts must be positive".into());
        }
        Ok(())
    }
}
