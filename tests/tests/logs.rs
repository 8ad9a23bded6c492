//! What the server logs: every line of a request, including those of the tasks that produce
//! its streamed answer, carries the request's span (its id, and the route template rather than
//! the raw path).
//!
//! The runtime here has one thread, where the server, the client and the spawned tasks all
//! run, so a subscriber set for this thread sees everything the server logs.
//!
//! It is a test binary of its own, not part of the suite: `tracing` decides once per process
//! whether a span or event is wanted, when it is first reached, for whatever subscriber that
//! thread has. In the suite another test's thread, with none, could reach the request span
//! first, and the span was then off for this test too (a CI run logged the responder's
//! failure without its request id).

// A panic in a test is a failed test with a clear location.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use chatstore::responder::{Message, Responder, ResponderError, TextStream};
use chatstore_tests::{Backend, TestApp, with_app_responding};
use serde_json::json;

/// Log output, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A model that is down.
#[derive(Debug)]
struct Down;

impl Responder for Down {
    fn reply(&self, _conversation: Vec<Message>) -> TextStream {
        Box::pin(futures::stream::once(async { Err(ResponderError::Failed("model down".into())) }))
    }
}

/// Posts `body` to `path` and reads the whole (streamed) answer; the request id it got.
async fn post(app: &TestApp, path: &str, body: serde_json::Value) -> String {
    let response = app
        .request(reqwest::Method::POST, path, "alice")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    request_id
}

/// The captured line that says `message`, which must be there.
fn line_with(captured: &Captured, message: &str) -> String {
    let lines = captured.lines();
    lines
        .iter()
        .find(|line| line.contains(message))
        .unwrap_or_else(|| panic!("no log line says {message:?}: {lines:#?}"))
        .clone()
}

#[tokio::test(flavor = "current_thread")]
async fn streamed_answers_log_under_their_request_and_its_route() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("info,tower_http=debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        with_app_responding(backend, Arc::new(Down), async |app| {
            let input = json!({"content": [{"type": "input_text", "text": "Hi"}],
                "attachments": [], "inference_options": {}});
            let chatkit = post(
                app,
                "/chatkit",
                json!({"type": "threads.create", "params": {"input": input}}),
            )
            .await;
            let failed = line_with(&captured, "a ChatKit responder failed");
            assert!(failed.contains(&format!("request_id=\"{chatkit}\"")), "{failed}");
            assert!(failed.contains(r#"route="/chatkit""#), "{failed}");

            let run = post(app, "/chat/run", json!({"input": "Hi", "session_id": "s-1"})).await;
            let failed = line_with(&captured, "the model failed");
            assert!(failed.contains(&format!("request_id=\"{run}\"")), "{failed}");
            assert!(failed.contains(r#"route="/chat/run""#), "{failed}");

            // Ids in the path stay out of the span: the route template is recorded instead.
            app.get("/sessions/s-secret-id/items", "alice").await;
            let read = line_with(&captured, "finished processing request");
            let lines = captured.lines();
            let read_line = lines
                .iter()
                .find(|line| line.contains(r#"route="/sessions/{session_id}/items""#))
                .unwrap_or_else(|| panic!("no line with the route template: {read}"));
            assert!(!read_line.contains("s-secret-id"), "{read_line}");
        })
        .await;
    }
}
