//! The `openai` responder against a local stand-in that speaks the Chat Completions streaming
//! wire format: what it is asked (the thread's history as chat messages), what the client is
//! streamed, what is stored, and what a failing endpoint leaves behind.

use std::time::Duration;

use chatstore::settings::{ResponderKind, Settings};
use chatstore_tests::{
    Backend, FakeAnswer, FakeModel, TestApp, dual_backend_tests, with_app_configured,
};
use futures::StreamExt;
use repositories::chatkit::Store;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::chatkit_stream::{input, stored_items, stream, types};

const KEY: &str = "sk-test-0123456789abcdef";

/// Runs `test` with a server whose responder is the fake model at `model`.
async fn with_model(backend: Backend, model: &FakeModel, test: impl AsyncFnOnce(&TestApp)) {
    with_model_configured(backend, model, |_| {}, test).await;
}

/// `with_model`, with the settings adjusted by `customize` too.
pub(crate) async fn with_model_configured(
    backend: Backend,
    model: &FakeModel,
    customize: impl FnOnce(&mut Settings),
    test: impl AsyncFnOnce(&TestApp),
) {
    let base_url = model.base_url.clone();
    with_app_configured(
        backend,
        |settings| {
            settings.responder.kind = ResponderKind::Openai;
            settings.responder.openai.base_url = base_url;
            settings.responder.openai.model = "fake-model".into();
            settings.responder.openai.api_key = Some(SecretString::from(KEY));
            settings.responder.openai.instructions = Some("Be brief.".into());
            customize(settings);
        },
        test,
    )
    .await;
}

/// Waits (up to 20 s) until `done` holds; a hang is a failure.
pub(crate) async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 20 s");
}

fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter(|event| event["update"]["type"] == "assistant_message.content_part.text_delta")
        .map(|event| event["update"]["delta"].as_str().unwrap())
        .collect()
}

async fn the_model_streams_the_answer_and_sees_the_history(backend: Backend) {
    let model = FakeModel::start(vec![
        FakeAnswer::Text(vec!["Lyon is ", "lovely in ", "spring."]),
        FakeAnswer::Text(vec!["Try the ", "bouchons."]),
    ])
    .await;
    with_model(backend, &model, async |app| {
        let (status, events) = stream(app, "alice", json!({"type": "threads.create", "params": {"input": input("Plan a trip to Lyon")}})).await;
        assert_eq!(status, 200);
        let mut expected = vec!["thread.created", "thread.item.done", "stream_options", "thread.item.added", "thread.item.updated"];
        expected.extend(["thread.item.updated"; 3]); // a delta per chunk with text
        expected.extend(["thread.item.updated", "thread.item.done", "thread.updated"]);
        assert_eq!(types(&events), expected);
        assert_eq!(text_of(&events), "Lyon is lovely in spring.");
        assert_eq!(events.last().unwrap()["thread"]["title"], "Plan a trip to Lyon");
        let thread_id = events[0]["thread"]["id"].as_str().unwrap().to_owned();
        let items = stored_items(app, "alice", &thread_id).await;
        assert_eq!(items.len(), 2);
        assert_eq!(items[1]["content"][0]["text"], "Lyon is lovely in spring.");

        let (_, events) = stream(app, "alice", json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": input("Where to eat?")}})).await;
        assert_eq!(text_of(&events), "Try the bouchons.");
        assert_eq!(stored_items(app, "alice", &thread_id).await.len(), 4);

        let requests = model.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
        assert_eq!(requests[0].body["model"], "fake-model");
        assert_eq!(requests[0].body["stream"], true);
        assert_eq!(requests[0].body["messages"], json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Plan a trip to Lyon"},
        ]));
        assert_eq!(requests[1].body["messages"], json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Plan a trip to Lyon"},
            {"role": "assistant", "content": "Lyon is lovely in spring."},
            {"role": "user", "content": "Where to eat?"},
        ]));
    })
    .await;
}

async fn a_model_that_fails_mid_answer_leaves_no_half_answer(backend: Backend) {
    let model = FakeModel::start(vec![
        FakeAnswer::Break(vec!["The answer ", "is"]),
        FakeAnswer::Status(
            401,
            r#"{"error": {"message": "Incorrect API key provided: sk-test-0123456789abcdef"}}"#,
        ),
        FakeAnswer::Text(vec!["Fine now."]),
    ])
    .await;
    with_model(backend, &model, async |app| {
        let (status, events) = stream(app, "alice", json!({"type": "threads.create", "params": {"input": input("Question")}})).await;
        assert_eq!(status, 200);
        let kinds = types(&events);
        assert_eq!(kinds[..5], ["thread.created", "thread.item.done", "stream_options", "thread.item.added", "thread.item.updated"]);
        assert_eq!(text_of(&events), "The answer is", "what arrived was streamed");
        assert_eq!(events.last().unwrap(), &json!({"type": "error", "code": "stream.error", "allow_retry": true}));
        let thread_id = events[0]["thread"]["id"].as_str().unwrap().to_owned();
        // As in the SDK, an answer cut off by an error is not stored (only a client's stop
        // keeps a partial answer); the user's message stays, to retry.
        let items = stored_items(app, "alice", &thread_id).await;
        assert_eq!(items.iter().map(|i| i["type"].as_str().unwrap()).collect::<Vec<_>>(), ["user_message"]);

        // A refused request (bad key) is the same error, and the key is nowhere in the stream.
        let user_message = items[0]["id"].as_str().unwrap().to_owned();
        let retry = json!({"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": user_message}});
        let response = app.request(reqwest::Method::POST, "/chatkit", "alice").header("content-type", "application/json")
            .body(retry.to_string()).send().await.unwrap();
        let body = response.text().await.unwrap();
        assert!(body.contains(r#""code":"stream.error""#) && !body.contains("sk-test"), "{body}");

        // And the retry once the model is back answers the same question.
        let (_, events) = stream(app, "alice", retry).await;
        assert_eq!(text_of(&events), "Fine now.");
        assert_eq!(stored_items(app, "alice", &thread_id).await.len(), 2);
        assert_eq!(model.requests()[2].body["messages"][1], json!({"role": "user", "content": "Question"}));
    })
    .await;
}

async fn client_tool_calls_reach_the_model_as_tool_messages(backend: Backend) {
    let model = FakeModel::start(vec![
        FakeAnswer::Text(vec!["Hi"]),
        FakeAnswer::Text(vec!["You picked 3 items."]),
    ])
    .await;
    with_model(backend, &model, async |app| {
        let (_, events) = stream(app, "alice", json!({"type": "threads.create", "params": {"input": input("What did I select?")}})).await;
        let thread_id = events[0]["thread"]["id"].as_str().unwrap().to_owned();
        let call = json!({"id": "tc_1", "thread_id": thread_id, "created_at": "2099-01-01T00:00:00", "type": "client_tool_call",
            "status": "pending", "call_id": "call_1", "name": "get_selection", "arguments": {"all": true}, "output": null});
        app.db.chatkit().add_thread_item(&thread_id, &call.to_string(), "alice").await.unwrap();
        let (_, events) = stream(app, "alice", json!({"type": "threads.add_client_tool_output", "params": {"thread_id": thread_id, "result": {"count": 3}}})).await;
        assert_eq!(text_of(&events), "You picked 3 items.");
        let messages = &model.requests()[1].body["messages"];
        let messages = messages.as_array().unwrap();
        assert_eq!(messages[messages.len() - 2..], [
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_selection", "arguments": r#"{"all":true}"#}}]}),
            json!({"role": "tool", "tool_call_id": "call_1", "content": r#"{"count":3}"#}),
        ]);
    })
    .await;
}

/// A client that leaves while the model is still thinking (sending nothing) is noticed at
/// once: the model call is dropped, and what was said is kept with the hidden marker.
async fn a_client_that_leaves_while_the_model_thinks_ends_the_model_call(backend: Backend) {
    let model = FakeModel::start(vec![FakeAnswer::Silent(vec!["Let me think"])]).await;
    with_model(backend, &model, async |app| {
        let request =
            json!({"type": "threads.create", "params": {"input": input("Hard question")}});
        let response = app
            .request(reqwest::Method::POST, "/chatkit", "alice")
            .header("content-type", "application/json")
            .body(request.to_string())
            .send()
            .await
            .unwrap();
        let mut body = response.bytes_stream();
        let mut seen = String::new();
        while !seen.contains("Let me think") {
            seen.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
        }
        let thread_id =
            seen.split(r#""id":""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
        drop(body); // the client leaves; the model is still "thinking"
        eventually("the model call ending", async || model.abandoned() == 1).await;
        eventually("the marker being stored", async || {
            stored_items(app, "alice", &thread_id).await.len() == 3
        })
        .await;
        let items = stored_items(app, "alice", &thread_id).await;
        let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["user_message", "assistant_message", "sdk_hidden_context"]);
        assert_eq!(items[1]["content"][0]["text"], "Let me think");
    })
    .await;
}

/// A client that keeps its connection open but stops reading is let go after
/// `server.stalled_read_timeout_secs`, so it cannot hold a model call (or a task) forever.
async fn a_client_that_stops_reading_is_let_go(backend: Backend) {
    let model = FakeModel::start(vec![FakeAnswer::Endless]).await;
    with_model_configured(backend, &model, |settings| settings.server.stalled_read_timeout_secs = 1, async |app| {
        let body = json!({"type": "threads.create", "params": {"input": input("Talk forever")}}).to_string();
        let address = app.address.trim_start_matches("http://");
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /chatkit HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            app.token("alice"),
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(body.as_bytes()).await.unwrap();
        // ... and never reads.
        eventually("the model call ending", async || model.abandoned() == 1).await;
        let threads = app.db.chatkit().load_threads(10, None, repositories::chatkit::SortOrder::Desc, "alice").await.unwrap();
        let thread_id = threads.data[0].id.clone();
        eventually("the marker being stored", async || {
            stored_items(app, "alice", &thread_id).await.iter().any(|i| i["type"] == "sdk_hidden_context")
        })
        .await;
        let items = stored_items(app, "alice", &thread_id).await;
        assert_eq!(items[1]["type"], "assistant_message", "what was said so far is kept");
        assert!(items[1]["content"][0]["text"].as_str().unwrap().starts_with("and on "));
        drop(socket);
    })
    .await;
}

dual_backend_tests!(
    the_model_streams_the_answer_and_sees_the_history,
    a_model_that_fails_mid_answer_leaves_no_half_answer,
    client_tool_calls_reach_the_model_as_tool_messages,
    a_client_that_leaves_while_the_model_thinks_ends_the_model_call,
    a_client_that_stops_reading_is_let_go,
);
