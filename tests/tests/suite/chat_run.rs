//! `POST /chat/run`: one agent turn with session memory, streamed or not; the turn is stored
//! only when the answer is complete.

use chatstore::settings::ResponderKind;
use chatstore::settings::Settings;
use chatstore_tests::{
    Backend, FakeAnswer, FakeModel, TestApp, dual_backend_tests, with_app, with_app_configured,
};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::chatkit_openai::{eventually, with_model_configured};

async fn session_items(app: &TestApp, user: &str, session: &str) -> Vec<Value> {
    let answer = app.get(&format!("/sessions/{session}/items"), user).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()["items"].as_array().unwrap().clone()
}

/// Posts a streamed run and reads its `data:` frames.
async fn run_streamed(app: &TestApp, user: &str, body: Value) -> Vec<Value> {
    let response = app
        .request(reqwest::Method::POST, "/chat/run", user)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            serde_json::from_str(frame.strip_prefix("data: ").expect("a data frame")).unwrap()
        })
        .collect()
}

async fn a_turn_is_answered_and_remembered(backend: Backend) {
    with_app(backend, async |app| {
        // Not streamed: one JSON answer; a new session when none is named.
        let answer = app
            .post(
                "/chat/run",
                "alice",
                &json!({"input": "Hello there", "stream": false}).to_string(),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let result = answer.json();
        let session = result["session_id"].as_str().unwrap().to_owned();
        assert_eq!(session.len(), 36, "a new UUID");
        assert_eq!(result["output"], "Hello there");
        let items = session_items(app, "alice", &session).await;
        assert_eq!(items, result["items"].as_array().unwrap().clone());
        assert_eq!(items[0], json!({"role": "user", "content": "Hello there"}));
        assert_eq!(items[1]["role"], "assistant");
        assert_eq!(items[1]["type"], "message");
        assert_eq!(
            items[1]["content"][0],
            json!({"type": "output_text", "text": "Hello there", "annotations": [], "logprobs": []})
        );

        // Streamed, on the same session.
        let events =
            run_streamed(app, "alice", json!({"input": "Again please", "session_id": session}))
                .await;
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["run.started", "output_text.delta", "output_text.delta", "run.completed"]
        );
        assert_eq!(events[0]["session_id"], session.as_str());
        assert_eq!(events[1]["delta"], "Again ");
        assert_eq!(events[3]["output"], "Again please");
        let items = session_items(app, "alice", &session).await;
        assert_eq!(items.len(), 4);
        assert_eq!(items[2], json!({"role": "user", "content": "Again please"}));
        assert_eq!(&items[3], &events[3]["items"][1]);
        // Bob's session of the same name is his own.
        assert!(session_items(app, "bob", &session).await.is_empty());
    })
    .await;
}

async fn bad_runs_are_refused_and_store_nothing(backend: Backend) {
    with_app(backend, async |app| {
        for body in [
            json!({"input": "", "session_id": "s1"}),
            json!({"input": "   ", "session_id": "s1"}),
            json!({"session_id": "s1"}),
            json!({"input": 5, "session_id": "s1"}),
            json!({"input": "hi", "session_id": "s1", "strem": false}),
            json!({"input": "hi", "session_id": "s\u{0}1"}),
            json!({"input": "hi", "session_id": "x".repeat(256)}),
            json!({"input": "hi", "session_id": ""}),
        ] {
            app.post("/chat/run", "alice", &body.to_string())
                .await
                .assert_error(400, "invalid_request");
        }
        let unauthenticated = app
            .client
            .post(app.url("/chat/run"))
            .header("content-type", "application/json")
            .body(json!({"input": "hi", "session_id": "s1"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(unauthenticated.status(), 401);
        assert!(session_items(app, "alice", "s1").await.is_empty());
        let count = app.get("/chats/count?include_inactive=true", "alice").await.json();
        assert_eq!(count["count"], 0, "no session was created");
    })
    .await;
}

async fn the_model_remembers_an_earlier_turn(backend: Backend) {
    let model = FakeModel::start(vec![
        FakeAnswer::Text(vec!["Nice to meet you, ", "Ada."]),
        FakeAnswer::Text(vec!["Your name is Ada."]),
        FakeAnswer::Break(vec!["I think"]),
        FakeAnswer::Status(503, "overloaded"),
    ])
    .await;
    let base_url = model.base_url.clone();
    let configure = |settings: &mut chatstore::settings::Settings| {
        settings.responder.kind = ResponderKind::Openai;
        settings.responder.openai.base_url = base_url;
        settings.responder.openai.instructions = None;
    };
    with_app_configured(backend, configure, async |app| {
        // Memory written by another Agents SDK client counts too.
        let earlier = json!({"items": [{"role": "user", "content": "I live in Lyon."}, {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Noted."}]}]});
        assert_eq!(app.post("/sessions/ada/items", "alice", &earlier.to_string()).await.status, 200);

        let first = app.post("/chat/run", "alice", &json!({"input": "My name is Ada.", "session_id": "ada", "stream": false}).to_string()).await;
        assert_eq!(first.json()["output"], "Nice to meet you, Ada.");
        let events = run_streamed(app, "alice", json!({"input": "What is my name?", "session_id": "ada"})).await;
        assert_eq!(events.last().unwrap()["output"], "Your name is Ada.");
        assert_eq!(model.requests()[1].body["messages"], json!([
            {"role": "user", "content": "I live in Lyon."},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Nice to meet you, Ada."},
            {"role": "user", "content": "What is my name?"},
        ]));
        assert_eq!(session_items(app, "alice", "ada").await.len(), 6);

        // A model that fails mid-answer (streamed) or refuses (not streamed): an error, and the
        // session is as it was, so the turn can be retried.
        let events = run_streamed(app, "alice", json!({"input": "And my city?", "session_id": "ada"})).await;
        let last = events.last().unwrap();
        assert_eq!((last["type"].as_str(), last["code"].as_str()), (Some("error"), Some("unavailable")));
        assert_eq!(events[1], json!({"type": "output_text.delta", "delta": "I think"}));
        let refused = app.post("/chat/run", "alice", &json!({"input": "And my city?", "session_id": "ada", "stream": false}).to_string()).await;
        refused.assert_error(503, "unavailable");
        assert_eq!(refused.headers["retry-after"], "1");
        assert!(!refused.text.contains("overloaded"), "upstream details stay in the log: {}", refused.text);
        assert_eq!(session_items(app, "alice", "ada").await.len(), 6);
    })
    .await;
}

/// The streaming wire format as OpenAI-compatible servers really send it: keep-alive comments,
/// data-less events, a `finish_reason` without `[DONE]`; and the ways an answer can fail.
async fn the_openai_responder_reads_the_wire_format_fairly(backend: Backend) {
    let model = FakeModel::start(vec![
        FakeAnswer::Raw(concat!(
            ": OPENROUTER PROCESSING\n\n",
            "event: ping\ndata:\n\n",
            r#"data: {"choices":[{"index":0,"delta":{"content":"Trunc"},"finish_reason":null}]}"#, "\n\n",
            r#"data: {"choices":[{"index":1,"delta":{"content":"other choice"},"finish_reason":null}]}"#, "\n\n",
            r#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#, "\n\n",
        )),
        FakeAnswer::Raw(concat!(
            r#"data: {"choices":[{"index":0,"delta":{"content":"Half"},"finish_reason":null}]}"#, "\n\n",
            r#"data: {"error":{"message":"upstream overloaded"}}"#, "\n\n",
        )),
        FakeAnswer::Raw(concat!(
            r#"data: {"choices":[{"index":0,"delta":{"content":"Ends"},"finish_reason":null}]}"#, "\n\n",
        )),
        FakeAnswer::Raw(concat!(
            r#"data: {"choices":[{"index":0,"delta":{"content":"Bad"},"finish_reason":"content_filter"}]}"#, "\n\n",
            "data: [DONE]\n\n",
        )),
        FakeAnswer::Raw("data: not json\n\n"),
        FakeAnswer::Silent(vec![]),
    ])
    .await;
    let settings = |settings: &mut Settings| settings.responder.openai.read_timeout_secs = 1;
    with_model_configured(backend, &model, settings, async |app| {
        let run = async |input: &str| {
            app.post(
                "/chat/run",
                "alice",
                &json!({"input": input, "session_id": "s", "stream": false}).to_string(),
            )
            .await
        };
        // Comments and data-less events are skipped, other choices ignored; a truncated
        // answer (finish_reason "length") is still the model's answer.
        let truncated = run("One").await;
        assert_eq!(truncated.status, 200, "{}", truncated.text);
        assert_eq!(truncated.json()["output"], "Trunc");
        // An error chunk, an end without a finish, a chunk that is not JSON, silence: 503,
        // nothing stored.
        for input in ["Two", "Three"] {
            run(input).await.assert_error(503, "unavailable");
        }
        // The content filter's refusal is said as such.
        let filtered = run("Four").await;
        filtered.assert_error(503, "unavailable");
        assert!(
            filtered.json()["error"]["message"].as_str().unwrap().contains("content filter"),
            "{}",
            filtered.text
        );
        for input in ["Five", "Six"] {
            run(input).await.assert_error(503, "unavailable");
        }
        assert_eq!(
            session_items(app, "alice", "s").await.len(),
            2,
            "only the first turn is stored"
        );
    })
    .await;
}

async fn a_run_abandoned_mid_answer_stores_nothing(backend: Backend) {
    let model = FakeModel::start(vec![FakeAnswer::Silent(vec!["Partial"])]).await;
    with_model_configured(
        backend,
        &model,
        |_| {},
        async |app| {
            let response = app
                .request(reqwest::Method::POST, "/chat/run", "alice")
                .header("content-type", "application/json")
                .body(json!({"input": "Hi", "session_id": "left"}).to_string())
                .send()
                .await
                .unwrap();
            let mut body = response.bytes_stream();
            let mut seen = String::new();
            while !seen.contains("Partial") {
                seen.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
            }
            drop(body);
            eventually("the model call ending", async || model.abandoned() == 1).await;
            assert!(session_items(app, "alice", "left").await.is_empty());
        },
    )
    .await;
}

dual_backend_tests!(
    a_turn_is_answered_and_remembered,
    bad_runs_are_refused_and_store_nothing,
    the_model_remembers_an_earlier_turn,
    the_openai_responder_reads_the_wire_format_fairly,
    a_run_abandoned_mid_answer_stores_nothing,
);
