//! The ChatKit store routes and the Rust `Store` over the repositories, on both databases.
//!
//! Every trap of `reference/chatkit.md` §6 that concerns the store has a test here, checked
//! through HTTP and in the database: idempotent `add_thread_item`, `save_thread` with `items`,
//! ties on `created_at` while paging, out-of-order timestamps, unknown cursors, verbatim
//! timestamps, tenancy, and malformed bodies.

use std::collections::HashSet;

use chatstore_tests::{Answer, Backend, TestApp, dual_backend_tests, with_app};
use entity::{chatkit_attachment, chatkit_attachment_content, chatkit_item, chatkit_thread};
use repositories::RepoError;
use repositories::chatkit::{SortOrder, Store, StoreItemType, default_generate_id};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;

const NAIVE: &str = "2025-10-06T12:00:00.123456";

fn thread_json(id: &str, created_at: &str) -> String {
    format!(
        r#"{{"title": null, "id": "{id}", "created_at": "{created_at}", "status": {{"type": "active"}}, "allowed_image_domains": null, "metadata": {{}}}}"#
    )
}

fn item_json(id: &str, thread: &str, created_at: &str) -> String {
    format!(
        r#"{{"id": "{id}", "thread_id": "{thread}", "created_at": "{created_at}", "type": "end_of_turn"}}"#
    )
}

fn attachment_json(id: &str, thread: Option<&str>) -> String {
    let thread = thread.map_or("null".to_owned(), |thread| format!("\"{thread}\""));
    format!(
        r#"{{"id": "{id}", "name": "notes.txt", "mime_type": "text/plain", "upload_descriptor": null, "thread_id": {thread}, "metadata": {{"s3_key": "x"}}, "type": "file"}}"#
    )
}

async fn put(app: &TestApp, path: &str, user: &str, body: &str) -> Answer {
    app.send(Method::PUT, path, user, Some(body)).await
}

async fn create_thread(app: &TestApp, user: &str, id: &str, created_at: &str) {
    let answer = put(app, &format!("/threads/{id}"), user, &thread_json(id, created_at)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

async fn add_item(app: &TestApp, user: &str, thread: &str, body: &str) -> Answer {
    app.post(&format!("/threads/{thread}/items"), user, body).await
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("a page has data")
        .iter()
        .map(|element| element["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// Follows `after` from the first page to the last, checking the page invariants on the way,
/// and returns every id in the order received.
async fn walk(app: &TestApp, user: &str, path: &str, limit: usize, order: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let cursor = after.as_ref().map(|after| format!("&after={after}")).unwrap_or_default();
        let answer = app.get(&format!("{path}?limit={limit}&order={order}{cursor}"), user).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let page = answer.json();
        let page_ids = ids(&page);
        assert!(page_ids.len() <= limit, "a page holds at most `limit`: {page}");
        all.extend(page_ids.iter().cloned());
        if page["has_more"] == Value::Bool(true) {
            assert_eq!(page_ids.len(), limit, "only the last page is short: {page}");
            assert_eq!(page["after"].as_str(), page_ids.last().map(String::as_str), "{page}");
            after = page_ids.last().cloned();
        } else {
            assert_eq!(page["has_more"], Value::Bool(false), "{page}");
            assert_eq!(page["after"], Value::Null, "`after` is null on the last page: {page}");
            return all;
        }
    }
    panic!("paging did not end");
}

async fn item_rows(app: &TestApp, user: &str, thread: &str) -> Vec<chatkit_item::Model> {
    chatkit_item::Entity::find()
        .filter(chatkit_item::Column::UserId.eq(user))
        .filter(chatkit_item::Column::ThreadId.eq(thread))
        .order_by_asc(chatkit_item::Column::Seq)
        .all(app.db.connection())
        .await
        .unwrap()
}

/// Every row of every ChatKit table, in a stable order.
#[derive(Debug, PartialEq)]
struct Snapshot {
    threads: Vec<chatkit_thread::Model>,
    items: Vec<chatkit_item::Model>,
    attachments: Vec<chatkit_attachment::Model>,
    contents: Vec<chatkit_attachment_content::Model>,
}

async fn snapshot(app: &TestApp) -> Snapshot {
    let db = app.db.connection();
    Snapshot {
        threads: chatkit_thread::Entity::find()
            .order_by_asc(chatkit_thread::Column::UserId)
            .order_by_asc(chatkit_thread::Column::ThreadId)
            .all(db)
            .await
            .unwrap(),
        items: chatkit_item::Entity::find()
            .order_by_asc(chatkit_item::Column::Seq)
            .all(db)
            .await
            .unwrap(),
        attachments: chatkit_attachment::Entity::find()
            .order_by_asc(chatkit_attachment::Column::UserId)
            .order_by_asc(chatkit_attachment::Column::AttachmentId)
            .all(db)
            .await
            .unwrap(),
        contents: chatkit_attachment_content::Entity::find()
            .order_by_asc(chatkit_attachment_content::Column::UserId)
            .order_by_asc(chatkit_attachment_content::Column::AttachmentId)
            .all(db)
            .await
            .unwrap(),
    }
}

async fn store_bytes(app: &TestApp, user: &str, attachment: &str) {
    let now = chrono::Utc::now();
    chatkit_attachment_content::Entity::insert(chatkit_attachment_content::ActiveModel {
        user_id: sea_orm::Set(user.to_owned()),
        attachment_id: sea_orm::Set(attachment.to_owned()),
        mime_type: sea_orm::Set("text/plain".to_owned()),
        byte_size: sea_orm::Set(5),
        content: sea_orm::Set(b"hello".to_vec()),
        created_at: sea_orm::Set(now),
    })
    .exec_without_returning(app.db.connection())
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Traps of reference §6
// ---------------------------------------------------------------------------------------------

/// §6.1: `add_thread_item` twice with one id: the second replaces the first, in its place.
async fn add_thread_item_is_idempotent_by_id(backend: Backend) {
    with_app(backend, async |app| {
        create_thread(app, "alice", "thr_1", NAIVE).await;
        for id in ["msg_a", "msg_b", "msg_c"] {
            let answer = add_item(app, "alice", "thr_1", &item_json(id, "thr_1", NAIVE)).await;
            assert_eq!(answer.status, 201, "{}", answer.text);
            assert_eq!(answer.text, item_json(id, "thr_1", NAIVE));
        }
        let seq_before = item_rows(app, "alice", "thr_1").await[1].seq;

        let replacement = format!(
            r#"{{"id": "msg_b", "thread_id": "thr_1", "created_at": "{NAIVE}", "type": "workflow", "workflow": {{"type": "custom", "tasks": [], "summary": {{"duration": 3}}, "expanded": false}}}}"#
        );
        let again = add_item(app, "alice", "thr_1", &replacement).await;
        assert_eq!(again.status, 200, "a repeat replaces: {}", again.text);
        assert_eq!(again.text, replacement);

        let rows = item_rows(app, "alice", "thr_1").await;
        assert_eq!(rows.len(), 3, "no duplicate row");
        assert_eq!(rows[1].item_id, "msg_b");
        assert_eq!(rows[1].seq, seq_before, "the replacement keeps its place");
        assert_eq!(rows[1].data, replacement);
        assert_eq!(rows[1].item_type, "workflow");

        let page = app.get("/threads/thr_1/items", "alice").await;
        assert_eq!(
            page.text,
            format!(
                r#"{{"data":[{},{},{}],"has_more":false,"after":null}}"#,
                item_json("msg_a", "thr_1", NAIVE),
                replacement,
                item_json("msg_c", "thr_1", NAIVE)
            )
        );

        // `save_item` is a real upsert: it creates a missing item too.
        let new = item_json("msg_d", "thr_1", NAIVE);
        assert_eq!(put(app, "/threads/thr_1/items/msg_d", "alice", &new).await.status, 200);
        let updated = item_json("msg_a", "thr_1", "2025-10-06T12:00:00.123456");
        assert_eq!(put(app, "/threads/thr_1/items/msg_a", "alice", &updated).await.status, 200);
        let rows = item_rows(app, "alice", "thr_1").await;
        let ids: Vec<_> = rows.iter().map(|row| row.item_id.as_str()).collect();
        assert_eq!(ids, ["msg_a", "msg_b", "msg_c", "msg_d"]);
        assert_eq!(app.get("/threads/thr_1/items/msg_d", "alice").await.text, new);

        // Items need their thread.
        let orphan = item_json("m", "thr_missing", NAIVE);
        add_item(app, "alice", "thr_missing", &orphan).await.assert_error(404, "not_found");
        put(app, "/threads/thr_missing/items/m", "alice", &orphan)
            .await
            .assert_error(404, "not_found");
        assert!(item_rows(app, "alice", "thr_missing").await.is_empty());
    })
    .await;
}

/// §6.3: `save_thread` upserts and drops an `items` key, storing every other byte as sent.
async fn save_thread_ignores_items(backend: Backend) {
    with_app(backend, async |app| {
        let with_items = format!(
            r#"{{"title": "Trip", "id": "thr_1", "created_at": "{NAIVE}", "status": {{"type": "active"}}, "allowed_image_domains": null, "metadata": {{}},
 "items": {{"data": [{}], "has_more": false, "after": null}}}}"#,
            item_json("msg_1", "thr_1", NAIVE)
        );
        let stored = format!(
            r#"{{"title": "Trip", "id": "thr_1", "created_at": "{NAIVE}", "status": {{"type": "active"}}, "allowed_image_domains": null, "metadata": {{}}}}"#
        );
        let answer = put(app, "/threads/thr_1", "alice", &with_items).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.text, stored);
        assert_eq!(app.get("/threads/thr_1", "alice").await.text, stored);

        let snap = snapshot(app).await;
        assert_eq!(snap.threads.len(), 1);
        assert_eq!(snap.threads[0].data, stored);
        assert_eq!(snap.threads[0].title.as_deref(), Some("Trip"));
        assert!(snap.items.is_empty(), "items inside a thread are not stored as items");

        // Saved again (as on every change in a stream): an upsert.
        let renamed = stored.replace("\"Trip\"", "\"Paris\"");
        assert_eq!(put(app, "/threads/thr_1", "alice", &renamed).await.status, 200);
        let snap = snapshot(app).await;
        assert_eq!(snap.threads.len(), 1);
        assert_eq!(snap.threads[0].data, renamed);
        assert_eq!(snap.threads[0].title.as_deref(), Some("Paris"));
        assert_eq!(app.get("/threads/thr_1", "alice").await.text, renamed);
    })
    .await;
}

/// §6.5: 25 items with one `created_at`, paged 4 at a time in both orders: none skipped or
/// repeated, in insertion order.
async fn tied_timestamps_page_without_skips_or_repeats(backend: Backend) {
    with_app(backend, async |app| {
        create_thread(app, "alice", "thr_1", NAIVE).await;
        // Ids in an order unrelated to insertion, so an id tie-break would show.
        let inserted: Vec<String> = (0..25).map(|n| format!("msg_{:02}", (n * 7) % 25)).collect();
        for id in &inserted {
            let answer = add_item(app, "alice", "thr_1", &item_json(id, "thr_1", NAIVE)).await;
            assert_eq!(answer.status, 201, "{}", answer.text);
        }
        let asc = walk(app, "alice", "/threads/thr_1/items", 4, "asc").await;
        assert_eq!(asc, inserted);
        let desc = walk(app, "alice", "/threads/thr_1/items", 4, "desc").await;
        let mut reversed = inserted.clone();
        reversed.reverse();
        assert_eq!(desc, reversed);
        assert_eq!(asc.iter().collect::<HashSet<_>>().len(), 25);
    })
    .await;
}

/// §6.6: items come back by the instant of `created_at`, whatever the insertion order and
/// the notation (naive, `Z`, offsets, fraction digits), ties in insertion order.
async fn out_of_order_timestamps_are_ordered_by_time(backend: Backend) {
    with_app(backend, async |app| {
        create_thread(app, "alice", "thr_1", NAIVE).await;
        let items = [
            ("m_noon_offset", "2025-10-06T14:00:00+02:00"), // 12:00:00Z
            ("m_late", "2025-10-06T12:00:01"),
            ("m_early", "2025-10-06T11:59:59.999999"),
            ("m_half", "2025-10-06T12:00:00.5Z"),
            ("m_noon_naive", "2025-10-06T12:00:00"), // ties with m_noon_offset
            ("m_tenth", "2025-10-06T12:00:00.05"),
            ("m_west", "2025-10-06T06:00:00.25-06:00"), // 12:00:00.25Z
            ("m_day_before", "2025-10-05"),
            ("m_compact", "20251006T120000.75Z"),
        ];
        for (id, at) in items {
            let answer = add_item(app, "alice", "thr_1", &item_json(id, "thr_1", at)).await;
            assert_eq!(answer.status, 201, "{}", answer.text);
        }
        let expected = [
            "m_day_before",
            "m_early",
            "m_noon_offset",
            "m_noon_naive",
            "m_tenth",
            "m_west",
            "m_half",
            "m_compact",
            "m_late",
        ];
        assert_eq!(walk(app, "alice", "/threads/thr_1/items", 2, "asc").await, expected);
        let mut reversed = expected.to_vec();
        reversed.reverse();
        assert_eq!(walk(app, "alice", "/threads/thr_1/items", 3, "desc").await, reversed);
        // The newest by time is what the tool-output handler asks for (`limit=1, desc`).
        let newest = app.get("/threads/thr_1/items?limit=1&order=desc", "alice").await.json();
        assert_eq!(ids(&newest), ["m_late"]);
        assert_eq!(newest["after"], "m_late");

        // The normalised column holds UTC; the JSON keeps the text.
        let rows = item_rows(app, "alice", "thr_1").await;
        let offset = rows.iter().find(|row| row.item_id == "m_noon_offset").unwrap();
        assert_eq!(offset.created_at.to_rfc3339(), "2025-10-06T12:00:00+00:00");
        assert!(offset.data.contains("\"2025-10-06T14:00:00+02:00\""));

        // An item replaced with a new `created_at` moves to its new time.
        let moved = item_json("m_early", "thr_1", "2025-10-07T00:00:00");
        assert_eq!(put(app, "/threads/thr_1/items/m_early", "alice", &moved).await.status, 200);
        let last = app.get("/threads/thr_1/items?limit=1&order=desc", "alice").await.json();
        assert_eq!(ids(&last), ["m_early"]);
    })
    .await;
}

/// §6.7: an `after` that names no visible element is a 400, for items and for threads.
async fn unknown_after_cursor_is_a_400(backend: Backend) {
    with_app(backend, async |app| {
        create_thread(app, "alice", "thr_1", NAIVE).await;
        create_thread(app, "alice", "thr_2", NAIVE).await;
        create_thread(app, "bob", "thr_bob", NAIVE).await;
        add_item(app, "alice", "thr_1", &item_json("msg_1", "thr_1", NAIVE)).await;
        add_item(app, "alice", "thr_2", &item_json("msg_2", "thr_2", NAIVE)).await;
        add_item(app, "bob", "thr_bob", &item_json("msg_bob", "thr_bob", NAIVE)).await;

        for after in ["nope", "msg_2", "msg_bob", "thr_1"] {
            app.get(&format!("/threads/thr_1/items?after={after}"), "alice")
                .await
                .assert_error(400, "invalid_request");
        }
        for after in ["nope", "thr_bob", "msg_1"] {
            app.get(&format!("/threads?after={after}"), "alice")
                .await
                .assert_error(400, "invalid_request");
        }
        // A known cursor works, and an empty one means none.
        let page = app.get("/threads/thr_1/items?after=msg_1", "alice").await;
        assert_eq!(page.text, r#"{"data":[],"has_more":false,"after":null}"#);
        let all = app.get("/threads?after=&order=asc", "alice").await.json();
        assert_eq!(ids(&all), ["thr_1", "thr_2"]);
    })
    .await;
}

/// §6.11: naive and offset timestamps come back exactly as sent, in threads and items.
async fn timestamps_are_returned_verbatim(backend: Backend) {
    with_app(backend, async |app| {
        let stamps = [
            "2025-10-06T12:00:00.123456",
            "2025-10-06T12:00:00",
            "2025-10-06T12:00:00Z",
            "2025-10-06T12:00:00.120Z",
            "2025-10-06T14:00:00+02:00",
            "2025-10-06T07:00:00.000001-05:00",
            "2025-10-06 12:00:00.5",
        ];
        for (n, at) in stamps.iter().enumerate() {
            let thread = format!("thr_{n}");
            let body = thread_json(&thread, at);
            let answer = put(app, &format!("/threads/{thread}"), "alice", &body).await;
            assert_eq!(answer.text, body);
            assert_eq!(app.get(&format!("/threads/{thread}"), "alice").await.text, body);
            let item = item_json("msg_1", &thread, at);
            assert_eq!(add_item(app, "alice", &thread, &item).await.text, item);
            let read = app.get(&format!("/threads/{thread}/items/msg_1"), "alice").await;
            assert_eq!(read.text, item);
            assert_eq!(
                app.get(&format!("/threads/{thread}/items"), "alice").await.json()["data"][0]
                    ["created_at"],
                *at
            );
        }
        let snap = snapshot(app).await;
        for (n, at) in stamps.iter().enumerate() {
            let row = snap.threads.iter().find(|row| row.thread_id == format!("thr_{n}")).unwrap();
            assert!(row.data.contains(&format!("\"created_at\": \"{at}\"")), "{}", row.data);
        }
        // Naive values are taken as UTC in the ordering column.
        let naive = snap.threads.iter().find(|row| row.thread_id == "thr_0").unwrap();
        assert_eq!(naive.created_at.to_rfc3339(), "2025-10-06T12:00:00.123456+00:00");
        let western = snap.threads.iter().find(|row| row.thread_id == "thr_5").unwrap();
        assert_eq!(western.created_at.to_rfc3339(), "2025-10-06T12:00:00.000001+00:00");

        // What Python cannot read is refused.
        for bad in ["yesterday", "2025-10-06T25:00:00", "2025-10-06T12:00:00z", ""] {
            put(app, "/threads/thr_bad", "alice", &thread_json("thr_bad", bad))
                .await
                .assert_error(400, "invalid_request");
        }
        put(app, "/threads/thr_bad", "alice", r#"{"id": "thr_bad", "created_at": 1760000000}"#)
            .await
            .assert_error(400, "invalid_request");
        assert!(snapshot(app).await.threads.iter().all(|row| row.thread_id != "thr_bad"));
    })
    .await;
}

/// §6.9: every route, called by another user, is a 404 (reads) or changes nothing (writes
/// and deletes), checked in the database.
async fn another_users_resources_are_invisible_and_untouched(backend: Backend) {
    with_app(backend, async |app| {
        create_thread(app, "alice", "thr_a", NAIVE).await;
        add_item(app, "alice", "thr_a", &item_json("msg_a", "thr_a", NAIVE)).await;
        let attachment = attachment_json("atc_a", Some("thr_a"));
        assert_eq!(put(app, "/attachments/atc_a", "alice", &attachment).await.status, 200);
        store_bytes(app, "alice", "atc_a").await;
        let before = snapshot(app).await;

        for path in [
            "/threads/thr_a",
            "/threads/thr_a/items",
            "/threads/thr_a/items?after=msg_a",
            "/threads/thr_a/items/msg_a",
            "/attachments/atc_a",
        ] {
            app.get(path, "bob").await.assert_error(404, "not_found");
        }
        let listed = app.get("/threads", "bob").await;
        assert_eq!(listed.text, r#"{"data":[],"has_more":false,"after":null}"#);
        app.get("/threads?after=thr_a", "bob").await.assert_error(400, "invalid_request");

        // Item writes need the thread in bob's namespace.
        add_item(app, "bob", "thr_a", &item_json("msg_a", "thr_a", "2030-01-01"))
            .await
            .assert_error(404, "not_found");
        add_item(app, "bob", "thr_a", &item_json("msg_new", "thr_a", NAIVE))
            .await
            .assert_error(404, "not_found");
        put(app, "/threads/thr_a/items/msg_a", "bob", &item_json("msg_a", "thr_a", "2030-01-01"))
            .await
            .assert_error(404, "not_found");
        for path in ["/threads/thr_a/items/msg_a", "/threads/thr_a", "/attachments/atc_a"] {
            assert_eq!(app.delete(path, "bob").await.status, 204, "{path}");
        }
        assert_eq!(snapshot(app).await, before, "bob changed alice's data");

        // Thread and attachment writes go to bob's own namespace.
        let bobs_thread = thread_json("thr_a", "2030-01-01T00:00:00");
        assert_eq!(put(app, "/threads/thr_a", "bob", &bobs_thread).await.status, 200);
        let bobs_attachment = attachment_json("atc_a", None);
        assert_eq!(put(app, "/attachments/atc_a", "bob", &bobs_attachment).await.status, 200);
        let after = snapshot(app).await;
        let alices = |snap: &Snapshot| {
            (
                snap.threads.iter().filter(|r| r.user_id == "alice").cloned().collect::<Vec<_>>(),
                snap.items.iter().filter(|r| r.user_id == "alice").cloned().collect::<Vec<_>>(),
                snap.attachments
                    .iter()
                    .filter(|r| r.user_id == "alice")
                    .cloned()
                    .collect::<Vec<_>>(),
                snap.contents.clone(),
            )
        };
        assert_eq!(alices(&after), alices(&before));
        assert_eq!(app.get("/threads/thr_a", "alice").await.text, thread_json("thr_a", NAIVE));
        assert_eq!(app.get("/threads/thr_a", "bob").await.text, bobs_thread);
        assert_eq!(app.get("/attachments/atc_a", "alice").await.text, attachment);
        assert_eq!(app.get("/attachments/atc_a", "bob").await.text, bobs_attachment);
        let bobs_items = app.get("/threads/thr_a/items", "bob").await;
        assert_eq!(bobs_items.text, r#"{"data":[],"has_more":false,"after":null}"#);
    })
    .await;
}

/// The same thread id, used by two users: two threads that never meet.
async fn one_thread_id_for_two_users(backend: Backend) {
    with_app(backend, async |app| {
        for user in ["alice", "bob"] {
            let body = thread_json("thr_same", NAIVE).replace("null", &format!("\"{user}\""));
            assert_eq!(put(app, "/threads/thr_same", user, &body).await.status, 200);
            for n in 0..3 {
                let item = item_json(&format!("msg_{n}"), "thr_same", NAIVE)
                    .replace("end_of_turn", &format!("{user}_type"));
                assert_eq!(add_item(app, user, "thr_same", &item).await.status, 201);
            }
        }
        for user in ["alice", "bob"] {
            let thread = app.get("/threads/thr_same", user).await.json();
            assert_eq!(thread["title"], user);
            assert_eq!(thread["allowed_image_domains"], user, "the nulls were replaced too");
            let items = app.get("/threads/thr_same/items", user).await.json();
            assert_eq!(ids(&items), ["msg_0", "msg_1", "msg_2"]);
            assert!(
                items["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|i| i["type"] == format!("{user}_type"))
            );
            let threads = app.get("/threads", user).await.json();
            assert_eq!(ids(&threads), ["thr_same"]);
        }
        assert_eq!(item_rows(app, "alice", "thr_same").await.len(), 3);
        assert_eq!(item_rows(app, "bob", "thr_same").await.len(), 3);

        assert_eq!(app.delete("/threads/thr_same", "alice").await.status, 204);
        app.get("/threads/thr_same", "alice").await.assert_error(404, "not_found");
        assert!(item_rows(app, "alice", "thr_same").await.is_empty());
        assert_eq!(app.get("/threads/thr_same", "bob").await.json()["title"], "bob");
        assert_eq!(item_rows(app, "bob", "thr_same").await.len(), 3);
    })
    .await;
}

/// Bodies missing `id`/`type`/`created_at`, malformed, or whose `id` is not the path's: 400,
/// and nothing stored.
async fn malformed_bodies_are_rejected(backend: Backend) {
    with_app(backend, async |app| {
        create_thread(app, "alice", "thr_1", NAIVE).await;
        add_item(app, "alice", "thr_1", &item_json("msg_1", "thr_1", NAIVE)).await;
        put(app, "/attachments/atc_1", "alice", &attachment_json("atc_1", None)).await;
        let before = snapshot(app).await;

        let bad_threads = [
            r#"{"created_at": "2025-10-06T12:00:00"}"#,
            r#"{"id": "thr_1"}"#,
            r#"{"id": null, "created_at": "2025-10-06T12:00:00"}"#,
            r#"{"id": "thr_1", "created_at": null}"#,
            r#"{"id": "thr_1", "created_at": "soon"}"#,
            r#"{"id": "thr_1", "created_at": "2025-10-06T12:00:00", "title": 7}"#,
            r#"{"id": "thr_other", "created_at": "2025-10-06T12:00:00"}"#,
            r#"{"id": 1, "created_at": "2025-10-06T12:00:00"}"#,
            r#"["thr_1"]"#,
            r#""thr_1""#,
        ];
        for body in bad_threads {
            let answer = put(app, "/threads/thr_1", "alice", body).await;
            answer.assert_error(400, "invalid_request");
        }
        let bad_items = [
            r#"{"thread_id": "thr_1", "created_at": "2025-10-06T12:00:00", "type": "end_of_turn"}"#,
            r#"{"id": "msg_1", "thread_id": "thr_1", "type": "end_of_turn"}"#,
            r#"{"id": "msg_1", "thread_id": "thr_1", "created_at": "2025-10-06T12:00:00"}"#,
            r#"{"id": "msg_1", "created_at": "2025-10-06T12:00:00", "type": ""}"#,
            r#"{"id": "msg_1", "created_at": "2025-10-06T12:00:00", "type": 3}"#,
            r#"{"id": "msg_1", "created_at": "2025/10/06", "type": "end_of_turn"}"#,
            r#"{"id": "msg_1", "thread_id": 5, "created_at": "2025-10-06T12:00:00", "type": "end_of_turn"}"#,
            r#"[]"#,
        ];
        for body in bad_items {
            add_item(app, "alice", "thr_1", body).await.assert_error(400, "invalid_request");
            put(app, "/threads/thr_1/items/msg_1", "alice", body)
                .await
                .assert_error(400, "invalid_request");
        }
        // A valid item under another id than the path's.
        put(app, "/threads/thr_1/items/msg_1", "alice", &item_json("msg_2", "thr_1", NAIVE))
            .await
            .assert_error(400, "invalid_request");
        let bad_attachments = [
            r#"{"name": "a", "mime_type": "text/plain", "type": "file"}"#,
            r#"{"id": "atc_1", "mime_type": "text/plain", "type": "file"}"#,
            r#"{"id": "atc_1", "name": "a", "type": "file"}"#,
            r#"{"id": "atc_1", "name": "a", "mime_type": "text/plain"}"#,
            r#"{"id": "atc_1", "name": "a", "mime_type": "text/plain", "type": "file", "thread_id": 5}"#,
            r#"{"id": "atc_2", "name": "a", "mime_type": "text/plain", "type": "file"}"#,
        ];
        for body in bad_attachments {
            put(app, "/attachments/atc_1", "alice", body).await.assert_error(400, "invalid_request");
        }
        // Not JSON at all: 400; not declared JSON: 415.
        put(app, "/threads/thr_1", "alice", "{").await.assert_error(400, "invalid_request");
        let untyped = app
            .request(Method::PUT, "/threads/thr_1", "alice")
            .body(thread_json("thr_1", NAIVE))
            .send()
            .await
            .unwrap();
        Answer::read(untyped).await.assert_error(415, "unsupported_media_type");
        assert_eq!(snapshot(app).await, before, "a rejected body changed nothing");

        // Bad ids in paths and queries.
        let long = "x".repeat(256);
        app.get(&format!("/threads/{long}"), "alice").await.assert_error(400, "invalid_request");
        app.get("/threads/a%00b", "alice").await.assert_error(400, "invalid_request");
        app.get("/threads/thr_1/items?after=a%00b", "alice")
            .await
            .assert_error(400, "invalid_request");
    })
    .await;
}

/// An item whose own `thread_id` names another thread than the path's is stored as given and
/// filed under the path's thread, as the SDK's stores do (its `test_store.py` writes items
/// with `"thread_id": "test_thread"` to thread `shared_thread`).
async fn an_item_naming_another_thread_is_stored_as_given(backend: Backend) {
    with_app(backend, async |app| {
        create_thread(app, "alice", "thr_1", NAIVE).await;
        create_thread(app, "alice", "thr_2", NAIVE).await;
        let added = item_json("msg_1", "thr_2", NAIVE);
        let answer = add_item(app, "alice", "thr_1", &added).await;
        assert_eq!((answer.status, answer.text.as_str()), (201, added.as_str()));
        let saved = item_json("msg_2", "thr_elsewhere", "2025-10-06T12:00:01");
        let answer = put(app, "/threads/thr_1/items/msg_2", "alice", &saved).await;
        assert_eq!((answer.status, answer.text.as_str()), (200, saved.as_str()));

        assert_eq!(app.get("/threads/thr_1/items/msg_1", "alice").await.text, added);
        assert_eq!(app.get("/threads/thr_1/items/msg_2", "alice").await.text, saved);
        let page = app.get("/threads/thr_1/items", "alice").await;
        assert_eq!(
            page.text,
            format!(r#"{{"data":[{added},{saved}],"has_more":false,"after":null}}"#)
        );
        let rows = item_rows(app, "alice", "thr_1").await;
        let stored: Vec<(&str, &str)> =
            rows.iter().map(|row| (row.item_id.as_str(), row.data.as_str())).collect();
        assert_eq!(stored, [("msg_1", added.as_str()), ("msg_2", saved.as_str())]);

        // The thread the item names holds nothing.
        assert!(item_rows(app, "alice", "thr_2").await.is_empty());
        app.get("/threads/thr_2/items/msg_1", "alice").await.assert_error(404, "not_found");
        let other = app.get("/threads/thr_2/items", "alice").await;
        assert_eq!(other.text, r#"{"data":[],"has_more":false,"after":null}"#);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Fidelity, paging, attachments
// ---------------------------------------------------------------------------------------------

/// Every stored-form shape of reference §2.4, exactly as the SDK dumps them.
const STORED_ITEMS: [&str; 11] = [
    r#"{"id": "msg_4f3e2d1c", "thread_id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "type": "user_message", "content": [{"type": "input_text", "text": "Hi"}, {"type": "input_tag", "id": "tag1", "text": "@Bob", "data": {"uid": 1}, "group": null, "interactive": false}], "attachments": [{"id": "atc_0a1b2c3d", "name": "notes.txt", "mime_type": "text/plain", "upload_descriptor": null, "thread_id": "thr_1a2b3c4d", "metadata": {"s3_key": "x"}, "type": "file"}], "quoted_text": null, "inference_options": {"tool_choice": {"id": "web_search"}, "model": "gpt-4.1"}}"#,
    r#"{"id": "msg_68e1...", "thread_id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "type": "assistant_message", "content": [{"annotations": [{"type": "annotation", "source": {"title": "Ex", "description": null, "timestamp": null, "group": null, "type": "url", "url": "https://ex.com", "attribution": null}, "index": 5}], "text": "Hello", "type": "output_text"}]}"#,
    r#"{"id": "tc_12345678", "thread_id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "type": "client_tool_call", "status": "pending", "call_id": "call_abc", "name": "get_selection", "arguments": {"a": 1}, "output": null}"#,
    r#"{"id": "msg_aaaa1111", "thread_id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "type": "widget", "widget": {"type": "Card", "children": [{"type": "Text", "value": "Hi"}]}, "copy_text": "Hi"}"#,
    r#"{"id": "msg_bbbb2222", "thread_id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "type": "generated_image", "image": {"id": "ig_1", "url": "https://x/y.png"}}"#,
    r#"{"id": "msg_cccc3333", "thread_id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "type": "structured_input", "status": "pending", "inputs": [{"id": "subject", "question": "Which?", "answer": null, "type": "multiple_choice", "options": [{"value": "Math"}], "multiple": false}, {"id": "notes", "question": "Notes?", "answer": null, "type": "freeform", "description": "optional"}]}"#,
    r#"{"id": "wf_dddd4444", "thread_id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "type": "workflow", "workflow": {"type": "custom", "tasks": [{"status_indicator": "none", "type": "custom", "title": "Search", "icon": null, "content": "..."}, {"status_indicator": "none", "type": "thought", "title": null, "content": "thinking"}], "summary": {"duration": 3}, "expanded": false}}"#,
    r#"{"id": "tsk_eeee5555", "thread_id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "type": "task", "task": {"status_indicator": "none", "type": "web_search", "title": "Web", "title_query": null, "queries": ["q"], "sources": [{"title": "s", "description": null, "timestamp": null, "group": null, "type": "url", "url": "https://s", "attribution": null}]}}"#,
    r#"{"id": "msg_ffff6666", "thread_id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "type": "hidden_context_item", "content": {"any": "json"}}"#,
    r#"{"id": "shcx_77778888", "thread_id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "type": "sdk_hidden_context", "content": "The user cancelled the stream. Stop responding to the prior request."}"#,
    r#"{"id": "msg_99990000", "thread_id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "type": "end_of_turn"}"#,
];

const STORED_THREADS: [&str; 2] = [
    r#"{"title": null, "id": "thr_1a2b3c4d", "created_at": "2025-10-06T12:00:00.123456", "status": {"type": "active"}, "allowed_image_domains": null, "metadata": {}}"#,
    r#"{"title": "T", "id": "thr_9z8y7x6w", "created_at": "2025-10-06T12:00:00Z", "status": {"type": "locked", "reason": "x"}, "allowed_image_domains": ["a.com"], "metadata": {"k": "v"}}"#,
];

const STORED_ATTACHMENTS: [&str; 2] = [
    r#"{"id": "atc_0a1b2c3d", "name": "notes.txt", "mime_type": "text/plain", "upload_descriptor": null, "thread_id": "thr_1a2b3c4d", "metadata": {"s3_key": "x"}, "type": "file"}"#,
    r#"{"id": "atc_9f8e7d6c", "name": "cat.jpg", "mime_type": "image/jpeg", "upload_descriptor": {"url": "https://example.com/upload", "method": "PUT", "headers": {}}, "thread_id": null, "metadata": null, "type": "image", "preview_url": "https://example.com/"}"#,
];

/// Every stored-form shape round-trips byte for byte, one by one and in pages; unknown fields
/// and compact or odd spacing too.
async fn every_stored_shape_round_trips_exactly(backend: Backend) {
    with_app(backend, async |app| {
        for thread in STORED_THREADS {
            let id = serde_json::from_str::<Value>(thread).unwrap()["id"].as_str().unwrap().to_owned();
            let answer = put(app, &format!("/threads/{id}"), "alice", thread).await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            assert_eq!(answer.text, thread);
            assert_eq!(app.get(&format!("/threads/{id}"), "alice").await.text, thread);
        }
        // 12:00:00Z comes before the naive 12:00:00.123456 (taken as UTC).
        let threads = app.get("/threads?order=asc", "alice").await;
        assert_eq!(
            threads.text,
            format!(
                r#"{{"data":[{},{}],"has_more":false,"after":null}}"#,
                STORED_THREADS[1], STORED_THREADS[0]
            )
        );

        for item in STORED_ITEMS {
            let answer = add_item(app, "alice", "thr_1a2b3c4d", item).await;
            assert_eq!(answer.status, 201, "{}", answer.text);
            assert_eq!(answer.text, item);
        }
        for item in STORED_ITEMS {
            let id = serde_json::from_str::<Value>(item).unwrap()["id"].as_str().unwrap().to_owned();
            let read = app.get(&format!("/threads/thr_1a2b3c4d/items/{id}"), "alice").await;
            assert_eq!(read.text, item);
        }
        let page = app.get("/threads/thr_1a2b3c4d/items?limit=100", "alice").await;
        assert_eq!(
            page.text,
            format!(r#"{{"data":[{}],"has_more":false,"after":null}}"#, STORED_ITEMS.join(","))
        );
        let rows = item_rows(app, "alice", "thr_1a2b3c4d").await;
        let stored: Vec<&str> = rows.iter().map(|row| row.data.as_str()).collect();
        assert_eq!(stored, STORED_ITEMS);
        let types: Vec<&str> = rows.iter().map(|row| row.item_type.as_str()).collect();
        assert_eq!(types[8..], ["hidden_context_item", "sdk_hidden_context", "end_of_turn"]);

        for attachment in STORED_ATTACHMENTS {
            let id =
                serde_json::from_str::<Value>(attachment).unwrap()["id"].as_str().unwrap().to_owned();
            let answer = put(app, &format!("/attachments/{id}"), "alice", attachment).await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            assert_eq!(answer.text, attachment);
            assert_eq!(app.get(&format!("/attachments/{id}"), "alice").await.text, attachment);
        }

        // Unknown fields, compact and odd spacing, escapes, big numbers and a newer item type.
        let odd = [
            r#"{"id":"msg_odd1","thread_id":"thr_1a2b3c4d","created_at":"2025-10-06T12:00:01","type":"user_message","future_field":{"x":[1,2.50,-0.0,123456789012345678901234567890]},"content":[]}"#,
            "{ \"id\" : \"msg_odd2\" ,\n \"created_at\" : \"2025-10-06T12:00:02\" , \"type\" : \"brand_new_type\", \"text\": \"\\u00e9\\n\\\"q\\\" \u{1F389} \\u0000\" }",
        ];
        for item in odd {
            assert_eq!(add_item(app, "alice", "thr_1a2b3c4d", item).await.text, item);
        }
        // Strings the informational columns cannot hold as decoded (NUL, on PostgreSQL).
        let nul_thread = r#"{"id": "thr_nul", "created_at": "2025-10-06T12:00:00", "title": "a\u0000b"}"#;
        assert_eq!(put(app, "/threads/thr_nul", "alice", nul_thread).await.text, nul_thread);
        assert_eq!(app.get("/threads/thr_nul", "alice").await.text, nul_thread);
        let nul_attachment = r#"{"id": "atc_nul", "name": "a\u0000.txt", "mime_type": "text/plain\u0000", "type": "file"}"#;
        let answer = put(app, "/attachments/atc_nul", "alice", nul_attachment).await;
        assert_eq!(answer.text, nul_attachment);

        let tail = app.get("/threads/thr_1a2b3c4d/items?limit=2&order=desc", "alice").await;
        assert_eq!(
            tail.text,
            format!(r#"{{"data":[{},{}],"has_more":true,"after":"msg_odd1"}}"#, odd[1], odd[0])
        );
        let content_type = tail.header("content-type");
        assert_eq!(content_type, Some("application/json"));
    })
    .await;
}

/// Threads page by (`created_at`, id) in both orders, ties included; the default is newest
/// first.
async fn threads_page_in_both_orders(backend: Backend) {
    with_app(backend, async |app| {
        let threads = [
            ("thr_c", "2025-10-06T12:00:00"),
            ("thr_a", "2025-10-06T12:00:00Z"), // the same instant as thr_c
            ("thr_e", "2025-10-05T23:00:00-01:00"), // also 2025-10-06T00:00:00Z
            ("thr_b", "2025-10-06T12:00:00"),
            ("thr_d", "2025-10-07T00:00:00.000001"),
            ("thr_f", "2025-10-06"),
            ("thr_g", "2025-10-06T12:00:00.000001"),
        ];
        for (id, at) in threads {
            create_thread(app, "alice", id, at).await;
        }
        create_thread(app, "bob", "thr_z", NAIVE).await;
        let asc = ["thr_e", "thr_f", "thr_a", "thr_b", "thr_c", "thr_g", "thr_d"];
        for limit in [1, 2, 3, 7, 100] {
            assert_eq!(walk(app, "alice", "/threads", limit, "asc").await, asc, "limit {limit}");
            let mut desc = asc.to_vec();
            desc.reverse();
            assert_eq!(walk(app, "alice", "/threads", limit, "desc").await, desc, "limit {limit}");
        }
        let default = app.get("/threads?limit=2", "alice").await.json();
        assert_eq!(ids(&default), ["thr_d", "thr_g"]);
        assert_eq!(default["has_more"], true);
        assert_eq!(default["after"], "thr_g");
        let next = app.get("/threads?limit=2&after=thr_g", "alice").await.json();
        assert_eq!(ids(&next), ["thr_c", "thr_b"]);
        assert_eq!(ids(&app.get("/threads", "bob").await.json()), ["thr_z"]);
    })
    .await;
}

/// `limit`, `order` and their defaults, on both lists.
async fn page_parameters_are_checked(backend: Backend) {
    with_app(backend, async |app| {
        create_thread(app, "alice", "thr_1", NAIVE).await;
        for n in 0..25 {
            let at = format!("2025-10-06T12:00:{n:02}");
            add_item(app, "alice", "thr_1", &item_json(&format!("msg_{n:02}"), "thr_1", &at)).await;
            create_thread(app, "alice", &format!("thr_x{n:02}"), &at).await;
        }
        for query in
            ["limit=0", "limit=101", "limit=-1", "limit=abc", "limit=", "order=up", "order=ASC"]
        {
            for path in ["/threads", "/threads/thr_1/items"] {
                app.get(&format!("{path}?{query}"), "alice")
                    .await
                    .assert_error(400, "invalid_request");
            }
        }
        // Items default to oldest first, 20 per page.
        let items = app.get("/threads/thr_1/items", "alice").await.json();
        let expected: Vec<String> = (0..20).map(|n| format!("msg_{n:02}")).collect();
        assert_eq!(ids(&items), expected);
        assert_eq!(items["after"], "msg_19");
        // Threads default to newest first, 20 per page.
        let threads = app.get("/threads", "alice").await.json();
        let expected: Vec<String> = (5..25).rev().map(|n| format!("thr_x{n:02}")).collect();
        assert_eq!(ids(&threads), expected);
        assert_eq!(threads["has_more"], true);
        let all = app.get("/threads?limit=100", "alice").await.json();
        assert_eq!(ids(&all).len(), 26);
        assert_eq!(all["has_more"], false);
        assert_eq!(all["after"], Value::Null);
    })
    .await;
}

/// §6.4 and §6.10: attachments upsert (again with `thread_id`), delete with their bytes, and
/// outlive their thread.
async fn attachments_upsert_and_delete(backend: Backend) {
    with_app(backend, async |app| {
        let fresh = r#"{"id": "atc_1", "name": "cat.jpg", "mime_type": "image/jpeg", "upload_descriptor": {"url": "https://example.com/upload", "method": "PUT", "headers": {}}, "thread_id": null, "metadata": null, "type": "image", "preview_url": "https://example.com/"}"#;
        assert_eq!(put(app, "/attachments/atc_1", "alice", fresh).await.text, fresh);
        let first = snapshot(app).await.attachments;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].thread_id, None);
        assert_eq!((first[0].name.as_str(), first[0].mime_type.as_str()), ("cat.jpg", "image/jpeg"));

        create_thread(app, "alice", "thr_1", NAIVE).await;
        let sent = fresh.replace(r#""thread_id": null"#, r#""thread_id": "thr_1""#);
        let answer = put(app, "/attachments/atc_1", "alice", &sent).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text, sent);
        let second = snapshot(app).await.attachments;
        assert_eq!(second.len(), 1, "an upsert, not a second row");
        assert_eq!(second[0].thread_id.as_deref(), Some("thr_1"));
        assert_eq!(second[0].data, sent);
        assert_eq!(second[0].created_at, first[0].created_at);
        assert!(second[0].updated_at >= first[0].updated_at);
        assert_eq!(app.get("/attachments/atc_1", "alice").await.text, sent);

        // Deleting the thread leaves its attachments.
        store_bytes(app, "alice", "atc_1").await;
        add_item(app, "alice", "thr_1", &item_json("msg_1", "thr_1", NAIVE)).await;
        assert_eq!(app.delete("/threads/thr_1", "alice").await.status, 204);
        let snap = snapshot(app).await;
        assert!(snap.threads.is_empty() && snap.items.is_empty());
        assert_eq!(snap.attachments.len(), 1);
        assert_eq!(snap.contents.len(), 1);

        // Deleting the attachment removes its bytes too; again is fine.
        assert_eq!(app.delete("/attachments/atc_1", "alice").await.status, 204);
        let snap = snapshot(app).await;
        assert!(snap.attachments.is_empty() && snap.contents.is_empty());
        app.get("/attachments/atc_1", "alice").await.assert_error(404, "not_found");
        assert_eq!(app.delete("/attachments/atc_1", "alice").await.status, 204);
    })
    .await;
}

/// Deletes: the thread with its items; one item; missing things are a 204.
async fn deletes_remove_what_they_name(backend: Backend) {
    with_app(backend, async |app| {
        create_thread(app, "alice", "thr_1", NAIVE).await;
        create_thread(app, "alice", "thr_2", NAIVE).await;
        for n in 0..3 {
            add_item(app, "alice", "thr_1", &item_json(&format!("m{n}"), "thr_1", NAIVE)).await;
            add_item(app, "alice", "thr_2", &item_json(&format!("m{n}"), "thr_2", NAIVE)).await;
        }
        assert_eq!(app.delete("/threads/thr_1/items/m1", "alice").await.status, 204);
        app.get("/threads/thr_1/items/m1", "alice").await.assert_error(404, "not_found");
        let left: Vec<_> =
            item_rows(app, "alice", "thr_1").await.into_iter().map(|r| r.item_id).collect();
        assert_eq!(left, ["m0", "m2"]);
        assert_eq!(item_rows(app, "alice", "thr_2").await.len(), 3);

        assert_eq!(app.delete("/threads/thr_1", "alice").await.status, 204);
        app.get("/threads/thr_1", "alice").await.assert_error(404, "not_found");
        app.get("/threads/thr_1/items", "alice").await.assert_error(404, "not_found");
        assert!(item_rows(app, "alice", "thr_1").await.is_empty());
        assert_eq!(item_rows(app, "alice", "thr_2").await.len(), 3);

        for path in ["/threads/thr_1", "/threads/thr_1/items/m0", "/threads/nope/items/x"] {
            assert_eq!(app.delete(path, "alice").await.status, 204, "{path}");
        }
        // Re-creating the thread does not bring its items back.
        create_thread(app, "alice", "thr_1", NAIVE).await;
        let page = app.get("/threads/thr_1/items", "alice").await;
        assert_eq!(page.text, r#"{"data":[],"has_more":false,"after":null}"#);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The Rust `Store`
// ---------------------------------------------------------------------------------------------

/// The trait itself (as a `dyn Store`), with the SDK's semantics, on the test database.
async fn store_trait_follows_the_sdk_contract(backend: Backend) {
    with_app(backend, async |app| {
        let db_store = app.db.chatkit();
        let store: &dyn Store = &db_store;

        // Threads.
        let thread = store.generate_thread_id("alice");
        assert!(thread.starts_with("thr_"));
        let saved = store.save_thread(&thread_json(&thread, NAIVE), "alice").await.unwrap();
        assert!(saved.created);
        assert_eq!(saved.stored.json, thread_json(&thread, NAIVE));
        let again = store.save_thread(&thread_json(&thread, NAIVE), "alice").await.unwrap();
        assert!(!again.created);
        let loaded = store.load_thread(&thread, "alice").await.unwrap();
        assert_eq!(loaded.json, thread_json(&thread, NAIVE));
        assert_eq!(loaded.title, None);
        assert_eq!(loaded.created_at.to_rfc3339(), "2025-10-06T12:00:00.123456+00:00");
        assert!(matches!(store.load_thread(&thread, "bob").await, Err(RepoError::NotFound(_))));
        assert!(matches!(
            store.save_thread("{\"id\": \"x\"}", "alice").await,
            Err(RepoError::Invalid(_))
        ));

        // Items.
        let mut item_ids = Vec::new();
        for n in 0..5 {
            let id = store.generate_item_id(StoreItemType::Message, &thread, "alice");
            assert!(id.starts_with("msg_"));
            let at = format!("2025-10-06T12:00:0{n}");
            let saved = store
                .add_thread_item(&thread, &item_json(&id, &thread, &at), "alice")
                .await
                .unwrap();
            assert!(saved.created);
            assert_eq!(saved.stored.id, id);
            assert_eq!(saved.stored.item_type, "end_of_turn");
            item_ids.push(id);
        }
        // The SDK's own test: after the first, 3 ascending, no more.
        let page = store
            .load_thread_items(&thread, Some(&item_ids[0]), 3, SortOrder::Asc, "alice")
            .await
            .unwrap();
        assert_eq!(page.data.iter().map(|i| i.id.clone()).collect::<Vec<_>>(), item_ids[1..4]);
        assert!(page.has_more);
        assert_eq!(page.after.as_deref(), Some(item_ids[3].as_str()));
        let page = store
            .load_thread_items(&thread, Some(&item_ids[1]), 3, SortOrder::Asc, "alice")
            .await
            .unwrap();
        assert_eq!(page.data.len(), 3);
        assert!(!page.has_more);
        assert_eq!(page.after, None);
        let newest =
            store.load_thread_items(&thread, None, 1, SortOrder::Desc, "alice").await.unwrap();
        assert_eq!(newest.data[0].id, item_ids[4]);
        assert_eq!(
            chatkit_server::wire::stored_page(&newest),
            format!(
                r#"{{"data":[{}],"has_more":true,"after":"{}"}}"#,
                item_json(&item_ids[4], &thread, "2025-10-06T12:00:04"),
                item_ids[4]
            )
        );
        // Another user's (or a missing) thread: an empty page, as in the SDK.
        let foreign = store.load_thread_items(&thread, None, 20, SortOrder::Asc, "bob").await;
        assert_eq!(foreign.unwrap().data.len(), 0);
        let missing = store.load_thread_items("thr_none", None, 20, SortOrder::Asc, "alice").await;
        assert!(missing.unwrap().data.is_empty());
        let bad_cursor =
            store.load_thread_items(&thread, Some("nope"), 20, SortOrder::Asc, "alice").await;
        assert!(matches!(bad_cursor, Err(RepoError::Invalid(_))));
        let zero = store.load_thread_items(&thread, None, 0, SortOrder::Asc, "alice").await;
        assert!(matches!(zero, Err(RepoError::Invalid(_))));

        // `save_item` upserts; `load_item` is scoped by thread and user.
        let replaced = item_json(&item_ids[2], &thread, "2025-10-06T12:00:02")
            .replace("end_of_turn", "assistant_message");
        let saved = store.save_item(&thread, &replaced, "alice").await.unwrap();
        assert!(!saved.created);
        assert_eq!(store.load_item(&thread, &item_ids[2], "alice").await.unwrap().json, replaced);
        let fresh = item_json("msg_fresh", &thread, NAIVE);
        assert!(store.save_item(&thread, &fresh, "alice").await.unwrap().created);
        for (thread_id, user) in [(thread.as_str(), "bob"), ("thr_other", "alice")] {
            let err = store.load_item(thread_id, &item_ids[2], user).await.unwrap_err();
            assert!(matches!(err, RepoError::NotFound(_)), "{err}");
        }
        let err = store.add_thread_item(&thread, &fresh, "bob").await.unwrap_err();
        assert!(matches!(err, RepoError::NotFound(_)), "{err}");
        assert!(item_rows(app, "bob", &thread).await.is_empty());

        // Threads page.
        let second = store.generate_thread_id("alice");
        store.save_thread(&thread_json(&second, "2025-10-07T00:00:00"), "alice").await.unwrap();
        let threads = store.load_threads(1, None, SortOrder::Desc, "alice").await.unwrap();
        assert_eq!(threads.data[0].id, second);
        assert_eq!(threads.after.as_deref(), Some(second.as_str()));
        let rest = store.load_threads(1, Some(&second), SortOrder::Desc, "alice").await.unwrap();
        assert_eq!(rest.data[0].id, thread);
        assert!(!rest.has_more);
        assert!(store.load_threads(10, None, SortOrder::Asc, "bob").await.unwrap().data.is_empty());

        // Attachments.
        let attachment = store.generate_item_id(StoreItemType::Attachment, &thread, "alice");
        assert!(attachment.starts_with("atc_"));
        let saved =
            store.save_attachment(&attachment_json(&attachment, None), "alice").await.unwrap();
        assert!(saved.created);
        assert_eq!(saved.stored.thread_id, None);
        let saved = store
            .save_attachment(&attachment_json(&attachment, Some(&thread)), "alice")
            .await
            .unwrap();
        assert!(!saved.created);
        let loaded = store.load_attachment(&attachment, "alice").await.unwrap();
        assert_eq!(loaded.thread_id.as_deref(), Some(thread.as_str()));
        assert_eq!(loaded.json, attachment_json(&attachment, Some(&thread)));
        assert!(matches!(
            store.load_attachment(&attachment, "bob").await,
            Err(RepoError::NotFound(_))
        ));

        // Ids PostgreSQL cannot store are refused as invalid, never a database error.
        let nul = "a\0b";
        let refusals = [
            store.load_thread(nul, "alice").await.err(),
            store.load_item(&thread, nul, "alice").await.err(),
            store.load_attachment("", "alice").await.err(),
            store.load_thread_items(&thread, Some(nul), 5, SortOrder::Asc, "alice").await.err(),
            store.load_threads(5, Some(nul), SortOrder::Asc, "alice").await.err(),
            store.delete_thread_item(&thread, nul, "alice").await.err(),
            store.add_thread_item(nul, &item_json("m", nul, NAIVE), "alice").await.err(),
            store.save_thread(&thread_json("t", NAIVE), nul).await.err(),
        ];
        for refusal in refusals {
            assert!(matches!(refusal, Some(RepoError::Invalid(_))), "{refusal:?}");
        }

        // Deletes: foreign and missing ones are silent no-ops.
        let before = snapshot(app).await;
        store.delete_thread(&thread, "bob").await.unwrap();
        store.delete_thread_item(&thread, &item_ids[0], "bob").await.unwrap();
        store.delete_attachment(&attachment, "bob").await.unwrap();
        store.delete_thread("thr_none", "alice").await.unwrap();
        assert_eq!(snapshot(app).await, before);
        store.delete_thread_item(&thread, &item_ids[0], "alice").await.unwrap();
        assert_eq!(item_rows(app, "alice", &thread).await.len(), 5);
        store.delete_thread(&thread, "alice").await.unwrap();
        assert!(item_rows(app, "alice", &thread).await.is_empty());
        assert!(matches!(store.load_thread(&thread, "alice").await, Err(RepoError::NotFound(_))));
        store.delete_attachment(&attachment, "alice").await.unwrap();
        assert!(snapshot(app).await.attachments.is_empty());
    })
    .await;
}

/// Generated ids keep the SDK's prefixes, carry 128 random bits, and do not repeat.
async fn generated_ids_are_prefixed_and_unique(backend: Backend) {
    with_app(backend, async |app| {
        let store = app.db.chatkit();
        let prefixes = [
            (StoreItemType::Thread, "thr_"),
            (StoreItemType::Message, "msg_"),
            (StoreItemType::ToolCall, "tc_"),
            (StoreItemType::Task, "tsk_"),
            (StoreItemType::Workflow, "wf_"),
            (StoreItemType::Attachment, "atc_"),
            (StoreItemType::SdkHiddenContext, "shcx_"),
        ];
        let mut seen = HashSet::new();
        let (mut ones, mut zeros) = (0u128, 0u128);
        for n in 0..10_000 {
            let (kind, prefix) = prefixes[n % prefixes.len()];
            let id = if kind == StoreItemType::Thread && n % 2 == 0 {
                store.generate_thread_id("alice")
            } else {
                store.generate_item_id(kind, "thr_1", "alice")
            };
            let random = id.strip_prefix(prefix).unwrap_or_else(|| panic!("{id} lacks {prefix}"));
            assert_eq!(random.len(), 32, "{id}");
            assert!(random.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{id}");
            let bits = u128::from_str_radix(random, 16).unwrap();
            ones |= bits;
            zeros |= !bits;
            assert!(seen.insert(random.to_owned()), "{id} repeated");
        }
        assert_eq!(ones, u128::MAX, "every one of the 128 bits varies");
        assert_eq!(zeros, u128::MAX, "every one of the 128 bits varies");
        assert!(default_generate_id(StoreItemType::Workflow).starts_with("wf_"));
    })
    .await;
}

/// The OpenAPI document describes every route of the section, authenticated.
async fn routes_are_documented(backend: Backend) {
    with_app(backend, async |app| {
        let doc = app.client.get(app.url("/openapi.json")).send().await.unwrap();
        let doc: Value = doc.json().await.unwrap();
        let routes = [
            ("/threads", "get"),
            ("/threads/{thread_id}", "put"),
            ("/threads/{thread_id}", "get"),
            ("/threads/{thread_id}", "delete"),
            ("/threads/{thread_id}/items", "get"),
            ("/threads/{thread_id}/items", "post"),
            ("/threads/{thread_id}/items/{item_id}", "put"),
            ("/threads/{thread_id}/items/{item_id}", "get"),
            ("/threads/{thread_id}/items/{item_id}", "delete"),
            ("/attachments/{attachment_id}", "put"),
            ("/attachments/{attachment_id}", "get"),
            ("/attachments/{attachment_id}", "delete"),
        ];
        for (path, method) in routes {
            let operation = &doc["paths"][path][method];
            assert_eq!(operation["tags"][0], "chatkit-store", "{method} {path}");
            assert!(operation["security"][0].get("bearer").is_some(), "{method} {path}");
        }
        let tags = doc["tags"].as_array().unwrap();
        assert!(tags.iter().any(|tag| tag["name"] == "chatkit-store"));
        // And every route needs a token.
        for (path, method) in routes {
            let path = path.replace("{thread_id}", "t").replace("{item_id}", "i");
            let path = path.replace("{attachment_id}", "a");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = app.client.request(method, app.url(&path)).send().await.unwrap();
            Answer::read(answer).await.assert_error(401, "unauthorized");
        }
    })
    .await;
}

/// `update_thread` is a read-modify-write under the thread's lock: concurrent edits of
/// different fields all survive (a plain load, edit and save would lose most of them), the id
/// cannot be changed, and a missing thread is `NotFound`.
async fn concurrent_thread_updates_all_survive(backend: Backend) {
    with_app(backend, async |app| {
        create_thread(app, "alice", "thr_busy", "2025-10-06T12:00:00").await;
        let store = app.db.chatkit();
        let edits = (0..20).map(|n| {
            let store = store.clone();
            async move {
                store
                    .update_thread("thr_busy", "alice", |thread| {
                        thread["metadata"][format!("k{n}")] = Value::from(n);
                        thread["id"] = Value::from("thr_other");
                    })
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(edits).await;
        let stored: Value =
            serde_json::from_str(&store.load_thread("thr_busy", "alice").await.unwrap().json)
                .unwrap();
        let keys = stored["metadata"].as_object().unwrap().len();
        assert_eq!(keys, 20, "every edit survives: {stored}");
        assert!(store.load_thread("thr_other", "alice").await.is_err(), "the id did not change");
        let missing = store.update_thread("thr_busy", "bob", |_| {}).await;
        assert!(matches!(missing, Err(RepoError::NotFound(_))), "{missing:?}");
    })
    .await;
}

dual_backend_tests!(
    concurrent_thread_updates_all_survive,
    add_thread_item_is_idempotent_by_id,
    save_thread_ignores_items,
    tied_timestamps_page_without_skips_or_repeats,
    out_of_order_timestamps_are_ordered_by_time,
    unknown_after_cursor_is_a_400,
    timestamps_are_returned_verbatim,
    another_users_resources_are_invisible_and_untouched,
    one_thread_id_for_two_users,
    malformed_bodies_are_rejected,
    an_item_naming_another_thread_is_stored_as_given,
    every_stored_shape_round_trips_exactly,
    threads_page_in_both_orders,
    page_parameters_are_checked,
    attachments_upsert_and_delete,
    deletes_remove_what_they_name,
    store_trait_follows_the_sdk_contract,
    generated_ids_are_prefixed_and_unique,
    routes_are_documented,
);
