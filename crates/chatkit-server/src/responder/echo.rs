//! The offline responder: it repeats the user's words.

use std::time::Duration;

use futures::StreamExt as _;

use super::{
    ActionInput, EventStream, Message, RespondInput, Responder, TextStream, assistant_message,
    untitled_thread_title, user_text,
};

/// Streams an assistant message that repeats the newest user message, word by word, and
/// titles an untitled thread after it. Without a new user message (after a client tool's
/// output) it has nothing to say. Widget actions are answered by naming them. It reads no
/// history, having no use for it.
#[derive(Debug, Clone, Default)]
pub struct EchoResponder {
    /// A pause before each word, to make streaming (and disconnects) observable.
    pub delay: Duration,
}

impl EchoResponder {
    fn words(&self, text: &str) -> TextStream {
        let words: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
        let delay = self.delay;
        Box::pin(futures::stream::iter(words).then(move |word| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(word)
        }))
    }
}

impl Responder for EchoResponder {
    fn reply(&self, conversation: Vec<Message>) -> TextStream {
        let newest = conversation.iter().rev().find_map(|message| match message {
            Message::User(text) => Some(text.as_str()),
            _ => None,
        });
        self.words(newest.unwrap_or_default())
    }

    fn respond(&self, input: RespondInput) -> EventStream {
        let Some(user_message) = &input.user_message else {
            return Box::pin(futures::stream::empty());
        };
        let text = self.words(&user_text(user_message));
        let title = untitled_thread_title(&input);
        assistant_message(&input.thread, input.message_id, text, title)
    }

    fn action(&self, input: ActionInput) -> EventStream {
        let kind = input.action["type"].as_str().unwrap_or_default();
        let said = match &input.action["payload"] {
            serde_json::Value::Null => format!("Action {kind}"),
            payload => format!("Action {kind} {payload}"),
        };
        assistant_message(&input.thread, input.message_id, self.words(&said), None)
    }
}
