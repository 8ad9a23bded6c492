//! The streaming ChatKit requests answered so far: `threads.create` and
//! `threads.add_user_message`, with the echo responder.

use std::time::Duration;

use chatstore_tests::{Backend, TestApp, dual_backend_tests, with_app, with_app_configured};
use futures::StreamExt;
use repositories::chatkit::{SortOrder, Store};
use serde_json::{Value, json};

fn input(text: &str) -> Value {
    json!({"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}})
}

/// Sends a streaming request and reads every `data:` frame.
async fn stream(app: &TestApp, user: &str, request: Value) -> (u16, Vec<Value>) {
    let response = app
        .request(reqwest::Method::POST, "/chatkit", user)
        .header("content-type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(response.headers()["content-type"], "text/event-stream");
    }
    let text = response.text().await.unwrap();
    if status != 200 {
        return (status, Vec::new());
    }
    let events = text
        .split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            serde_json::from_str(frame.strip_prefix("data: ").expect("a data frame")).unwrap()
        })
        .collect();
    (status, events)
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|event| event["type"].as_str().unwrap().to_owned()).collect()
}

async fn stored_items(app: &TestApp, user: &str, thread_id: &str) -> Vec<Value> {
    let page = app
        .db
        .chatkit()
        .load_thread_items(thread_id, None, 100, SortOrder::Asc, user)
        .await
        .unwrap();
    page.data.iter().map(|item| serde_json::from_str(&item.json).unwrap()).collect()
}

async fn threads_create_streams_in_the_sdks_order_and_stores_what_it_sends(backend: Backend) {
    with_app(backend, async |app| {
        let (status, events) = stream(
            app,
            "alice",
            json!({"type": "threads.create", "params": {"input": input("Plan a trip to Lyon")}}),
        )
        .await;
        assert_eq!(status, 200);
        let mut expected = vec![
            "thread.created",
            "thread.item.done",
            "stream_options",
            "thread.item.added",
            "thread.item.updated",
        ];
        expected.extend(["thread.item.updated"; 5]); // one delta per word
        expected.extend(["thread.item.updated", "thread.item.done", "thread.updated"]);
        assert_eq!(types(&events), expected);
        let thread_id = events[0]["thread"]["id"].as_str().unwrap().to_owned();
        assert!(thread_id.starts_with("thr_") && thread_id.len() == 36);
        assert_eq!(events[0]["thread"]["metadata"], json!({}));
        assert_eq!(events[1]["item"]["type"], "user_message");
        assert_eq!(events[2]["stream_options"], json!({"allow_cancel": true}));
        assert_eq!(events.last().unwrap()["thread"]["title"], "Plan a trip to Lyon");
        let assistant = &events[events.len() - 2]["item"];
        assert_eq!(assistant["content"][0]["text"], "Plan a trip to Lyon");
        // Persisted: the thread with its title, the user's message and the answer, in order.
        let thread: Value = serde_json::from_str(
            &app.db.chatkit().load_thread(&thread_id, "alice").await.unwrap().json,
        )
        .unwrap();
        assert_eq!(thread["title"], "Plan a trip to Lyon");
        let items = stored_items(app, "alice", &thread_id).await;
        assert_eq!(
            items.iter().map(|i| i["type"].as_str().unwrap()).collect::<Vec<_>>(),
            ["user_message", "assistant_message"]
        );
        assert_eq!(&items[1]["id"], &assistant["id"]);
        assert!(
            app.db.chatkit().load_thread(&thread_id, "bob").await.is_err(),
            "the thread is Alice's"
        );
    })
    .await;
}

async fn add_user_message_continues_a_thread(backend: Backend) {
    with_app(backend, async |app| {
        let (_, created) = stream(app, "alice", json!({"type": "threads.create", "params": {"input": input("First")}})).await;
        let thread_id = created[0]["thread"]["id"].as_str().unwrap().to_owned();
        let (status, events) = stream(app, "alice", json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": input("Second message")}})).await;
        assert_eq!(status, 200);
        // The thread has a title already: no thread.updated this time.
        assert_eq!(
            types(&events),
            ["thread.item.done", "stream_options", "thread.item.added", "thread.item.updated", "thread.item.updated",
             "thread.item.updated", "thread.item.updated", "thread.item.done"]
        );
        assert_eq!(stored_items(app, "alice", &thread_id).await.len(), 4);

        // Errors before the stream starts are JSON, and change nothing.
        let (status, _) = stream(app, "bob", json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": input("hi")}})).await;
        assert_eq!(status, 404);
        let unknown = app.post("/chatkit", "alice", &json!({"type": "threads.add_user_message", "params": {"thread_id": "thr_nope", "input": input("hi")}}).to_string()).await;
        unknown.assert_error(404, "not_found");
        let bad_attachment = app.post("/chatkit", "alice", &json!({"type": "threads.create", "params": {"input": {"content": [], "attachments": ["atc_nope"], "inference_options": {}}}}).to_string()).await;
        bad_attachment.assert_error(404, "not_found");
        let no_content = app.post("/chatkit", "alice", &json!({"type": "threads.create", "params": {"input": {"attachments": [], "inference_options": {}}}}).to_string()).await;
        no_content.assert_error(400, "invalid_request");
        assert_eq!(stored_items(app, "alice", &thread_id).await.len(), 4);
        let threads = app.db.chatkit().load_threads(100, None, SortOrder::Desc, "alice").await.unwrap();
        assert_eq!(threads.data.len(), 1, "no thread was created by the failed requests");
    })
    .await;
}

/// A client that goes away mid-answer leaves the partial answer and the cancellation marker,
/// as the SDK's handle_stream_cancelled does; the marker is never shown.
async fn a_disconnect_keeps_the_partial_answer_and_a_hidden_marker(backend: Backend) {
    with_app_configured(
        backend,
        |settings| settings.chatkit.echo_delay_ms = 100,
        async |app| {
            let text = (0..30).map(|n| format!("word{n}")).collect::<Vec<_>>().join(" ");
            let response = app
                .request(reqwest::Method::POST, "/chatkit", "alice")
                .header("content-type", "application/json")
                .body(
                    json!({"type": "threads.create", "params": {"input": input(&text)}})
                        .to_string(),
                )
                .send()
                .await
                .unwrap();
            let mut body = response.bytes_stream();
            let mut seen = String::new();
            while !seen.contains("text_delta") {
                seen.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
            }
            let thread_id =
                seen.split("\"id\":\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
            drop(body); // the client goes away after the first words
            let mut items = Vec::new();
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                items = stored_items(app, "alice", &thread_id).await;
                if items.len() == 3 {
                    break;
                }
            }
            let kinds: Vec<_> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
            assert_eq!(kinds, ["user_message", "assistant_message", "sdk_hidden_context"]);
            let said = items[1]["content"][0]["text"].as_str().unwrap();
            assert!(!said.is_empty() && said.len() < text.len(), "a partial answer: {said:?}");
            assert!(text.starts_with(said.trim_end()));
            // The marker is stored but never sent to the client.
            let thread = app
                .post(
                    "/chatkit",
                    "alice",
                    &json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}})
                        .to_string(),
                )
                .await
                .json();
            assert_eq!(thread["items"]["data"].as_array().unwrap().len(), 2);
            assert!(!thread.to_string().contains("sdk_hidden_context"));
        },
    )
    .await;
}

async fn retry_after_item_answers_again_without_what_followed(backend: Backend) {
    with_app(backend, async |app| {
        let (_, created) = stream(app, "alice", json!({"type": "threads.create", "params": {"input": input("First question")}})).await;
        let thread_id = created[0]["thread"]["id"].as_str().unwrap().to_owned();
        let first = created[1]["item"]["id"].as_str().unwrap().to_owned();
        stream(app, "alice", json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": input("Second")}})).await;
        // More than one page (20) of newer items, so the search pages newest-first.
        for n in 0..25 {
            let item = json!({"id": format!("msg_later_{n:02}"), "thread_id": thread_id,
                "created_at": format!("2099-01-01T00:00:{n:02}"), "type": "end_of_turn"});
            app.db.chatkit().add_thread_item(&thread_id, &item.to_string(), "alice").await.unwrap();
        }
        let (status, events) = stream(app, "alice", json!({"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": first}})).await;
        assert_eq!(status, 200);
        assert_eq!(types(&events)[..3], ["stream_options", "thread.item.added", "thread.item.updated"]);
        assert_eq!(types(&events).last().unwrap(), "thread.item.done");
        let items = stored_items(app, "alice", &thread_id).await;
        let kinds: Vec<_> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["user_message", "assistant_message"], "everything after the first question is gone");
        assert_eq!(items[0]["id"], first.as_str());
        assert_eq!(items[1]["content"][0]["text"], "First question");

        // Not a user message: 400. An unknown item: an empty stream (as in the SDK).
        let answer_id = items[1]["id"].as_str().unwrap();
        let not_user = app.post("/chatkit", "alice", &json!({"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": answer_id}}).to_string()).await;
        not_user.assert_error(400, "invalid_request");
        let (status, events) = stream(app, "alice", json!({"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": "msg_nope"}})).await;
        assert_eq!((status, events.len()), (200, 0));
        let (status, _) = stream(app, "bob", json!({"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": first}})).await;
        assert_eq!(status, 404);
        assert_eq!(stored_items(app, "alice", &thread_id).await.len(), 2);
    })
    .await;
}

async fn client_tool_output_completes_the_pending_call(backend: Backend) {
    with_app(backend, async |app| {
        let (_, created) = stream(app, "alice", json!({"type": "threads.create", "params": {"input": input("Select something")}})).await;
        let thread_id = created[0]["thread"]["id"].as_str().unwrap().to_owned();
        let call = |id: &str, at: &str| {
            json!({"id": id, "thread_id": thread_id, "created_at": at, "type": "client_tool_call",
                "status": "pending", "call_id": format!("call_{id}"), "name": "get_selection", "arguments": {"a": 1}, "output": null})
            .to_string()
        };
        let store = app.db.chatkit();
        store.add_thread_item(&thread_id, &call("tc_old", "2098-01-01T00:00:00"), "alice").await.unwrap();
        store.add_thread_item(&thread_id, &call("tc_new", "2099-01-01T00:00:00"), "alice").await.unwrap();

        let request = json!({"type": "threads.add_client_tool_output", "params": {"thread_id": thread_id, "result": {"ok": true, "n": null}}});
        let (status, events) = stream(app, "alice", request.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(types(&events), ["stream_options"], "echo has nothing to add without a user message");
        let items = stored_items(app, "alice", &thread_id).await;
        let calls: Vec<_> = items.iter().filter(|i| i["type"] == "client_tool_call").collect();
        assert_eq!(calls.len(), 1, "the other pending call is dropped");
        assert_eq!(calls[0]["id"], "tc_new");
        assert_eq!(calls[0]["status"], "completed");
        assert_eq!(calls[0]["output"], json!({"ok": true, "n": null}));

        // The newest item is no longer pending: 400. Another user's thread: 404.
        app.post("/chatkit", "alice", &request.to_string()).await.assert_error(400, "invalid_request");
        let (status, _) = stream(app, "bob", request).await;
        assert_eq!(status, 404);
    })
    .await;
}

dual_backend_tests!(
    client_tool_output_completes_the_pending_call,
    retry_after_item_answers_again_without_what_followed,
    threads_create_streams_in_the_sdks_order_and_stores_what_it_sends,
    add_user_message_continues_a_thread,
    a_disconnect_keeps_the_partial_answer_and_a_hidden_marker,
);
