//! The six streaming ChatKit requests with the echo responder (and a failing one): the events
//! in the SDK's order, and what the database holds afterwards.

use std::time::Duration;

use std::sync::Arc;

use chatstore::responder::{
    Message, RespondInput, Responder, ResponderError, ResponderEvent, TextStream,
};
use chatstore_tests::{
    Backend, TestApp, dual_backend_tests, with_app, with_app_configured, with_app_responding,
};
use futures::StreamExt;
use repositories::chatkit::{SortOrder, Store};
use serde_json::{Value, json};

pub(crate) fn input(text: &str) -> Value {
    json!({"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}})
}

/// Sends a streaming request and reads every `data:` frame.
pub(crate) async fn stream(app: &TestApp, user: &str, request: Value) -> (u16, Vec<Value>) {
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

pub(crate) fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|event| event["type"].as_str().unwrap().to_owned()).collect()
}

pub(crate) async fn stored_items(app: &TestApp, user: &str, thread_id: &str) -> Vec<Value> {
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
        // As in the SDK, a missing thread is reported before a missing attachment.
        let both = app.post("/chatkit", "alice", &json!({"type": "threads.add_user_message", "params": {"thread_id": "thr_nope", "input": {"content": [], "attachments": ["atc_nope"], "inference_options": {}}}}).to_string()).await;
        both.assert_error(404, "not_found");
        assert!(both.json()["error"]["message"].as_str().unwrap().contains("thr_nope"), "{}", both.text);
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
        |settings| settings.responder.echo_delay_ms = 100,
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

/// A thread of Alice's with one item of the given JSON (fields `id` and `type` at least).
async fn thread_with(app: &TestApp, item: Value) -> String {
    let (_, created) = stream(
        app,
        "alice",
        json!({"type": "threads.create", "params": {"input": input("Start")}}),
    )
    .await;
    let thread_id = created[0]["thread"]["id"].as_str().unwrap().to_owned();
    let mut item = item;
    item["thread_id"] = json!(thread_id);
    item["created_at"] = json!("2099-01-01T00:00:00");
    app.db.chatkit().add_thread_item(&thread_id, &item.to_string(), "alice").await.unwrap();
    thread_id
}

async fn stored_item(app: &TestApp, thread_id: &str, item_id: &str) -> Value {
    serde_json::from_str(
        &app.db.chatkit().load_item(thread_id, item_id, "alice").await.unwrap().json,
    )
    .unwrap()
}

async fn structured_input_records_the_answers_and_replaces_the_item(backend: Backend) {
    with_app(backend, async |app| {
        let question = json!({"id": "msg_si", "type": "structured_input", "status": "pending", "inputs": [
            {"id": "subject", "question": "Which?", "answer": null, "type": "multiple_choice", "options": [{"value": "Math"}, {"value": "Art"}], "multiple": false},
            {"id": "tags", "question": "Tags?", "answer": null, "type": "multiple_choice", "options": [{"value": "a"}], "multiple": true},
            {"id": "notes", "question": "Notes?", "answer": null, "type": "freeform", "description": "optional"},
            {"id": "empty", "question": "Empty?", "answer": null, "type": "freeform"}]});
        let thread_id = thread_with(app, question).await;
        let request = json!({"type": "threads.add_structured_input", "params": {"thread_id": thread_id, "item_id": "msg_si",
            "input": {"answers": {"subject": {"values": ["Math", "Art"]}, "tags": {"values": ["a", "b"]}, "empty": {"values": []}, "unknown": {"values": ["x"]}}}}});
        let (status, events) = stream(app, "alice", request.clone()).await;
        assert_eq!(status, 200);
        // Echo has nothing to say without a user message: the replacement is the whole answer.
        assert_eq!(types(&events), ["stream_options", "thread.item.replaced"]);
        let answered = stored_item(app, &thread_id, "msg_si").await;
        assert_eq!(answered["status"], "answered");
        let answers: Vec<&Value> = answered["inputs"].as_array().unwrap().iter().map(|input| &input["answer"]).collect();
        assert_eq!(answers, [
            &json!({"values": ["Math"], "skipped": false}),      // one choice only
            &json!({"values": ["a", "b"], "skipped": false}),    // multiple allowed
            &json!({"values": [], "skipped": true}),             // missing
            &json!({"values": [], "skipped": true}),             // empty
        ]);
        assert_eq!(events[1]["item"]["inputs"][0]["answer"], json!({"values": ["Math"], "skipped": false}));

        // Answered already, not a structured input, or unknown: 4xx, and nothing changes.
        app.post("/chatkit", "alice", &request.to_string()).await.assert_error(400, "invalid_request");
        let first_message = stored_items(app, "alice", &thread_id).await[0]["id"].as_str().unwrap().to_owned();
        let mut wrong = request.clone();
        wrong["params"]["item_id"] = json!(first_message);
        app.post("/chatkit", "alice", &wrong.to_string()).await.assert_error(400, "invalid_request");
        wrong["params"]["item_id"] = json!("msg_nope");
        app.post("/chatkit", "alice", &wrong.to_string()).await.assert_error(404, "not_found");
        let mut malformed = request.clone();
        malformed["params"]["input"]["status"] = json!("maybe");
        app.post("/chatkit", "alice", &malformed.to_string()).await.assert_error(400, "invalid_request");
        assert_eq!(stored_item(app, &thread_id, "msg_si").await, answered);
        let (status, _) = stream(app, "bob", request).await;
        assert_eq!(status, 404);
    })
    .await;
}

async fn a_skipped_structured_input_skips_every_question(backend: Backend) {
    with_app(backend, async |app| {
        let question = json!({"id": "msg_si", "type": "structured_input", "status": "pending", "inputs": [
            {"id": "subject", "question": "Which?", "type": "multiple_choice", "options": [{"value": "Math"}]}]});
        let thread_id = thread_with(app, question).await;
        let (status, events) = stream(app, "alice", json!({"type": "threads.add_structured_input", "params": {"thread_id": thread_id, "item_id": "msg_si",
            "input": {"status": "skipped", "answers": {"subject": {"values": ["Math"]}}}}})).await;
        assert_eq!((status, types(&events)), (200, vec!["stream_options".to_owned(), "thread.item.replaced".to_owned()]));
        let skipped = stored_item(app, &thread_id, "msg_si").await;
        assert_eq!(skipped["status"], "skipped");
        assert_eq!(skipped["inputs"][0]["answer"], json!({"values": [], "skipped": true}));
    })
    .await;
}

async fn custom_action_is_answered_by_the_responder(backend: Backend) {
    with_app(backend, async |app| {
        let widget = json!({"id": "msg_w1", "type": "widget", "widget": {"type": "Card", "children": []}});
        let thread_id = thread_with(app, widget).await;
        let action = json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": "msg_w1", "action": {"type": "submit", "payload": {"x": 1}}}});
        let (status, events) = stream(app, "alice", action).await;
        assert_eq!(status, 200);
        let kinds = types(&events);
        assert_eq!(kinds[..3], ["stream_options", "thread.item.added", "thread.item.updated"]);
        assert_eq!(kinds.last().unwrap(), "thread.item.done");
        let items = stored_items(app, "alice", &thread_id).await;
        let answer = stored_item(app, &thread_id, events.last().unwrap()["item"]["id"].as_str().unwrap()).await;
        assert_eq!(answer["type"], "assistant_message");
        assert_eq!(answer["content"][0]["text"], r#"Action submit {"x":1}"#);

        // No sender is fine too.
        let (_, events) = stream(app, "alice", json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "action": {"type": "refresh"}}})).await;
        assert_eq!(types(&events).last().unwrap(), "thread.item.done");
        assert_eq!(stored_items(app, "alice", &thread_id).await.len(), items.len() + 1);

        // A sender that is not a widget: the SDK's bare error event, before stream_options.
        let user_message = items[0]["id"].as_str().unwrap();
        let (status, events) = stream(app, "alice", json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": user_message, "action": {"type": "submit"}}})).await;
        assert_eq!(status, 200);
        assert_eq!(events, [json!({"type": "error", "code": "stream.error", "allow_retry": false})]);
        // An unknown sender, a malformed action: 4xx before any stream.
        app.post("/chatkit", "alice", &json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": "msg_nope", "action": {"type": "submit"}}}).to_string())
            .await.assert_error(404, "not_found");
        app.post("/chatkit", "alice", &json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "action": {"payload": 1}}}).to_string())
            .await.assert_error(400, "invalid_request");
        assert_eq!(stored_items(app, "alice", &thread_id).await.len(), items.len() + 1);
    })
    .await;
}

/// Says one finished sentence, starts a second one, then fails with `error`.
#[derive(Debug)]
struct FailingResponder {
    error: fn() -> ResponderError,
}

impl Responder for FailingResponder {
    fn reply(&self, _conversation: Vec<Message>) -> TextStream {
        Box::pin(futures::stream::iter([Ok("unused".to_owned())]))
    }

    fn respond(&self, input: RespondInput) -> chatstore::responder::EventStream {
        let thread_id = input.thread["id"].clone();
        let message = |id: &str, text: &str| {
            json!({"id": id, "thread_id": thread_id, "created_at": "2099-01-01T00:00:00",
            "type": "assistant_message", "content": [{"type": "output_text", "text": text, "annotations": []}]})
        };
        let events = vec![
            Ok(ResponderEvent::Event(
                json!({"type": "thread.item.done", "item": message("msg_said", "Finished.")}),
            )),
            Ok(ResponderEvent::Event(
                json!({"type": "thread.item.added", "item": message("msg_half", "Half a")}),
            )),
            Err((self.error)()),
            Ok(ResponderEvent::Event(
                json!({"type": "thread.item.done", "item": message("msg_never", "never sent")}),
            )),
        ];
        Box::pin(futures::stream::iter(events))
    }
}

async fn a_failing_responder_ends_the_stream_with_an_error_event(backend: Backend) {
    let custom =
        || ResponderError::Custom { message: "The quota is used up.".into(), allow_retry: false };
    with_app_responding(backend, Arc::new(FailingResponder { error: custom }), async |app| {
        let (status, events) = stream(app, "alice", json!({"type": "threads.create", "params": {"input": input("Hi")}})).await;
        assert_eq!(status, 200, "a failure inside the stream is not an HTTP error");
        assert_eq!(types(&events), ["thread.created", "thread.item.done", "stream_options", "thread.item.done", "thread.item.added", "error"]);
        assert_eq!(events.last().unwrap(), &json!({"type": "error", "code": "custom", "message": "The quota is used up.", "allow_retry": false}));
        let thread_id = events[0]["thread"]["id"].as_str().unwrap();
        let ids: Vec<String> = stored_items(app, "alice", thread_id).await.iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids.len(), 2, "the user's message and the finished answer; not the unfinished one: {ids:?}");
        assert_eq!(ids[1], "msg_said");
    })
    .await;
    let failed = || ResponderError::Failed("the database of secrets at 10.0.0.1 is down".into());
    with_app_responding(backend, Arc::new(FailingResponder { error: failed }), async |app| {
        let (_, events) = stream(
            app,
            "alice",
            json!({"type": "threads.create", "params": {"input": input("Hi")}}),
        )
        .await;
        // Other failures are not described to the client, who may retry.
        assert_eq!(
            events.last().unwrap(),
            &json!({"type": "error", "code": "stream.error", "allow_retry": true})
        );
    })
    .await;
}

/// Changes the thread: locks it with a reason, and notes something in its metadata; then
/// "changes" the title to the one it has (no event for that).
#[derive(Debug)]
struct ThreadChangingResponder;

impl Responder for ThreadChangingResponder {
    fn reply(&self, _conversation: Vec<Message>) -> TextStream {
        Box::pin(futures::stream::empty())
    }

    fn respond(&self, input: RespondInput) -> chatstore::responder::EventStream {
        let mut lock = serde_json::Map::new();
        lock.insert("status".into(), json!({"type": "locked", "reason": "Out of credits"}));
        lock.insert("metadata".into(), json!({"plan": "free"}));
        lock.insert("id".into(), json!("thr_hijack"));
        let mut unchanged = serde_json::Map::new();
        unchanged.insert("title".into(), input.thread["title"].clone());
        Box::pin(futures::stream::iter([
            Ok(ResponderEvent::UpdateThread(lock)),
            Ok(ResponderEvent::UpdateThread(unchanged)),
        ]))
    }
}

async fn a_responder_can_change_the_thread(backend: Backend) {
    with_app_responding(backend, Arc::new(ThreadChangingResponder), async |app| {
        let (_, events) = stream(
            app,
            "alice",
            json!({"type": "threads.create", "params": {"input": input("Hi")}}),
        )
        .await;
        assert_eq!(
            types(&events),
            ["thread.created", "thread.item.done", "stream_options", "thread.updated"]
        );
        let thread_id = events[0]["thread"]["id"].as_str().unwrap();
        assert_eq!(events[3]["thread"]["id"], thread_id, "the id cannot change");
        assert_eq!(
            events[3]["thread"]["status"],
            json!({"type": "locked", "reason": "Out of credits"})
        );
        assert_eq!(events[3]["thread"]["metadata"], json!({}), "metadata is never sent");
        let stored: Value = serde_json::from_str(
            &app.db.chatkit().load_thread(thread_id, "alice").await.unwrap().json,
        )
        .unwrap();
        assert_eq!(stored["status"]["type"], "locked");
        assert_eq!(stored["metadata"], json!({"plan": "free"}));
    })
    .await;
}

dual_backend_tests!(
    a_responder_can_change_the_thread,
    structured_input_records_the_answers_and_replaces_the_item,
    a_skipped_structured_input_skips_every_question,
    custom_action_is_answered_by_the_responder,
    a_failing_responder_ends_the_stream_with_an_error_event,
    client_tool_output_completes_the_pending_call,
    retry_after_item_answers_again_without_what_followed,
    threads_create_streams_in_the_sdks_order_and_stores_what_it_sends,
    add_user_message_continues_a_thread,
    a_disconnect_keeps_the_partial_answer_and_a_hidden_marker,
);
