//! Chat CRUD: the life cycle, stable keyset paging, sessions and chats as one conversation,
//! tenancy, and bad input.

use std::collections::HashSet;

use chatstore_tests::{Answer, Backend, TestApp, dual_backend_tests, with_app};
use sea_orm::{EntityTrait, QueryFilter};
use serde_json::{Value, json};

async fn create(app: &TestApp, user: &str, body: Value) -> Value {
    let answer = app.post("/chats", user, &body.to_string()).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.json()
}

fn is_rfc3339_utc(text: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(text).is_ok() && text.ends_with('Z')
}

async fn a_chat_lives_through_its_whole_life_cycle(backend: Backend) {
    with_app(backend, async |app| {
        // Create, with a server-chosen id.
        let chat = create(
            app,
            "alice",
            json!({ "title": "Trip", "conversation": [{"role": "user", "content": "hi"}] }),
        )
        .await;
        let id = chat["chat_id"].as_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "a UUID: {id}");
        assert_eq!(chat["user_id"], "alice");
        assert_eq!(chat["title"], "Trip");
        assert_eq!(chat["is_active"], true);
        assert_eq!(chat["item_count"], 1);
        assert_eq!(chat["conversation"], json!([{"role": "user", "content": "hi"}]));
        assert!(is_rfc3339_utc(chat["created_at"].as_str().unwrap()), "{chat}");
        assert_eq!(chat["created_at"], chat["updated_at"]);

        // Read it back.
        let read = app.get(&format!("/chats/{id}"), "alice").await.json();
        assert_eq!(read, chat);

        // Update the title only, then replace the conversation.
        let renamed = app
            .send(
                reqwest::Method::PUT,
                &format!("/chats/{id}"),
                "alice",
                Some(r#"{"title":"Paris"}"#),
            )
            .await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
        let renamed = renamed.json();
        assert_eq!(renamed["title"], "Paris");
        assert_eq!(renamed["conversation"], chat["conversation"]);
        assert!(renamed["updated_at"].as_str() > chat["updated_at"].as_str());
        let replaced = app
            .send(
                reqwest::Method::PUT,
                &format!("/chats/{id}"),
                "alice",
                Some(r#"{"conversation":[{"a":1},{"b":2}]}"#),
            )
            .await
            .json();
        assert_eq!(replaced["conversation"], json!([{"a": 1}, {"b": 2}]));
        assert_eq!(replaced["item_count"], 2);
        assert_eq!(replaced["title"], "Paris");
        let cleared = app
            .send(reqwest::Method::PUT, &format!("/chats/{id}"), "alice", Some(r#"{"title":null}"#))
            .await
            .json();
        assert_eq!(cleared["title"], Value::Null);

        // Count, soft delete, restore.
        assert_eq!(app.get("/chats/count", "alice").await.json(), json!({"count": 1}));
        assert_eq!(app.delete(&format!("/chats/{id}"), "alice").await.status, 204);
        assert_eq!(app.get("/chats/count", "alice").await.json(), json!({"count": 0}));
        assert_eq!(
            app.get("/chats/count?include_inactive=true", "alice").await.json(),
            json!({"count": 1})
        );
        assert!(app.get("/chats", "alice").await.json()["data"].as_array().unwrap().is_empty());
        let listed = app.get("/chats?include_inactive=true", "alice").await.json();
        assert_eq!(listed["data"][0]["chat_id"], id.as_str());
        assert!(listed["data"][0].get("conversation").is_none(), "lists leave conversations out");
        let inactive = app.get(&format!("/chats/{id}"), "alice").await.json();
        assert_eq!(inactive["is_active"], false, "still readable by id");
        let restored = app
            .send(
                reqwest::Method::PUT,
                &format!("/chats/{id}"),
                "alice",
                Some(r#"{"is_active":true}"#),
            )
            .await
            .json();
        assert_eq!(restored["is_active"], true);
        assert_eq!(app.get("/chats/count", "alice").await.json(), json!({"count": 1}));

        // Hard delete removes the chat and its items; the id can be used again.
        assert_eq!(app.delete(&format!("/chats/{id}?hard=true"), "alice").await.status, 204);
        app.get(&format!("/chats/{id}"), "alice").await.assert_error(404, "not_found");
        let items =
            entity::conversation_item::Entity::find().all(app.db.connection()).await.unwrap();
        assert!(items.is_empty(), "items are gone: {items:?}");
        app.delete(&format!("/chats/{id}"), "alice").await.assert_error(404, "not_found");
        app.delete(&format!("/chats/{id}?hard=true"), "alice").await.assert_error(404, "not_found");
        let again = create(app, "alice", json!({ "chat_id": id })).await;
        assert_eq!(again["item_count"], 0);
        assert_eq!(again["title"], Value::Null);

        // A taken id is a conflict that changes nothing.
        let conflict = app
            .post("/chats", "alice", &json!({"chat_id": id, "title": "other"}).to_string())
            .await;
        conflict.assert_error(409, "conflict");
        assert_eq!(app.chat_row("alice", &id).await.unwrap().title, None);
    })
    .await;
}

/// 250 chats with the same `updated_at`, paged 7 at a time both ways: every chat once.
async fn paging_is_stable_when_updated_at_ties(backend: Backend) {
    with_app(backend, async |app| {
        for n in 0..250 {
            let (chat_id, (metadata, tags)) = (format!("chat-{n:03}"), Default::default());
            app.db.chats().create("alice", &chat_id, None, &[], metadata, tags).await.unwrap();
        }
        let tie = chrono::Utc::now() - chrono::Duration::hours(1);
        entity::chat::Entity::update_many()
            .col_expr(entity::chat::Column::UpdatedAt, sea_orm::sea_query::Expr::value(tie))
            .filter(sea_orm::ColumnTrait::eq(&entity::chat::Column::UserId, "alice"))
            .exec(app.db.connection())
            .await
            .unwrap();
        for order in ["desc", "asc"] {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut path = format!("/chats?limit=7&order={order}");
                if let Some(after) = &after {
                    path.push_str(&format!("&after={after}"));
                }
                let page = app.get(&path, "alice").await.json();
                let data = page["data"].as_array().unwrap();
                assert!(data.len() <= 7);
                seen.extend(data.iter().map(|chat| chat["chat_id"].as_str().unwrap().to_owned()));
                if page["has_more"] == false {
                    assert_eq!(page["after"], Value::Null);
                    break;
                }
                assert_eq!(page["after"], data.last().unwrap()["chat_id"]);
                after = page["after"].as_str().map(str::to_owned);
            }
            assert_eq!(seen.len(), 250, "{order}: nothing repeated");
            assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 250, "{order}: nothing skipped");
            let mut sorted = seen.clone();
            sorted.sort();
            if order == "desc" {
                sorted.reverse();
            }
            assert_eq!(seen, sorted, "{order}: ties broken by chat id");
        }
    })
    .await;
}

/// Updating a chat, or adding to its session, moves it to the top.
async fn activity_moves_a_chat_to_the_top(backend: Backend) {
    with_app(backend, async |app| {
        for id in ["a", "b", "c"] {
            create(app, "alice", json!({ "chat_id": id })).await;
        }
        let order = async || -> Vec<String> {
            let page = app.get("/chats", "alice").await.json();
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["chat_id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(order().await, ["c", "b", "a"]);
        app.send(reqwest::Method::PUT, "/chats/a", "alice", Some(r#"{"title":"x"}"#)).await;
        assert_eq!(order().await, ["a", "c", "b"]);
        app.post("/sessions/b/items", "alice", r#"{"items":[{"n":1}]}"#).await;
        assert_eq!(order().await, ["b", "a", "c"]);
    })
    .await;
}

/// A chat's conversation and the session of the same id are the same items.
async fn sessions_and_chats_share_their_items(backend: Backend) {
    with_app(backend, async |app| {
        app.post("/sessions/shared/items", "alice", r#"{"items":[{"n":1},{"n":2}]}"#).await;
        let chat = app.get("/chats/shared", "alice").await.json();
        assert_eq!(chat["conversation"], json!([{"n": 1}, {"n": 2}]));
        assert_eq!(chat["title"], Value::Null);
        assert_eq!(chat["item_count"], 2);

        create(app, "alice", json!({ "chat_id": "made", "conversation": [{"m": 1}] })).await;
        app.send(
            reqwest::Method::PUT,
            "/chats/made",
            "alice",
            Some(r#"{"conversation":[{"m":2},{"m":3}]}"#),
        )
        .await;
        let items = app.get("/sessions/made/items", "alice").await.json();
        assert_eq!(items, json!({"items": [{"m": 2}, {"m": 3}]}));
        // Appending after a replace continues the sequence.
        app.post("/sessions/made/items", "alice", r#"{"items":[{"m":4}]}"#).await;
        let popped = app.post("/sessions/made/pop", "alice", "").await.json();
        assert_eq!(popped, json!({"item": {"m": 4}}));
        let chat = app.get("/chats/made", "alice").await.json();
        assert_eq!(chat["conversation"], json!([{"m": 2}, {"m": 3}]));
        assert_eq!(chat["item_count"], 2);
    })
    .await;
}

/// Another user's chat is a missing chat, for every route, and nothing changes.
async fn another_users_chat_is_invisible_and_untouched(backend: Backend) {
    with_app(backend, async |app| {
        create(
            app,
            "alice",
            json!({ "chat_id": "mine", "title": "Alice's", "conversation": [{"a": 1}] }),
        )
        .await;
        let before = app.chat_row("alice", "mine").await.unwrap();

        app.get("/chats/mine", "bob").await.assert_error(404, "not_found");
        app.send(reqwest::Method::PUT, "/chats/mine", "bob", Some(r#"{"title":"Bob's"}"#))
            .await
            .assert_error(404, "not_found");
        app.send(reqwest::Method::PUT, "/chats/mine", "bob", Some(r#"{"conversation":[]}"#))
            .await
            .assert_error(404, "not_found");
        app.send(reqwest::Method::PUT, "/chats/mine", "bob", Some(r#"{"is_active":false}"#))
            .await
            .assert_error(404, "not_found");
        app.delete("/chats/mine", "bob").await.assert_error(404, "not_found");
        app.delete("/chats/mine?hard=true", "bob").await.assert_error(404, "not_found");
        assert!(
            app.get("/chats?include_inactive=true", "bob").await.json()["data"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            app.get("/chats/count?include_inactive=true", "bob").await.json(),
            json!({"count": 0})
        );
        // Alice's chat id as Bob's cursor names nothing in Bob's list.
        app.get("/chats?after=mine", "bob").await.assert_error(400, "invalid_request");

        assert_eq!(app.chat_row("alice", "mine").await.unwrap(), before, "nothing changed");
        assert_eq!(app.db.sessions().all_items("alice", "mine").await.unwrap(), ["{\"a\":1}"]);
        // Bob may use the same id in his own namespace.
        let bobs = create(app, "bob", json!({ "chat_id": "mine" })).await;
        assert_eq!(bobs["user_id"], "bob");
        assert_eq!(app.chat_row("alice", "mine").await.unwrap(), before);
    })
    .await;
}

async fn malformed_chat_requests_are_rejected(backend: Backend) {
    with_app(backend, async |app| {
        let long = "é".repeat(256);
        let bodies = [
            json!({ "title": long }).to_string(),
            json!({ "conversation": [1] }).to_string(),
            json!({ "conversation": {"a": 1} }).to_string(),
            json!({ "chat_id": "" }).to_string(),
            json!({ "chat_id": "x".repeat(256) }).to_string(),
            json!({ "title": 5 }).to_string(),
            json!({ "unknown": true }).to_string(),
            "{".to_owned(),
        ];
        for body in &bodies {
            app.post("/chats", "alice", body).await.assert_error(400, "invalid_request");
        }
        create(app, "alice", json!({ "chat_id": "c", "title": "é".repeat(255) })).await;
        for body in [
            "{}",
            r#"{"title":"é"#,
            r#"{"is_active":"yes"}"#,
            r#"{"conversation":[null]}"#,
            r#"{"chat_id":"other"}"#,
            // A null that would say nothing is refused like an empty update.
            r#"{"is_active":null}"#,
            r#"{"conversation":null}"#,
        ] {
            app.send(reqwest::Method::PUT, "/chats/c", "alice", Some(body))
                .await
                .assert_error(400, "invalid_request");
        }
        let put_long = json!({ "title": long }).to_string();
        app.send(reqwest::Method::PUT, "/chats/c", "alice", Some(&put_long))
            .await
            .assert_error(400, "invalid_request");
        for query in [
            "limit=0",
            "limit=101",
            "limit=x",
            "order=sideways",
            "include_inactive=maybe",
            "after=nope",
            "after=",
        ] {
            app.get(&format!("/chats?{query}"), "alice").await.assert_error(400, "invalid_request");
        }
        app.get("/chats/count?include_inactive=2", "alice")
            .await
            .assert_error(400, "invalid_request");
        app.delete("/chats/c?hard=please", "alice").await.assert_error(400, "invalid_request");
        let wrong_type = Answer::read(
            app.request(reqwest::Method::POST, "/chats", "alice")
                .header("content-type", "text/plain")
                .body("{}")
                .send()
                .await
                .unwrap(),
        )
        .await;
        wrong_type.assert_error(415, "unsupported_media_type");
        // Only the one valid chat exists, unchanged.
        let rows = app.all_chat_rows().await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].title.as_deref(), Some("é".repeat(255).as_str()));
    })
    .await;
}

/// Replacing the conversation while others read it: every read sees one whole list.
async fn readers_never_see_a_half_replaced_conversation(backend: Backend) {
    with_app(backend, async |app| {
        let list = |tag: &str, n: usize| {
            json!({ "conversation": vec![json!({ "tag": tag }); n] }).to_string()
        };
        let (a, b) = (list("A", 10), list("B", 15));
        create(app, "alice", json!({ "chat_id": "c" })).await;
        app.send(reqwest::Method::PUT, "/chats/c", "alice", Some(&a)).await;
        let writer = {
            let requests: Vec<_> = (0..30)
                .map(|n| {
                    app.request(reqwest::Method::PUT, "/chats/c", "alice")
                        .header("content-type", "application/json")
                        .body(if n % 2 == 0 { b.clone() } else { a.clone() })
                })
                .collect();
            tokio::spawn(async move {
                for request in requests {
                    assert_eq!(request.send().await.unwrap().status(), 200);
                }
            })
        };
        let mut reads = Vec::new();
        for n in 0..60 {
            let path = if n % 2 == 0 { "/chats/c" } else { "/sessions/c/items" };
            let request = app.request(reqwest::Method::GET, path, "alice");
            reads.push(tokio::spawn(async move {
                request.send().await.unwrap().json::<Value>().await.unwrap()
            }));
        }
        for read in reads {
            let body = read.await.unwrap();
            let items = body
                .get("conversation")
                .or_else(|| body.get("items"))
                .unwrap()
                .as_array()
                .unwrap()
                .clone();
            let tags: HashSet<_> =
                items.iter().map(|item| item["tag"].as_str().unwrap().to_owned()).collect();
            assert_eq!(tags.len(), 1, "one list, not a mix: {body}");
            let expected = if tags.contains("A") { 10 } else { 15 };
            assert_eq!(items.len(), expected, "a whole list: {body}");
            if let Some(count) = body.get("item_count") {
                assert_eq!(count, expected, "the count matches the items read");
            }
        }
        writer.await.unwrap();
    })
    .await;
}

dual_backend_tests!(
    readers_never_see_a_half_replaced_conversation,
    a_chat_lives_through_its_whole_life_cycle,
    paging_is_stable_when_updated_at_ties,
    activity_moves_a_chat_to_the_top,
    sessions_and_chats_share_their_items,
    another_users_chat_is_invisible_and_untouched,
    malformed_chat_requests_are_rejected,
);
