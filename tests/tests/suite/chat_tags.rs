//! A chat's metadata and tags: lossless round trips, filtering by tags with stable keyset
//! paging, tenancy, bad input, and what deletes do to tags.

use std::collections::BTreeSet;

use chatstore_tests::{Answer, Backend, TestApp, dual_backend_tests, with_app};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};

async fn create(app: &TestApp, user: &str, body: &str) -> Answer {
    let answer = app.post("/chats", user, body).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer
}

async fn put(app: &TestApp, user: &str, chat_id: &str, body: &str) -> Answer {
    app.send(reqwest::Method::PUT, &format!("/chats/{chat_id}"), user, Some(body)).await
}

/// The `chat_tags` rows of a user's chat, read straight from the database, sorted.
async fn tag_rows(app: &TestApp, user: &str, chat_id: &str) -> Vec<String> {
    entity::chat_tag::Entity::find()
        .filter(entity::chat_tag::Column::UserId.eq(user))
        .filter(entity::chat_tag::Column::ChatId.eq(chat_id))
        .order_by_asc(entity::chat_tag::Column::Tag)
        .all(app.db.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.tag)
        .collect()
}

/// Every `chat_tags` row of every user.
async fn all_tag_rows(app: &TestApp) -> Vec<entity::chat_tag::Model> {
    entity::chat_tag::Entity::find()
        .order_by_asc(entity::chat_tag::Column::UserId)
        .order_by_asc(entity::chat_tag::Column::ChatId)
        .order_by_asc(entity::chat_tag::Column::Tag)
        .all(app.db.connection())
        .await
        .unwrap()
}

/// The ids of every chat of `path`'s list, walking every page.
async fn walk(app: &TestApp, user: &str, path: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page_path = match &after {
            Some(after) => format!("{path}&after={after}"),
            None => path.to_owned(),
        };
        let page = app.get(&page_path, user).await;
        assert_eq!(page.status, 200, "{page_path}: {}", page.text);
        let page = page.json();
        let data = page["data"].as_array().unwrap();
        ids.extend(data.iter().map(|chat| chat["chat_id"].as_str().unwrap().to_owned()));
        if page["has_more"] == true {
            assert_eq!(page["after"], data.last().unwrap()["chat_id"]);
            after = page["after"].as_str().map(str::to_owned);
        } else {
            assert_eq!(page["after"], Value::Null);
            return ids;
        }
    }
}

async fn metadata_and_tags_round_trip(backend: Backend) {
    with_app(backend, async |app| {
        // Odd spacing, key order, escapes and a number beyond f64: returned as sent.
        let metadata =
            r#"{ "z": 1, "a" :[1,2 ,3], "n": 12345678901234567890.50, "s": "\u00e9\u0000"}"#;
        let body = format!(
            r#"{{"chat_id": "c1", "metadata": {metadata}, "tags": ["work", "Été", "work", "q1"]}}"#
        );
        let created = create(app, "alice", &body).await;
        assert!(
            created.text.contains(&format!(r#""metadata":{metadata}"#)),
            "metadata byte for byte: {}",
            created.text
        );
        assert_eq!(created.json()["tags"], json!(["work", "Été", "q1"]), "repeats count once");
        assert_eq!(tag_rows(app, "alice", "c1").await, ["q1", "work", "Été"]);

        let read = app.get("/chats/c1", "alice").await;
        assert!(read.text.contains(&format!(r#""metadata":{metadata}"#)), "{}", read.text);
        assert_eq!(read.json()["tags"], json!(["work", "Été", "q1"]));
        let listed = app.get("/chats", "alice").await;
        assert!(listed.text.contains(&format!(r#""metadata":{metadata}"#)), "{}", listed.text);
        assert_eq!(listed.json()["data"][0]["tags"], json!(["work", "Été", "q1"]));

        // Unset: `{}` and `[]`, also for a chat a session created.
        let plain = create(app, "alice", r#"{"chat_id": "c2"}"#).await.json();
        assert_eq!((&plain["metadata"], &plain["tags"]), (&json!({}), &json!([])));
        let appended = app
            .post("/sessions/s1/items", "alice", r#"{"items": [{"role": "user", "content": "x"}]}"#)
            .await;
        assert!(appended.status < 300, "{}", appended.text);
        let session_chat = app.get("/chats/s1", "alice").await.json();
        assert_eq!((&session_chat["metadata"], &session_chat["tags"]), (&json!({}), &json!([])));
        for chat in app.get("/chats", "alice").await.json()["data"].as_array().unwrap() {
            assert!(chat["metadata"].is_object() && chat["tags"].is_array(), "{chat}");
        }

        // PUT replaces the set of tags and the metadata, and leaves the rest alone.
        let updated = put(app, "alice", "c1", r#"{"tags": ["home", "q1"]}"#).await;
        assert_eq!(updated.status, 200, "{}", updated.text);
        assert!(updated.text.contains(&format!(r#""metadata":{metadata}"#)), "{}", updated.text);
        assert_eq!(updated.json()["tags"], json!(["home", "q1"]));
        assert_eq!(tag_rows(app, "alice", "c1").await, ["home", "q1"]);
        let updated = put(app, "alice", "c1", r#"{"metadata": {"v":2}, "tags": []}"#).await.json();
        assert_eq!((&updated["metadata"], &updated["tags"]), (&json!({"v": 2}), &json!([])));
        assert!(tag_rows(app, "alice", "c1").await.is_empty());
        let row = app.chat_row("alice", "c1").await.unwrap();
        assert_eq!((row.metadata.as_str(), row.tags.as_str()), (r#"{"v":2}"#, "[]"));

        // The limits themselves are accepted: 16 KiB of metadata, 32 tags of 64 characters.
        let filler = "x".repeat(16 * 1024 - r#"{"f":""}"#.len());
        let biggest = format!(r#"{{"f":"{filler}"}}"#);
        assert_eq!(biggest.len(), 16 * 1024);
        let longest: Vec<String> = (0..32).map(|n| format!("{n:02}{}", "é".repeat(62))).collect();
        let body = json!({"tags": longest}).to_string();
        let body = format!(r#"{}, "metadata": {biggest}}}"#, body.strip_suffix('}').unwrap());
        let at_limits = put(app, "alice", "c1", &body).await;
        assert_eq!(at_limits.status, 200, "{}", at_limits.text);
        assert_eq!(at_limits.json()["tags"], json!(longest));
        assert_eq!(app.chat_row("alice", "c1").await.unwrap().metadata, biggest);
    })
    .await;
}

async fn lists_filter_by_every_given_tag(backend: Backend) {
    with_app(backend, async |app| {
        for (id, tags) in [
            ("a", json!(["work", "urgent"])),
            ("b", json!(["work"])),
            ("c", json!(["urgent"])),
            ("d", json!([])),
            ("e", json!(["work", "urgent", "later"])),
        ] {
            create(app, "alice", &json!({"chat_id": id, "tags": tags}).to_string()).await;
        }
        let ids = async |path: &str| walk(app, "alice", path).await;
        assert_eq!(ids("/chats?tag=work").await, ["e", "b", "a"]);
        assert_eq!(ids("/chats?tag=urgent&tag=work").await, ["e", "a"]);
        assert_eq!(ids("/chats?tag=work&tag=work").await, ["e", "b", "a"]);
        assert_eq!(ids("/chats?tag=urgent&order=asc").await, ["a", "c", "e"]);
        assert!(ids("/chats?tag=Work").await.is_empty(), "tags match exactly");
        assert!(ids("/chats?tag=nothing").await.is_empty());
        assert_eq!(ids("/chats?limit=100").await.len(), 5, "no tag: every chat");

        // A soft delete keeps the tags; the chat leaves the active list only.
        assert_eq!(app.delete("/chats/a", "alice").await.status, 204);
        assert_eq!(tag_rows(app, "alice", "a").await, ["urgent", "work"]);
        assert_eq!(ids("/chats?tag=urgent&tag=work").await, ["e"]);
        // (A soft delete counts as an update: `a` is now the most recently updated.)
        assert_eq!(ids("/chats?tag=urgent&tag=work&include_inactive=true").await, ["a", "e"]);

        // A hard delete drops them with the chat.
        assert_eq!(app.delete("/chats/e?hard=true", "alice").await.status, 204);
        assert!(tag_rows(app, "alice", "e").await.is_empty());
        assert_eq!(ids("/chats?tag=work&include_inactive=true").await, ["a", "b"]);
        let again = create(app, "alice", r#"{"chat_id": "e"}"#).await.json();
        assert_eq!(again["tags"], json!([]), "a new chat of the same id starts untagged");
    })
    .await;
}

/// 90 chats with one `updated_at`, a third or a half of them tagged, paged 4 at a time both
/// ways: every tagged chat exactly once, in order.
async fn tag_filtered_paging_never_skips_or_repeats(backend: Backend) {
    with_app(backend, async |app| {
        for n in 0..90 {
            let mut tags = Vec::new();
            if n % 2 == 0 {
                tags.push("even");
            }
            if n % 3 == 0 {
                tags.push("third");
            }
            let body = json!({"chat_id": format!("chat-{n:02}"), "tags": tags});
            create(app, "alice", &body.to_string()).await;
        }
        let tie = chrono::Utc::now() - chrono::Duration::hours(1);
        entity::chat::Entity::update_many()
            .col_expr(entity::chat::Column::UpdatedAt, sea_orm::sea_query::Expr::value(tie))
            .exec(app.db.connection())
            .await
            .unwrap();
        let expected = |keep: fn(u32) -> bool| -> Vec<String> {
            (0..90).filter(|n| keep(*n)).map(|n| format!("chat-{n:02}")).collect()
        };
        for (query, keep) in [
            ("tag=even", (|n| n % 2 == 0) as fn(u32) -> bool),
            ("tag=third&tag=even", |n| n % 6 == 0),
        ] {
            let ascending = walk(app, "alice", &format!("/chats?limit=4&order=asc&{query}")).await;
            assert_eq!(ascending, expected(keep), "{query}");
            let mut descending = walk(app, "alice", &format!("/chats?limit=4&{query}")).await;
            descending.reverse();
            assert_eq!(descending, expected(keep), "{query}");
        }

        // A cursor must be an element of the filtered list.
        app.get("/chats?tag=even&after=chat-01", "alice")
            .await
            .assert_error(400, "invalid_request");
        let page = app.get("/chats?tag=even&after=chat-02&order=asc&limit=1", "alice").await;
        assert_eq!(page.json()["data"][0]["chat_id"], "chat-04");
    })
    .await;
}

async fn another_users_tags_are_out_of_reach(backend: Backend) {
    with_app(backend, async |app| {
        create(app, "alice", r#"{"chat_id": "shared", "tags": ["work"], "metadata": {"o":"a"}}"#)
            .await;
        create(app, "bob", r#"{"chat_id": "bobs", "tags": ["work"]}"#).await;
        create(app, "bob", r#"{"chat_id": "shared", "tags": ["bob"]}"#).await;

        let alices: BTreeSet<String> =
            walk(app, "alice", "/chats?tag=work&include_inactive=true").await.into_iter().collect();
        assert_eq!(alices, BTreeSet::from(["shared".to_owned()]));
        assert!(walk(app, "alice", "/chats?tag=bob").await.is_empty());
        app.get("/chats?tag=work&after=bobs", "alice").await.assert_error(400, "invalid_request");

        let before = all_tag_rows(app).await;
        let alice_row = app.chat_row("alice", "shared").await.unwrap();
        // Bob's `shared` is his own chat: his PUT changes it, never Alice's.
        let bobs = put(app, "bob", "shared", r#"{"tags": ["mine"], "metadata": {"o":"b"}}"#).await;
        assert_eq!(bobs.status, 200, "{}", bobs.text);
        put(app, "carol", "shared", r#"{"tags": ["x"]}"#).await.assert_error(404, "not_found");
        assert_eq!(app.chat_row("alice", "shared").await.unwrap(), alice_row);
        assert_eq!(tag_rows(app, "alice", "shared").await, ["work"]);
        let after: Vec<_> =
            all_tag_rows(app).await.into_iter().filter(|r| r.user_id != "bob").collect();
        let before: Vec<_> = before.into_iter().filter(|r| r.user_id != "bob").collect();
        assert_eq!(after, before, "only Bob's own tags changed");
        assert!(all_tag_rows(app).await.iter().all(|row| row.user_id != "carol"));
    })
    .await;
}

async fn bad_metadata_and_tags_are_400_and_change_nothing(backend: Backend) {
    with_app(backend, async |app| {
        create(app, "alice", r#"{"chat_id": "c1", "tags": ["keep"], "metadata": {"k": 1}}"#).await;
        let too_big = format!(r#"{{"f":"{}"}}"#, "x".repeat(16 * 1024));
        let too_many = json!((0..33).map(|n| n.to_string()).collect::<Vec<_>>()).to_string();
        let too_long = json!(["é".repeat(65)]).to_string();
        let bad_fields = [
            r#""metadata": [1]"#.to_owned(),
            r#""metadata": "text""#.to_owned(),
            r#""metadata": null"#.to_owned(),
            format!(r#""metadata": {too_big}"#),
            format!(r#""tags": {too_many}"#),
            format!(r#""tags": {too_long}"#),
            r#""tags": [""]"#.to_owned(),
            r#""tags": ["ok", 7]"#.to_owned(),
            r#""tags": "work""#.to_owned(),
            r#""tags": null"#.to_owned(),
            r#""tags": ["nul\u0000"]"#.to_owned(),
        ];
        let rows_before = app.all_chat_rows().await;
        let tags_before = all_tag_rows(app).await;
        for field in &bad_fields {
            let body = format!(r#"{{"chat_id": "new", "title": "t", {field}}}"#);
            app.post("/chats", "alice", &body).await.assert_error(400, "invalid_request");
            let body = format!(r#"{{"title": "changed", {field}}}"#);
            put(app, "alice", "c1", &body).await.assert_error(400, "invalid_request");
        }
        for query in [
            "tag=",
            "tag=ok&tag=",
            &format!("tag={}", "x".repeat(65)),
            &(0..33).map(|n| format!("tag={n}")).collect::<Vec<_>>().join("&"),
        ] {
            app.get(&format!("/chats?{query}"), "alice").await.assert_error(400, "invalid_request");
        }
        assert_eq!(app.all_chat_rows().await, rows_before, "no chat changed");
        assert_eq!(all_tag_rows(app).await, tags_before, "no tag changed");
    })
    .await;
}

async fn openapi_documents_metadata_tags_and_the_tag_filter(backend: Backend) {
    with_app(backend, async |app| {
        let doc = Answer::read(app.client.get(app.url("/openapi.json")).send().await.unwrap())
            .await
            .json();
        let schemas = &doc["components"]["schemas"];
        for schema in ["ChatSummary", "CreateChat", "UpdateChat"] {
            let properties = &schemas[schema]["properties"];
            assert_eq!(properties["metadata"]["type"], "object", "{schema}");
            assert_eq!(properties["tags"]["items"]["type"], "string", "{schema}");
        }
        for schema in ["CreateChat", "UpdateChat"] {
            let tags = &schemas[schema]["properties"]["tags"];
            assert_eq!(tags["maxItems"], 32, "{schema}: {tags}");
            assert!(tags["description"].as_str().unwrap().contains("64 characters"), "{tags}");
        }
        let list = doc["paths"]["/chats"]["get"]["parameters"].as_array().unwrap();
        let tag = list.iter().find(|parameter| parameter["name"] == "tag").expect("tag");
        assert_eq!((&tag["in"], &tag["explode"]), (&json!("query"), &json!(true)), "{tag}");
        assert_eq!(tag["schema"]["items"]["type"], "string", "{tag}");
    })
    .await;
}

dual_backend_tests!(
    openapi_documents_metadata_tags_and_the_tag_filter,
    metadata_and_tags_round_trip,
    lists_filter_by_every_given_tag,
    tag_filtered_paging_never_skips_or_repeats,
    another_users_tags_are_out_of_reach,
    bad_metadata_and_tags_are_400_and_change_nothing,
);
