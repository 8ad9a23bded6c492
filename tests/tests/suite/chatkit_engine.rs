//! The ChatKit engine called directly, without HTTP: typed requests in, JSON or events out,
//! on both databases.

use std::sync::Arc;
use std::time::Duration;

use chatkit_server::responder::EchoResponder;
use chatkit_server::{Answer, AttachmentUrls, ChatKitError, ChatKitRequest, ChatKitServer, Limits};
use chatstore_tests::{Backend, dual_backend_tests, with_database, within};
use futures::StreamExt;
use repositories::{Db, RepoError};
use serde_json::{Value, json};

/// Upload and preview URLs of a fixed shape, or none (uploads off).
struct FixedUrls(bool);

impl AttachmentUrls for FixedUrls {
    fn upload(&self, user: &str, attachment_id: &str) -> Option<String> {
        self.0.then(|| format!("https://up.example/{user}/{attachment_id}"))
    }

    fn preview(&self, user: &str, attachment_id: &str) -> Option<String> {
        self.0.then(|| format!("https://see.example/{user}/{attachment_id}"))
    }
}

async fn engine_on(db: &Db) -> ChatKitServer {
    db.migrate().await.unwrap();
    let limits = Limits { max_attachment_bytes: 1000, stalled_client: Duration::from_secs(5) };
    ChatKitServer::new(db.clone(), Arc::new(EchoResponder::default()), limits)
}

/// Parses and answers one request of `user`.
async fn process(
    engine: &ChatKitServer,
    user: &str,
    request: Value,
) -> Result<Answer, ChatKitError> {
    let request = ChatKitRequest::parse(request.to_string().as_bytes())?;
    engine.process(user, request, &FixedUrls(true)).await
}

async fn json_answer(engine: &ChatKitServer, user: &str, request: Value) -> Value {
    match process(engine, user, request).await.unwrap() {
        Answer::Json(value) => value,
        Answer::Stream(_) => panic!("a stream where JSON was expected"),
    }
}

async fn events(engine: &ChatKitServer, user: &str, request: Value) -> Vec<Value> {
    match process(engine, user, request).await.unwrap() {
        Answer::Stream(events) => within(Duration::from_secs(10), events.collect()).await,
        Answer::Json(value) => panic!("JSON where a stream was expected: {value}"),
    }
}

fn message(text: &str) -> Value {
    json!({"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}})
}

async fn a_thread_is_created_streamed_and_listed(backend: Backend) {
    with_database(backend, async |database| {
        let db = database.connect().await;
        let engine = engine_on(&db).await;
        let created = events(
            &engine,
            "alice",
            json!({"type": "threads.create", "params": {"input": message("Hello there")}}),
        )
        .await;
        let kinds: Vec<&str> = created.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds[..3], ["thread.created", "thread.item.done", "stream_options"]);
        assert_eq!(kinds[kinds.len() - 2..], ["thread.item.done", "thread.updated"]);
        let thread_id = created[0]["thread"]["id"].as_str().unwrap().to_owned();
        let answer = &created[kinds.len() - 2]["item"];
        assert_eq!(answer["content"][0]["text"], "Hello there");

        // The thread, as the SDK sends it: its title from the echo, metadata hidden, items in.
        let thread = json_answer(
            &engine,
            "alice",
            json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}}),
        )
        .await;
        assert_eq!(thread["title"], "Hello there");
        assert_eq!(thread["metadata"], json!({}));
        let items = thread["items"]["data"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1]["id"], answer["id"]);

        let listed =
            json_answer(&engine, "alice", json!({"type": "threads.list", "params": {}})).await;
        assert_eq!(listed["data"][0]["id"], thread_id.as_str());
        assert_eq!(listed["has_more"], false);
        let empty =
            json_answer(&engine, "bob", json!({"type": "threads.list", "params": {}})).await;
        assert_eq!(empty["data"], json!([]), "another user sees none of it");

        // Another user's thread is missing to them.
        let foreign = process(
            &engine,
            "bob",
            json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}}),
        )
        .await;
        assert!(matches!(foreign, Err(ChatKitError::Store(RepoError::NotFound(_)))), "{foreign:?}");
    })
    .await;
}

async fn bad_requests_are_refused_before_anything_is_written(backend: Backend) {
    with_database(backend, async |database| {
        let db = database.connect().await;
        let engine = engine_on(&db).await;
        for request in [
            json!({"type": "threads.explode", "params": {}}),
            json!({"type": "threads.create", "params": {"input": {"content": []}}}),
            json!({"type": "items.list", "params": {"thread_id": ""}}),
            json!({"type": "threads.list", "params": {"limit": 1001}}),
            json!({"type": "input.transcribe", "params": {}}),
            json!({"type": "attachments.create", "params": {"name": "big", "size": 1001, "mime_type": "text/plain"}}),
        ] {
            let answer = process(&engine, "alice", request.clone()).await;
            assert!(matches!(answer, Err(ChatKitError::Invalid(_))), "{request}: {answer:?}");
        }
        let listed = json_answer(&engine, "alice", json!({"type": "threads.list", "params": {}})).await;
        assert_eq!(listed["data"], json!([]));

        // Without upload URLs there is no attachments.create; with them, the URLs are the
        // transport's, and an image gets a preview.
        let create = ChatKitRequest::parse(
            br#"{"type": "attachments.create", "params": {"name": "a.png", "size": 10, "mime_type": "image/png"}}"#,
        )
        .unwrap();
        let refused = engine.process("alice", create, &FixedUrls(false)).await;
        assert!(matches!(refused, Err(ChatKitError::Invalid(_))), "{refused:?}");
        let created = json_answer(
            &engine,
            "alice",
            json!({"type": "attachments.create", "params": {"name": "a.png", "size": 10, "mime_type": "image/png"}}),
        )
        .await;
        let id = created["id"].as_str().unwrap();
        assert_eq!(created["upload_descriptor"]["url"], format!("https://up.example/alice/{id}"));
        assert_eq!(created["preview_url"], format!("https://see.example/alice/{id}"));
        assert_eq!(created["type"], "image");
    })
    .await;
}

dual_backend_tests!(
    a_thread_is_created_streamed_and_listed,
    bad_requests_are_refused_before_anything_is_written,
);
