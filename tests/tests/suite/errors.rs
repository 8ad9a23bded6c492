//! Malformed requests get a clear 4xx in the error shape of `API.md`, and change nothing.

use chatstore_tests::{Backend, TestApp, dual_backend_tests, with_app_configured};

const BODY_LIMIT: usize = 2048;

async fn nothing_stored(app: &TestApp) {
    assert_eq!(app.db.sessions().item_count("alice", "s").await.unwrap(), 0);
    let chats = app.all_chat_rows().await;
    assert!(chats.is_empty(), "no chat was created: {chats:?}");
}

async fn malformed_bodies_are_rejected_with_error_json(backend: Backend) {
    with_app_configured(
        backend,
        |s| s.server.body_limit_bytes = BODY_LIMIT,
        async |app| {
            let post = |content_type: Option<&'static str>, body: String| {
                let mut request = app.request(reqwest::Method::POST, "/sessions/s/items", "alice");
                if let Some(content_type) = content_type {
                    request = request.header("content-type", content_type);
                }
                async move {
                    chatstore_tests::Answer::read(request.body(body).send().await.unwrap()).await
                }
            };
            let json = Some("application/json");
            post(json, "{\"items\": [".into()).await.assert_error(400, "invalid_request");
            post(json, "not json at all".into()).await.assert_error(400, "invalid_request");
            post(json, String::new()).await.assert_error(400, "invalid_request");
            post(json, "[{\"a\":1}]".into()).await.assert_error(400, "invalid_request");
            post(json, "{\"items\": {\"a\": 1}}".into()).await.assert_error(400, "invalid_request");
            post(json, "{\"itemz\": []}".into()).await.assert_error(400, "invalid_request");
            post(json, "{\"items\": [], \"extra\": 1}".into())
                .await
                .assert_error(400, "invalid_request");
            post(json, "{\"items\": [{\"a\":1}, 2]}".into())
                .await
                .assert_error(400, "invalid_request");
            post(json, "{\"items\": [{\"a\":1}, null]}".into())
                .await
                .assert_error(400, "invalid_request");
            post(json, "{\"items\": [\"{}\"]}".into()).await.assert_error(400, "invalid_request");
            post(Some("text/plain"), "{\"items\": []}".into())
                .await
                .assert_error(415, "unsupported_media_type");
            post(None, "{\"items\": []}".into()).await.assert_error(415, "unsupported_media_type");
            let big = format!("{{\"items\": [{{\"text\": \"{}\"}}]}}", "x".repeat(BODY_LIMIT));
            post(json, big).await.assert_error(413, "payload_too_large");
            nothing_stored(app).await;
        },
    )
    .await;
}

async fn bad_query_strings_and_ids_are_rejected(backend: Backend) {
    with_app_configured(
        backend,
        |_| {},
        async |app| {
            for query in ["limit=-1", "limit=abc", "limit=1.5", "limit=99999999999999999999999"] {
                app.get(&format!("/sessions/s/items?{query}"), "alice")
                    .await
                    .assert_error(400, "invalid_request");
            }
            // An empty id, on every session route.
            app.get("/sessions//items", "alice").await.assert_error(400, "invalid_request");
            app.post("/sessions//items", "alice", "{\"items\":[{}]}")
                .await
                .assert_error(400, "invalid_request");
            app.post("/sessions//pop", "alice", "").await.assert_error(400, "invalid_request");
            app.delete("/sessions//items", "alice").await.assert_error(400, "invalid_request");
            let long = "x".repeat(256);
            app.get(&format!("/sessions/{long}/items"), "alice")
                .await
                .assert_error(400, "invalid_request");
            app.post(&format!("/sessions/{long}/items"), "alice", "{\"items\":[{}]}")
                .await
                .assert_error(400, "invalid_request");
            app.post("/sessions/a%00b/items", "alice", "{\"items\":[{}]}")
                .await
                .assert_error(400, "invalid_request");
            // Not UTF-8 once percent-decoded.
            app.get("/sessions/%FF%FE/items", "alice").await.assert_error(400, "invalid_request");
            nothing_stored(app).await;
        },
    )
    .await;
}

/// A request refused before its body was read cannot leave its connection reusable; the server
/// says `Connection: close` so clients do not send the next request into it.
async fn refusals_before_the_body_close_the_connection(backend: Backend) {
    with_app_configured(
        backend,
        |_| {},
        async |app| {
            let refused = app
                .client
                .post(app.url("/sessions/s/items"))
                .header("content-type", "application/json")
                .body("{\"items\":[{}]}")
                .send()
                .await
                .unwrap();
            assert_eq!(refused.status(), 401);
            assert_eq!(
                refused.headers().get("connection").and_then(|v| v.to_str().ok()),
                Some("close")
            );
            let accepted = app.post("/sessions/s/items", "alice", "{\"items\":[{}]}").await;
            assert_eq!(accepted.status, 200);
            assert_eq!(
                accepted.header("connection"),
                None,
                "successful requests keep the connection"
            );
            // And the client's next request on the pool still works.
            assert_eq!(app.post("/sessions/s/pop", "alice", "").await.status, 200);
        },
    )
    .await;
}

dual_backend_tests!(
    refusals_before_the_body_close_the_connection,
    malformed_bodies_are_rejected_with_error_json,
    bad_query_strings_and_ids_are_rejected
);
