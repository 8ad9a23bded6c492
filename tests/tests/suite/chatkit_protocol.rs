//! `POST /chatkit`, the non-streaming requests: answers in ChatKit's wire form, store effects,
//! tenancy and bad requests.

use chatstore_tests::{Answer, Backend, TestApp, dual_backend_tests, with_app};
use repositories::chatkit::Store;
use serde_json::{Value, json};

async fn chatkit(app: &TestApp, user: &str, request: Value) -> Answer {
    app.post("/chatkit", user, &request.to_string()).await
}

fn thread(id: &str, title: Option<&str>) -> String {
    json!({"title": title, "id": id, "created_at": "2025-10-06T12:00:00.123456", "status": {"type": "active"},
        "allowed_image_domains": null, "metadata": {"private": "server only"}})
    .to_string()
}

fn message(id: &str, thread_id: &str, second: usize) -> String {
    json!({"id": id, "thread_id": thread_id, "created_at": format!("2025-10-06T12:00:{second:02}"),
        "type": "assistant_message", "content": [{"annotations": [], "text": format!("text {id}"), "type": "output_text"}]})
    .to_string()
}

async fn seed(app: &TestApp, user: &str, thread_id: &str, items: usize) {
    let store = app.db.chatkit();
    store.save_thread(&thread(thread_id, Some("Trip")), user).await.unwrap();
    for n in 0..items {
        store
            .add_thread_item(thread_id, &message(&format!("msg_{n:02}"), thread_id, n), user)
            .await
            .unwrap();
    }
}

async fn get_by_id_returns_the_thread_with_its_oldest_visible_items(backend: Backend) {
    with_app(backend, async |app| {
        seed(app, "alice", "thr_1", 24).await;
        let store = app.db.chatkit();
        // A hidden item among the first 20, and a user message whose attachment has metadata.
        store
            .add_thread_item("thr_1", &json!({"id": "shcx_1", "thread_id": "thr_1", "created_at": "2025-10-06T12:00:05.5",
                "type": "sdk_hidden_context", "content": "cancelled"}).to_string(), "alice")
            .await
            .unwrap();
        store
            .add_thread_item("thr_1", &json!({"id": "msg_user", "thread_id": "thr_1", "created_at": "2025-10-06T12:00:00.5",
                "type": "user_message", "content": [{"type": "input_text", "text": "Hi"}], "quoted_text": null,
                "inference_options": {"tool_choice": null, "model": null},
                "attachments": [{"id": "atc_1", "name": "a.txt", "mime_type": "text/plain", "upload_descriptor": null,
                    "thread_id": "thr_1", "metadata": {"s3_key": "secret"}, "type": "file"}]}).to_string(), "alice")
            .await
            .unwrap();

        let answer = chatkit(app, "alice", json!({"type": "threads.get_by_id", "params": {"thread_id": "thr_1"}, "metadata": {}})).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let body = answer.json();
        assert_eq!(body["id"], "thr_1");
        assert_eq!(body["title"], "Trip");
        assert_eq!(body["created_at"], "2025-10-06T12:00:00.123456", "the client's string, verbatim");
        assert_eq!(body["metadata"], json!({}), "thread metadata never leaves the server");
        assert!(body.get("allowed_image_domains").is_none(), "nulls are dropped");
        let items = body["items"]["data"].as_array().unwrap();
        assert_eq!(items.len(), 19, "the oldest 20, minus the hidden one");
        assert_eq!(items[0]["id"], "msg_00");
        assert_eq!(items[1]["id"], "msg_user");
        assert_eq!(items[1]["attachments"], json!([{"id": "atc_1", "name": "a.txt", "mime_type": "text/plain", "thread_id": "thr_1", "type": "file"}]));
        assert_eq!(items[1]["inference_options"], json!({}));
        assert!(!body.to_string().contains("shcx_1"));
        assert_eq!(body["items"]["has_more"], true);
        assert_eq!(body["items"]["after"], items.last().unwrap()["id"]);

        // Another user (or a missing thread) is a 404.
        chatkit(app, "bob", json!({"type": "threads.get_by_id", "params": {"thread_id": "thr_1"}})).await.assert_error(404, "not_found");
        chatkit(app, "alice", json!({"type": "threads.get_by_id", "params": {"thread_id": "thr_nope"}})).await.assert_error(404, "not_found");
    })
    .await;
}

async fn lists_page_threads_and_items(backend: Backend) {
    with_app(backend, async |app| {
        for n in 0..3 {
            app.db.chatkit().save_thread(&json!({"id": format!("thr_{n}"), "created_at": format!("2025-10-0{}T12:00:00", n + 1), "title": null}).to_string(), "alice").await.unwrap();
        }
        let threads = chatkit(app, "alice", json!({"type": "threads.list", "params": {"limit": 2}})).await.json();
        assert_eq!(threads["data"].as_array().unwrap().iter().map(|t| t["id"].clone()).collect::<Vec<_>>(), [json!("thr_2"), json!("thr_1")]);
        assert_eq!(threads["data"][0]["items"], json!({"data": [], "has_more": false}));
        assert_eq!(threads["data"][0]["status"], json!({"type": "active"}));
        assert_eq!(threads["has_more"], true);
        let rest = chatkit(app, "alice", json!({"type": "threads.list", "params": {"limit": 2, "after": "thr_1"}})).await.json();
        assert_eq!(rest, json!({"data": [{"id": "thr_0", "created_at": "2025-10-01T12:00:00", "status": {"type": "active"}, "metadata": {}, "items": {"data": [], "has_more": false}}], "has_more": false}));
        assert_eq!(chatkit(app, "bob", json!({"type": "threads.list", "params": {}})).await.json(), json!({"data": [], "has_more": false}));

        seed(app, "alice", "thr_items", 5).await;
        let newest = chatkit(app, "alice", json!({"type": "items.list", "params": {"thread_id": "thr_items", "limit": 2}})).await.json();
        let ids: Vec<_> = newest["data"].as_array().unwrap().iter().map(|i| i["id"].clone()).collect();
        assert_eq!(ids, [json!("msg_04"), json!("msg_03")], "items.list defaults to newest first");
        assert_eq!(newest["after"], "msg_03");
        let asc = chatkit(app, "alice", json!({"type": "items.list", "params": {"thread_id": "thr_items", "order": "asc", "after": "msg_01", "limit": 3}})).await.json();
        let ids: Vec<_> = asc["data"].as_array().unwrap().iter().map(|i| i["id"].clone()).collect();
        assert_eq!(ids, [json!("msg_02"), json!("msg_03"), json!("msg_04")]);
        assert_eq!(asc["has_more"], false);
        assert!(asc.get("after").is_none());
        // As in the SDK, another user's thread lists as empty.
        assert_eq!(chatkit(app, "bob", json!({"type": "items.list", "params": {"thread_id": "thr_items"}})).await.json(), json!({"data": [], "has_more": false}));
        chatkit(app, "alice", json!({"type": "items.list", "params": {"thread_id": "thr_items", "after": "msg_nope"}})).await.assert_error(400, "invalid_request");
    })
    .await;
}

async fn update_delete_and_feedback_change_the_store(backend: Backend) {
    with_app(backend, async |app| {
        seed(app, "alice", "thr_1", 2).await;
        let updated = chatkit(app, "alice", json!({"type": "threads.update", "params": {"thread_id": "thr_1", "title": "Renamed"}})).await.json();
        assert_eq!(updated["title"], "Renamed");
        assert_eq!(updated["items"], json!({"data": [], "has_more": false}));
        let stored: Value = serde_json::from_str(&app.db.chatkit().load_thread("thr_1", "alice").await.unwrap().json).unwrap();
        assert_eq!(stored["title"], "Renamed");
        assert_eq!(stored["metadata"], json!({"private": "server only"}), "metadata stays stored");
        chatkit(app, "bob", json!({"type": "threads.update", "params": {"thread_id": "thr_1", "title": "Bob's"}})).await.assert_error(404, "not_found");

        let answer = chatkit(app, "alice", json!({"type": "items.feedback", "params": {"thread_id": "thr_1", "item_ids": ["msg_00", "msg_01"], "kind": "positive"}})).await;
        assert_eq!((answer.status, answer.json()), (200, json!({})));
        chatkit(app, "alice", json!({"type": "items.feedback", "params": {"thread_id": "thr_1", "item_ids": ["msg_01"], "kind": "negative"}})).await;
        let feedback = app.db.feedback().of_thread("alice", "thr_1").await.unwrap();
        let kinds: Vec<_> = feedback.iter().map(|f| (f.item_id.as_str(), f.kind.as_str())).collect();
        assert_eq!(kinds, [("msg_00", "positive"), ("msg_01", "negative")]);
        // Readable back over HTTP, by its owner only.
        let listed = app.get("/threads/thr_1/feedback", "alice").await.json();
        let kinds: Vec<_> = listed["data"].as_array().unwrap().iter().map(|f| (f["item_id"].clone(), f["kind"].clone())).collect();
        assert_eq!(kinds, [(json!("msg_00"), json!("positive")), (json!("msg_01"), json!("negative"))]);
        app.get("/threads/thr_1/feedback", "bob").await.assert_error(404, "not_found");
        chatkit(app, "bob", json!({"type": "items.feedback", "params": {"thread_id": "thr_1", "item_ids": ["msg_00"], "kind": "negative"}})).await.assert_error(404, "not_found");
        chatkit(app, "alice", json!({"type": "items.feedback", "params": {"thread_id": "thr_1", "item_ids": ["msg_00"], "kind": "meh"}})).await.assert_error(400, "invalid_request");
        assert_eq!(app.db.feedback().of_thread("alice", "thr_1").await.unwrap().len(), 2);

        // Bob's delete is a no-op; Alice's deletes the thread and its items.
        assert_eq!(chatkit(app, "bob", json!({"type": "threads.delete", "params": {"thread_id": "thr_1"}})).await.json(), json!({}));
        assert!(app.db.chatkit().load_thread("thr_1", "alice").await.is_ok());
        assert_eq!(chatkit(app, "alice", json!({"type": "threads.delete", "params": {"thread_id": "thr_1"}})).await.json(), json!({}));
        assert!(app.db.chatkit().load_thread("thr_1", "alice").await.is_err());
        assert!(app.db.feedback().of_thread("alice", "thr_1").await.unwrap().is_empty());
    })
    .await;
}

async fn attachments_upload_to_this_server(backend: Backend) {
    with_app(backend, async |app| {
        let created = chatkit(app, "alice", json!({"type": "attachments.create", "params": {"name": "cat.png", "size": 4, "mime_type": "image/png"}})).await;
        assert_eq!(created.status, 200, "{}", created.text);
        let attachment = created.json();
        let id = attachment["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("atc_") && id.len() >= 36, "{id}");
        assert_eq!(attachment["type"], "image");
        assert!(attachment.get("metadata").is_none() && attachment.get("thread_id").is_none());
        let descriptor = &attachment["upload_descriptor"];
        assert_eq!(descriptor["method"], "PUT");
        let upload_url = descriptor["url"].as_str().unwrap();
        assert!(upload_url.starts_with(&format!("{}/attachments/{id}/content?", app.address)), "{upload_url}");

        // The browser's upload: no token, the descriptor's method, URL and headers.
        let put = app.client.put(upload_url).header("content-type", descriptor["headers"]["Content-Type"].as_str().unwrap()).body(vec![1, 2, 3, 4]).send().await.unwrap();
        assert_eq!(put.status(), 204);
        let preview = app.client.get(attachment["preview_url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(preview.headers()["content-type"], "image/png");
        assert_eq!(preview.bytes().await.unwrap().to_vec(), vec![1, 2, 3, 4]);
        assert_eq!(app.db.chatkit().load_attachment(&id, "alice").await.unwrap().mime_type, "image/png");

        // A file has no preview; too large is refused.
        let file = chatkit(app, "alice", json!({"type": "attachments.create", "params": {"name": "a.txt", "size": 1, "mime_type": "text/plain"}})).await.json();
        assert_eq!(file["type"], "file");
        assert!(file.get("preview_url").is_none());
        let huge = app.settings.attachments.max_bytes + 1;
        chatkit(app, "alice", json!({"type": "attachments.create", "params": {"name": "big", "size": huge, "mime_type": "text/plain"}})).await.assert_error(400, "invalid_request");

        // Bob's delete changes nothing; Alice's removes metadata and bytes.
        chatkit(app, "bob", json!({"type": "attachments.delete", "params": {"attachment_id": id}})).await;
        assert!(app.db.attachment_contents().get("alice", &id).await.unwrap().is_some());
        assert_eq!(chatkit(app, "alice", json!({"type": "attachments.delete", "params": {"attachment_id": id}})).await.json(), json!({}));
        assert!(app.db.chatkit().load_attachment(&id, "alice").await.is_err());
        assert!(app.db.attachment_contents().get("alice", &id).await.unwrap().is_none());
    })
    .await;
}

async fn unanswerable_and_malformed_requests_are_400s(backend: Backend) {
    with_app(backend, async |app| {
        for kind in [
            "threads.create",
            "threads.add_user_message",
            "threads.add_client_tool_output",
            "threads.add_structured_input",
            "threads.retry_after_item",
            "threads.custom_action",
            "input.transcribe",
            "threads.sync_custom_action",
            "threads.explode",
        ] {
            let answer = chatkit(app, "alice", json!({"type": kind, "params": {}})).await;
            answer.assert_error(400, "invalid_request");
            assert!(
                answer.json()["error"]["message"].as_str().unwrap().contains(kind),
                "{}",
                answer.text
            );
        }
        for body in [
            "{",
            "[]",
            r#"{"params":{}}"#,
            r#"{"type":"threads.get_by_id"}"#,
            r#"{"type":"threads.get_by_id","params":{"thread_id":5}}"#,
            r#"{"type":"threads.list","params":{"limit":-1}}"#,
            r#"{"type":"threads.list","params":{"order":"up"}}"#,
        ] {
            app.post("/chatkit", "alice", body).await.assert_error(400, "invalid_request");
        }
        let text = Answer::read(
            app.request(reqwest::Method::POST, "/chatkit", "alice")
                .header("content-type", "text/plain")
                .body("{}")
                .send()
                .await
                .unwrap(),
        )
        .await;
        text.assert_error(415, "unsupported_media_type");
        let anonymous = Answer::read(
            app.client
                .post(app.url("/chatkit"))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap(),
        )
        .await;
        anonymous.assert_error(401, "unauthorized");
    })
    .await;
}

/// The wire form drops null fields but keeps nulls inside free-form values, and every digit.
async fn free_form_values_and_big_numbers_survive_the_wire_form(backend: Backend) {
    with_app(backend, async |app| {
        seed(app, "alice", "thr_1", 0).await;
        let call = r#"{"id":"tc_1","thread_id":"thr_1","created_at":"2025-10-06T12:00:00","type":"client_tool_call",
            "status":"completed","call_id":"c1","name":"f","arguments":{"a":null,"big":18446744073709551617,"neg":-9223372036854775809,"l":[null,1.50]},
            "output":{"x":null}}"#;
        app.db.chatkit().add_thread_item("thr_1", call, "alice").await.unwrap();
        let answer = chatkit(app, "alice", json!({"type": "items.list", "params": {"thread_id": "thr_1"}})).await;
        assert!(answer.text.contains(r#""big":18446744073709551617"#), "{}", answer.text);
        assert!(answer.text.contains(r#""neg":-9223372036854775809"#), "{}", answer.text);
        assert!(answer.text.contains(r#""arguments":{"a":null"#), "{}", answer.text);
        assert!(answer.text.contains(r#""output":{"x":null}"#), "{}", answer.text);
        // An empty cursor is no cursor.
        let first = chatkit(app, "alice", json!({"type": "items.list", "params": {"thread_id": "thr_1", "after": ""}})).await;
        assert_eq!(first.json()["data"][0]["id"], "tc_1");
    })
    .await;
}

/// Behind a proxy, upload and preview URLs use the address the client used.
async fn attachment_urls_follow_forwarded_headers(backend: Backend) {
    with_app(backend, async |app| {
        let answer = Answer::read(
            app.request(reqwest::Method::POST, "/chatkit", "alice")
                .header("content-type", "application/json")
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-host", "chat.example.com")
                .body(json!({"type": "attachments.create", "params": {"name": "a.png", "size": 1, "mime_type": "image/png"}}).to_string())
                .send()
                .await
                .unwrap(),
        )
        .await;
        let body = answer.json();
        assert!(body["upload_descriptor"]["url"].as_str().unwrap().starts_with("https://chat.example.com/attachments/"), "{body}");
        assert!(body["preview_url"].as_str().unwrap().starts_with("https://chat.example.com/attachments/"), "{body}");
    })
    .await;
}

dual_backend_tests!(
    free_form_values_and_big_numbers_survive_the_wire_form,
    attachment_urls_follow_forwarded_headers,
    get_by_id_returns_the_thread_with_its_oldest_visible_items,
    lists_page_threads_and_items,
    update_delete_and_feedback_change_the_store,
    attachments_upload_to_this_server,
    unanswerable_and_malformed_requests_are_400s,
);
