//! JSON nested deeper than serde_json reads (127 arrays and objects) is refused wherever JSON
//! is stored, and stores nothing: such a value could be written but never read back.

use chatstore_tests::{Answer, Backend, TestApp, dual_backend_tests, with_app};
use entity::{chatkit_attachment, chatkit_item, chatkit_thread};
use reqwest::Method;
use sea_orm::{EntityTrait, PaginatorTrait};

/// The most arrays and objects a stored value may nest.
const LIMIT: usize = 127;
/// The hostile case of the issue: a 10 KB body nesting 5,000 arrays.
const HOSTILE: usize = 5000;

/// A JSON object nesting `levels` arrays and objects in all (itself included).
fn object_nesting(levels: usize) -> String {
    let arrays = levels - 1;
    format!(r#"{{"deep": {}{}}}"#, "[".repeat(arrays), "]".repeat(arrays))
}

async fn put(app: &TestApp, path: &str, body: &str) -> Answer {
    app.send(Method::PUT, path, "alice", Some(body)).await
}

async fn session_items_nested_too_deep_are_refused(backend: Backend) {
    with_app(backend, async |app| {
        let items = |item: &str| format!(r#"{{"items": [{item}]}}"#);
        let hostile = items(&object_nesting(HOSTILE));
        assert!(hostile.len() > 10_000, "a 10 KB body");
        let answer = app.post("/sessions/s/items", "alice", &hostile).await;
        answer.assert_error(400, "invalid_request");
        assert!(answer.text.contains("nests more than 127"), "{}", answer.text);
        app.post("/sessions/s/items", "alice", &items(&object_nesting(LIMIT + 1)))
            .await
            .assert_error(400, "invalid_request");
        assert_eq!(app.db.sessions().item_count("alice", "s").await.unwrap(), 0);

        // The deepest item accepted is stored and read back as sent.
        let deepest = object_nesting(LIMIT);
        let answer = app.post("/sessions/s/items", "alice", &items(&deepest)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let read = app.get("/sessions/s/items", "alice").await;
        assert_eq!(read.text, format!(r#"{{"items":[{deepest}]}}"#));

        // One deep item refuses its whole batch.
        let batch = format!(r#"{{"items": [{{"ok": 1}}, {}]}}"#, object_nesting(HOSTILE));
        app.post("/sessions/s/items", "alice", &batch).await.assert_error(400, "invalid_request");
        assert_eq!(app.db.sessions().item_count("alice", "s").await.unwrap(), 1);
    })
    .await;
}

async fn chat_conversations_nested_too_deep_are_refused(backend: Backend) {
    with_app(backend, async |app| {
        let hostile = object_nesting(HOSTILE);
        let create = format!(r#"{{"chat_id": "c", "conversation": [{hostile}]}}"#);
        app.post("/chats", "alice", &create).await.assert_error(400, "invalid_request");
        assert!(app.all_chat_rows().await.is_empty(), "no chat was created");

        let create = format!(r#"{{"chat_id": "c", "conversation": [{}]}}"#, object_nesting(LIMIT));
        assert_eq!(app.post("/chats", "alice", &create).await.status, 201);
        let replace = format!(r#"{{"conversation": [{hostile}]}}"#);
        put(app, "/chats/c", &replace).await.assert_error(400, "invalid_request");
        assert_eq!(app.db.sessions().item_count("alice", "c").await.unwrap(), 1);
        let read = app.get("/sessions/c/items", "alice").await;
        assert_eq!(read.text, format!(r#"{{"items":[{}]}}"#, object_nesting(LIMIT)));
    })
    .await;
}

async fn chatkit_objects_nested_too_deep_are_refused(backend: Backend) {
    with_app(backend, async |app| {
        let deep = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        // A thread is an object whose `metadata` object holds the nested arrays: 2 levels more.
        let thread = |levels: usize| {
            format!(
                r#"{{"id": "thr_1", "created_at": "2025-10-06T12:00:00", "status": {{"type": "active"}}, "metadata": {{"deep": {}}}}}"#,
                deep(levels - 2)
            )
        };
        put(app, "/threads/thr_1", &thread(HOSTILE)).await.assert_error(400, "invalid_request");
        put(app, "/threads/thr_1", &thread(LIMIT + 1)).await.assert_error(400, "invalid_request");
        let chatkit = format!(
            r#"{{"type": "threads.create", "params": {{"input": {{"content": [], "attachments": [], "inference_options": {{}}, "deep": {}}}}}}}"#,
            deep(HOSTILE)
        );
        app.post("/chatkit", "alice", &chatkit).await.assert_error(400, "invalid_request");
        assert_eq!(chatkit_thread::Entity::find().count(app.db.connection()).await.unwrap(), 0);

        let answer = put(app, "/threads/thr_1", &thread(LIMIT)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let item = format!(
            r#"{{"id": "msg_1", "thread_id": "thr_1", "created_at": "2025-10-06T12:00:00", "type": "end_of_turn", "deep": {}}}"#,
            deep(HOSTILE)
        );
        app.post("/threads/thr_1/items", "alice", &item).await.assert_error(400, "invalid_request");
        put(app, "/threads/thr_1/items/msg_1", &item).await.assert_error(400, "invalid_request");
        assert_eq!(chatkit_item::Entity::find().count(app.db.connection()).await.unwrap(), 0);
        let attachment = format!(
            r#"{{"id": "atc_1", "name": "a.txt", "mime_type": "text/plain", "type": "file", "metadata": {{"deep": {}}}}}"#,
            deep(HOSTILE)
        );
        put(app, "/attachments/atc_1", &attachment).await.assert_error(400, "invalid_request");
        assert_eq!(chatkit_attachment::Entity::find().count(app.db.connection()).await.unwrap(), 0);
    })
    .await;
}

dual_backend_tests!(
    session_items_nested_too_deep_are_refused,
    chat_conversations_nested_too_deep_are_refused,
    chatkit_objects_nested_too_deep_are_refused,
);
