//! The Agents SDK `Session` protocol over HTTP: exact semantics, fidelity, tenancy,
//! idempotency and concurrency.

use std::collections::HashSet;
use std::time::Duration;

use chatstore_tests::{Backend, TestApp, dual_backend_tests, with_app, with_database, within};
use sea_orm::{ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

fn items_of(answer: &chatstore_tests::Answer) -> Vec<Value> {
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()["items"].as_array().expect("items").clone()
}

async fn add(app: &TestApp, user: &str, session: &str, items: &[Value]) {
    let body = json!({ "items": items }).to_string();
    let answer = app.post(&format!("/sessions/{session}/items"), user, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json(), json!({ "added": items.len() }));
}

fn numbered(range: std::ops::Range<usize>) -> Vec<Value> {
    range.map(|n| json!({ "role": "user", "content": format!("m{n}") })).collect()
}

async fn get_items_follows_the_protocol(backend: Backend) {
    with_app(backend, async |app| {
        // An unknown session has no items, and reading it creates nothing.
        assert!(items_of(&app.get("/sessions/s/items", "alice").await).is_empty());
        // With a limit too, where the database joins nothing: still the well-formed empty list.
        assert_eq!(app.get("/sessions/s/items?limit=50", "alice").await.text, r#"{"items":[]}"#);
        assert_eq!(app.db.sessions().item_count("alice", "s").await.unwrap(), 0);
        assert!(app.all_chat_rows().await.is_empty());

        add(app, "alice", "s", &numbered(0..3)).await;
        add(app, "alice", "s", &numbered(3..5)).await;
        assert_eq!(items_of(&app.get("/sessions/s/items", "alice").await), numbered(0..5));
        assert_eq!(items_of(&app.get("/sessions/s/items?limit=2", "alice").await), numbered(3..5));
        assert_eq!(items_of(&app.get("/sessions/s/items?limit=5", "alice").await), numbered(0..5));
        assert_eq!(items_of(&app.get("/sessions/s/items?limit=99", "alice").await), numbered(0..5));
        assert!(items_of(&app.get("/sessions/s/items?limit=0", "alice").await).is_empty());
        // The value the SDK's compaction passes.
        let all = app.get("/sessions/s/items?limit=2147483647", "alice").await;
        assert_eq!(items_of(&all), numbered(0..5));

        // `[]` is a no-op that creates nothing.
        let answer = app.post("/sessions/empty/items", "alice", "{\"items\":[]}").await;
        assert_eq!(answer.json(), json!({ "added": 0 }));
        let chat = app.chat_row("alice", "empty").await;
        assert!(chat.is_none());
    })
    .await;
}

async fn first_write_creates_an_active_untitled_chat(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "fresh", &numbered(0..2)).await;
        let chat = app.chat_row("alice", "fresh").await.expect("the chat exists");
        assert!(chat.is_active);
        assert_eq!(chat.title, None);
        assert_eq!(chat.item_count, 2);
    })
    .await;
}

async fn pop_and_clear_follow_the_protocol(backend: Backend) {
    with_app(backend, async |app| {
        assert_eq!(app.post("/sessions/s/pop", "alice", "").await.json(), json!({ "item": null }));
        add(app, "alice", "s", &numbered(0..3)).await;
        for n in (0..3).rev() {
            let popped = app.post("/sessions/s/pop", "alice", "").await;
            assert_eq!(popped.json(), json!({ "item": numbered(n..n + 1)[0] }));
            assert_eq!(items_of(&app.get("/sessions/s/items", "alice").await), numbered(0..n));
        }
        assert_eq!(app.post("/sessions/s/pop", "alice", "").await.json(), json!({ "item": null }));

        add(app, "alice", "s", &numbered(0..4)).await;
        let cleared = app.delete("/sessions/s/items", "alice").await;
        assert_eq!(cleared.status, 204);
        assert!(items_of(&app.get("/sessions/s/items", "alice").await).is_empty());
        // The chat stays, with no items.
        let chat = app.chat_row("alice", "s").await.expect("the chat stays");
        assert_eq!(chat.item_count, 0);
        // Clearing an unknown session is fine and creates nothing.
        assert_eq!(app.delete("/sessions/unknown/items", "alice").await.status, 204);
        assert_eq!(app.db.sessions().item_count("alice", "unknown").await.unwrap(), 0);
    })
    .await;
}

async fn items_round_trip_byte_for_byte(backend: Backend) {
    with_app(backend, async |app| {
        let items = [
            r#"{"role":"user","content":"nul:\u0000 tab:\t quote:\" back:\\ 日本 🎉 Привет"}"#,
            r#"{"big":123456789012345678901234567890,"neg":-9223372036854775809,"f":1.0e5,"z":-0.0}"#,
            r#"{"type":"function_call","arguments":"{\"city\":\"Paris\"}","call_id":"c1","nested":{"a":[1,{"b":null}],"e":{}}}"#,
            r#"{"escaped":"\u65e5\u672c \ud83c\udf89","surrogate_pair_kept_escaped":true}"#,
            r#"{ "spaced" : [ 1 , 2 ] ,"keys":"order kept","a":1}"#,
        ];
        let body = format!("{{\"items\":[{}]}}", items.join(","));
        assert_eq!(app.post("/sessions/fidelity/items", "alice", &body).await.status, 200);
        let expected = format!("{{\"items\":[{}]}}", items.join(","));
        assert_eq!(app.get("/sessions/fidelity/items", "alice").await.text, expected);
        let tail = app.get("/sessions/fidelity/items?limit=1", "alice").await.text;
        assert_eq!(tail, format!("{{\"items\":[{}]}}", items[4]));
        let popped = app.post("/sessions/fidelity/pop", "alice", "").await.text;
        assert_eq!(popped, format!("{{\"item\":{}}}", items[4]));
    })
    .await;
}

async fn odd_session_ids_work(backend: Backend) {
    with_app(backend, async |app| {
        // Percent-encoded: a slash, a percent sign, spaces, an emoji, and 255 bytes.
        let ids = [
            ("a/b", "a%2Fb"),
            ("100%", "100%25"),
            ("with spaces", "with%20spaces"),
            ("😀 chat", "%F0%9F%98%80%20chat"),
        ];
        for (n, (raw, encoded)) in ids.iter().enumerate() {
            add(app, "alice", encoded, &numbered(n..n + 1)).await;
            assert_eq!(
                app.db.sessions().latest_items("alice", raw, 5).await.unwrap().len(),
                1,
                "{raw}"
            );
        }
        let longest = "é".repeat(127) + "x"; // 255 bytes
        let encoded: String = longest.bytes().map(|b| format!("%{b:02X}")).collect();
        add(app, "alice", &encoded, &numbered(0..1)).await;
        assert_eq!(app.db.sessions().latest_items("alice", &longest, 5).await.unwrap().len(), 1);
    })
    .await;
}

async fn users_never_see_each_others_sessions(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "shared-id", &numbered(0..2)).await;
        add(app, "bob", "shared-id", &numbered(10..11)).await;
        assert_eq!(items_of(&app.get("/sessions/shared-id/items", "alice").await), numbered(0..2));
        assert_eq!(items_of(&app.get("/sessions/shared-id/items", "bob").await), numbered(10..11));
        // Bob's pop and clear touch only Bob's items.
        let popped = app.post("/sessions/shared-id/pop", "bob", "").await.json();
        assert_eq!(popped["item"], numbered(10..11)[0]);
        assert_eq!(app.delete("/sessions/shared-id/items", "bob").await.status, 204);
        assert_eq!(
            app.db.sessions().latest_items("alice", "shared-id", 10).await.unwrap().len(),
            2
        );
        assert_eq!(
            app.post("/sessions/alice-only/items", "alice", "{\"items\":[{}]}").await.status,
            200
        );
        assert!(items_of(&app.get("/sessions/alice-only/items", "bob").await).is_empty());
        assert_eq!(
            app.post("/sessions/alice-only/pop", "bob", "").await.json()["item"],
            Value::Null
        );
        assert_eq!(
            app.db.sessions().latest_items("alice", "alice-only", 10).await.unwrap().len(),
            1
        );
    })
    .await;
}

async fn a_retried_batch_with_the_same_idempotency_key_is_stored_once(backend: Backend) {
    with_app(backend, async |app| {
        let body = json!({ "items": numbered(0..3) }).to_string();
        let send = |key: &'static str, body: String| {
            let request = app
                .request(reqwest::Method::POST, "/sessions/s/items", "alice")
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(body);
            async move { chatstore_tests::Answer::read(request.send().await.unwrap()).await }
        };
        let first = send("batch-1", body.clone()).await;
        let chat = app.chat_row("alice", "s").await.unwrap();
        let retry = send("batch-1", body.clone()).await;
        assert_eq!(first.status, 200);
        assert_eq!((retry.status, retry.text.as_str()), (200, first.text.as_str()));
        assert_eq!(items_of(&app.get("/sessions/s/items", "alice").await), numbered(0..3));
        // A repeat does not touch the chat either: its count and its place in the list stay.
        assert_eq!(app.chat_row("alice", "s").await.unwrap(), chat);

        // The same key with another batch is a conflict that stores nothing.
        let other = json!({ "items": numbered(5..6) }).to_string();
        send("batch-1", other).await.assert_error(409, "conflict");
        assert_eq!(items_of(&app.get("/sessions/s/items", "alice").await), numbered(0..3));
        assert_eq!(app.chat_row("alice", "s").await.unwrap(), chat);
        // A new key appends again; keys are per session and per user.
        assert_eq!(send("batch-2", body.clone()).await.status, 200);
        assert_eq!(items_of(&app.get("/sessions/s/items", "alice").await).len(), 6);
        let bob = app
            .request(reqwest::Method::POST, "/sessions/s/items", "bob")
            .header("content-type", "application/json")
            .header("idempotency-key", "batch-1")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(bob.status(), 200);
        assert_eq!(app.db.sessions().latest_items("bob", "s", 10).await.unwrap().len(), 3);
        send("", "{\"items\":[]}".into()).await.assert_error(400, "invalid_request");
        // An empty batch is a no-op even with a key: no chat, no remembered key.
        let empty = app
            .request(reqwest::Method::POST, "/sessions/nothing/items", "alice")
            .header("content-type", "application/json")
            .header("idempotency-key", "empty-1")
            .body("{\"items\":[]}")
            .send()
            .await
            .unwrap();
        assert_eq!(empty.text().await.unwrap(), "{\"added\":0}");
        assert!(app.chat_row("alice", "nothing").await.is_none());
    })
    .await;
}

async fn a_full_read_longer_than_one_page_is_complete_and_ordered(backend: Backend) {
    with_app(backend, async |app| {
        let items = numbered(0..1234);
        for chunk in items.chunks(400) {
            add(app, "alice", "long", chunk).await;
        }
        let answer = app.get("/sessions/long/items", "alice").await;
        assert_eq!(items_of(&answer), items);
        let tail = app.get("/sessions/long/items?limit=50", "alice").await;
        assert_eq!(items_of(&tail), items[1184..].to_vec());
    })
    .await;
}

/// Concurrent batches never interleave or lose an item; on PostgreSQL they go through two
/// server processes sharing the database.
async fn concurrent_batches_stay_whole_and_ordered(backend: Backend) {
    with_database(backend, async |database| {
        let mut first = TestApp::spawn(database, |_| {}).await;
        let mut second = match backend {
            Backend::Postgres => Some(TestApp::spawn(database, |_| {}).await),
            Backend::Sqlite => None,
        };
        const BATCHES: usize = 64;
        const SIZE: usize = 5;
        let mut tasks = Vec::new();
        for batch in 0..BATCHES {
            let server = if batch % 2 == 1 { second.as_ref().unwrap_or(&first) } else { &first };
            let request = server
                .request(reqwest::Method::POST, "/sessions/busy/items", "alice")
                .header("content-type", "application/json")
                .body(
                    json!({ "items": (0..SIZE).map(|i| json!({"batch": batch, "i": i})).collect::<Vec<_>>() })
                        .to_string(),
                );
            tasks.push(tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) }));
        }
        for task in tasks {
            assert_eq!(within(Duration::from_secs(60), task).await.unwrap().unwrap(), 200);
        }
        let items = items_of(&first.get("/sessions/busy/items", "alice").await);
        assert_eq!(items.len(), BATCHES * SIZE, "no item lost or duplicated");
        let mut seen = HashSet::new();
        for batch in items.chunks(SIZE) {
            let id = batch[0]["batch"].as_u64().unwrap();
            assert!(seen.insert(id), "batch {id} appears twice");
            for (i, item) in batch.iter().enumerate() {
                assert_eq!(item, &json!({"batch": id, "i": i}), "batches are contiguous and ordered");
            }
        }
        let chat = first.chat_row("alice", "busy").await
        .unwrap();
        assert_eq!(chat.item_count, (BATCHES * SIZE) as i64);
        if let Some(second) = second.as_mut() {
            second.stop().await.unwrap();
        }
        first.stop().await.unwrap();
    })
    .await;
}

/// Retries of one batch racing each other (a client that timed out and retried while the
/// first attempt was still running) store it once and all answer alike; batches with other
/// keys and without one, sent meanwhile, all land whole.
async fn concurrent_retries_with_one_key_store_the_batch_once(backend: Backend) {
    with_app(backend, async |app| {
        let retried = json!({ "items": numbered(0..3) }).to_string();
        let mut tasks = Vec::new();
        for attempt in 0..24 {
            let (key, body) = match attempt % 3 {
                0 => (Some("retried".to_owned()), retried.clone()),
                1 => (
                    Some(format!("other-{attempt}")),
                    json!({ "items": numbered(100..102) }).to_string(),
                ),
                _ => (None, json!({ "items": numbered(200..201) }).to_string()),
            };
            let mut request = app
                .request(reqwest::Method::POST, "/sessions/raced/items", "alice")
                .header("content-type", "application/json")
                .body(body);
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            tasks.push(tokio::spawn(async move {
                chatstore_tests::Answer::read(request.send().await.unwrap()).await
            }));
        }
        for (attempt, task) in tasks.into_iter().enumerate() {
            let answer = within(Duration::from_secs(60), task).await.unwrap();
            let added = [3, 2, 1][attempt % 3];
            assert_eq!((answer.status, answer.json()), (200, json!({ "added": added })));
        }
        let items = items_of(&app.get("/sessions/raced/items", "alice").await);
        // The retried batch once, 8 batches of 2 with their own keys, 8 single items.
        assert_eq!(items.len(), 3 + 8 * 2 + 8);
        let first = items.iter().position(|item| item == &numbered(0..1)[0]).unwrap();
        assert_eq!(items[first..first + 3], numbered(0..3), "the retried batch is whole");
        assert_eq!(app.chat_row("alice", "raced").await.unwrap().item_count, 27);
    })
    .await;
}

async fn concurrent_pops_never_return_an_item_twice(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "s", &numbered(0..20)).await;
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let request = app.request(reqwest::Method::POST, "/sessions/s/pop", "alice");
            tasks.push(tokio::spawn(
                async move { request.send().await.unwrap().json::<Value>().await },
            ));
        }
        let mut popped = Vec::new();
        for task in tasks {
            let body = within(Duration::from_secs(60), task).await.unwrap().unwrap();
            if !body["item"].is_null() {
                popped.push(body["item"]["content"].as_str().unwrap().to_owned());
            }
        }
        let distinct: HashSet<_> = popped.iter().cloned().collect();
        assert_eq!(popped.len(), 20, "every item popped exactly once: {popped:?}");
        assert_eq!(distinct.len(), 20);
        assert!(items_of(&app.get("/sessions/s/items", "alice").await).is_empty());
    })
    .await;
}

/// Keys older than the TTL are forgotten by the server's pruner; newer ones are kept.
async fn expired_idempotency_keys_are_pruned(backend: Backend) {
    chatstore_tests::with_app_configured(
        backend,
        |settings| {
            settings.idempotency.key_ttl_secs = 3600;
            settings.idempotency.prune_interval_secs = 1;
        },
        async |app| {
            let key = |name: &str| repositories::IdempotencyKey {
                key: name.to_owned(),
                request_hash: "h".to_owned(),
            };
            let sessions = app.db.sessions();
            sessions.add_items("alice", "s", &["{}"], Some(&key("old"))).await.unwrap();
            sessions.add_items("alice", "s", &["{}"], Some(&key("new"))).await.unwrap();
            // Age one key past the TTL.
            entity::session_idempotency_key::Entity::update_many()
                .col_expr(
                    entity::session_idempotency_key::Column::CreatedAt,
                    sea_orm::sea_query::Expr::value(
                        chrono::Utc::now() - chrono::Duration::hours(2),
                    ),
                )
                .filter(sea_orm::ColumnTrait::eq(
                    &entity::session_idempotency_key::Column::IdempotencyKey,
                    "old",
                ))
                .exec(app.db.connection())
                .await
                .unwrap();
            let remaining = || async {
                let keys: Vec<entity::session_idempotency_key::Model> =
                    entity::session_idempotency_key::Entity::find()
                        .all(app.db.connection())
                        .await
                        .unwrap();
                keys.into_iter().map(|k| k.idempotency_key).collect::<Vec<_>>()
            };
            let mut pruned = false;
            for _ in 0..50 {
                if remaining().await == ["new"] {
                    pruned = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(pruned, "the old key is pruned, the new one kept: {:?}", remaining().await);
        },
    )
    .await;
}

/// Makes the database refuse any item containing "boom" mid-append, after the chat's row was
/// touched: the append fails part-way through its transaction.
async fn refuse_boom_items(app: &TestApp) {
    let statements: &[&str] = match app.db.backend() {
        repositories::Backend::Sqlite => {
            &["CREATE TRIGGER refuse_boom BEFORE INSERT ON conversation_items \
             WHEN NEW.data LIKE '%boom%' BEGIN SELECT RAISE(ABORT, 'boom refused'); END"]
        }
        repositories::Backend::Postgres => &[
            "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.data LIKE '%boom%' THEN RAISE EXCEPTION 'boom refused'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON conversation_items \
             FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
        ],
    };
    for statement in statements {
        app.db.connection().execute_unprepared(statement).await.unwrap();
    }
}

async fn a_failed_append_leaves_nothing_behind_and_later_ones_work(backend: Backend) {
    with_app(backend, async |app| {
        add(app, "alice", "s", &numbered(0..1)).await;
        let before = app.chat_row("alice", "s").await.unwrap();
        refuse_boom_items(app).await;

        let failing =
            json!({ "items": [{"role": "user", "content": "fine"}, {"content": "boom"}] });
        let answer = app.post("/sessions/s/items", "alice", &failing.to_string()).await;
        assert_eq!(answer.status, 500, "{}", answer.text);

        // Nothing of the batch is kept: not its first item, not the chat's new count.
        assert_eq!(items_of(&app.get("/sessions/s/items", "alice").await), numbered(0..1));
        let after = app.chat_row("alice", "s").await.unwrap();
        assert_eq!((after.item_count, after.updated_at), (before.item_count, before.updated_at));

        // The connection it ran on is not reused half-way through a transaction: every later
        // append, one after another and then many at once, commits.
        for n in 1..6 {
            add(app, "alice", "s", &numbered(n..n + 1)).await;
        }
        let mut tasks = Vec::new();
        for n in 6..38 {
            let request = app
                .request(reqwest::Method::POST, "/sessions/other/items", "alice")
                .header("content-type", "application/json")
                .body(json!({ "items": numbered(n..n + 1) }).to_string());
            tasks.push(tokio::spawn(
                async move { request.send().await.map(|r| r.status().as_u16()) },
            ));
        }
        for task in tasks {
            assert_eq!(within(Duration::from_secs(30), task).await.unwrap().unwrap(), 200);
        }
        assert_eq!(items_of(&app.get("/sessions/s/items", "alice").await), numbered(0..6));
        assert_eq!(app.chat_row("alice", "s").await.unwrap().item_count, 6);
        assert_eq!(app.chat_row("alice", "other").await.unwrap().item_count, 32);
    })
    .await;
}

/// Appends abandoned at any point (a client that hung up) leave only whole batches, numbered
/// without a gap, and no connection stuck inside a transaction: later appends all commit.
async fn abandoned_appends_leave_whole_contiguous_batches(backend: Backend) {
    with_app(backend, async |app| {
        const BATCHES: usize = 48;
        const SIZE: usize = 4;
        let batch_texts: Vec<Vec<String>> = (0..BATCHES)
            .map(|batch| (0..SIZE).map(|i| json!({"batch": batch, "i": i}).to_string()).collect())
            .collect();
        let mut tasks = Vec::new();
        for (batch, texts) in batch_texts.iter().enumerate() {
            let db = app.db.clone();
            let texts = texts.clone();
            let task = tokio::spawn(async move {
                let items: Vec<&str> = texts.iter().map(String::as_str).collect();
                let key = (batch % 3 == 0).then(|| repositories::IdempotencyKey {
                    key: format!("k{batch}"),
                    request_hash: format!("h{batch}"),
                });
                db.sessions().add_items("alice", "cut", &items, key.as_ref()).await
            });
            // Every other append is abandoned, some before they start, some while they wait
            // for the writer or run.
            if batch % 2 == 1 {
                for _ in 0..batch % 5 {
                    tokio::task::yield_now().await;
                }
                task.abort();
            }
            tasks.push(task);
        }
        let mut completed = 0;
        for task in tasks {
            match within(Duration::from_secs(60), task).await {
                Ok(added) => {
                    assert_eq!(added.unwrap(), SIZE as u64);
                    completed += 1;
                }
                Err(join) => assert!(join.is_cancelled(), "{join}"),
            }
        }
        assert!(completed >= BATCHES / 2, "every append not abandoned completes");

        let stored = app.db.sessions().items_after("alice", "cut", 0, 10_000).await.unwrap();
        let positions: Vec<i64> = stored.iter().map(|(position, _)| *position).collect();
        let expected: Vec<i64> = (1..=stored.len() as i64).collect();
        assert_eq!(positions, expected, "positions run 1..=count without a gap");
        assert_eq!(stored.len() % SIZE, 0, "only whole batches: {} items", stored.len());
        let mut seen = HashSet::new();
        for batch in stored.chunks(SIZE) {
            let first: Value = serde_json::from_str(&batch[0].1).unwrap();
            let id = first["batch"].as_u64().unwrap() as usize;
            assert!(seen.insert(id), "batch {id} stored twice");
            let texts: Vec<&str> = batch.iter().map(|(_, text)| text.as_str()).collect();
            assert_eq!(texts, batch_texts[id], "batch {id} is whole and in order");
        }
        let count = app.chat_row("alice", "cut").await.map_or(0, |chat| chat.item_count);
        assert_eq!(count, stored.len() as i64);

        // Nothing was left holding a transaction: appends from many tasks at once all commit.
        let mut tasks = Vec::new();
        for n in 0..16 {
            let db = app.db.clone();
            tasks.push(tokio::spawn(async move {
                let item = json!({"after": n}).to_string();
                db.sessions().add_items("alice", "cut", &[&item], None).await
            }));
        }
        for task in tasks {
            assert_eq!(within(Duration::from_secs(60), task).await.unwrap().unwrap(), 1);
        }
        let latest = app.db.sessions().latest_items("alice", "cut", 16).await.unwrap();
        assert_eq!(latest.len(), 16);
        assert_eq!(app.chat_row("alice", "cut").await.unwrap().item_count, count + 16);
    })
    .await;
}

/// On SQLite, an append that cannot get the file's write lock within the busy timeout (another
/// process is writing) answers 503 with `Retry-After` and stores nothing; once the lock is
/// free, appends work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_append_blocked_by_another_writer_answers_503_then_recovers() {
    chatstore_tests::with_app_configured(
        Backend::Sqlite,
        |settings| settings.database.sqlite_busy_timeout_ms = 200,
        async |app| {
            add(app, "alice", "s", &numbered(0..2)).await;
            let pool = app.db.connection().get_sqlite_connection_pool();
            let mut other_writer = pool.acquire().await.unwrap();
            sea_orm::sqlx::query("BEGIN IMMEDIATE").execute(&mut *other_writer).await.unwrap();

            let body = json!({ "items": numbered(2..4) }).to_string();
            let answer = app.post("/sessions/s/items", "alice", &body).await;
            answer.assert_error(503, "unavailable");
            assert!(answer.header("retry-after").is_some(), "{answer:?}");
            // Reads do not wait for a writer.
            assert_eq!(items_of(&app.get("/sessions/s/items?limit=10", "alice").await).len(), 2);

            sea_orm::sqlx::query("ROLLBACK").execute(&mut *other_writer).await.unwrap();
            drop(other_writer);
            add(app, "alice", "s", &numbered(2..4)).await;
            assert_eq!(items_of(&app.get("/sessions/s/items", "alice").await), numbered(0..4));
            assert_eq!(app.chat_row("alice", "s").await.unwrap().item_count, 4);
        },
    )
    .await;
}

/// A connection to `database` with a pool of `size`, which gives up on a connection after 3 s,
/// migrated through that pool.
async fn migrated_with_pool(
    database: &chatstore_tests::TestDatabase,
    size: u32,
) -> repositories::Db {
    let settings = chatstore_tests::test_settings(&database.url, |settings| {
        settings.database.max_connections = size;
        settings.database.acquire_timeout_secs = 3;
    });
    let db = repositories::Db::connect(&settings.database).await.unwrap();
    db.migrate().await.unwrap();
    db
}

/// A transaction of another connection holding the row of alice's chat `s`, and that
/// connection's `Db`, to watch from.
async fn hold_alices_chat_row(
    database: &chatstore_tests::TestDatabase,
) -> (repositories::Db, sea_orm::DatabaseTransaction) {
    use repositories::sea_orm::TransactionTrait;
    let observer = database.connect().await;
    let holder = observer.connection().begin().await.unwrap();
    holder
        .execute_unprepared(
            "SELECT 1 FROM chats WHERE user_id = 'alice' AND chat_id = 's' FOR UPDATE",
        )
        .await
        .unwrap();
    (observer, holder)
}

/// The backends of the test's database waiting on a lock (PostgreSQL), seen from `observer`.
async fn waiting_on_locks(observer: &repositories::Db) -> Vec<i32> {
    let sql = "SELECT pid FROM pg_stat_activity \
               WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let statement = sea_orm::Statement::from_string(observer.db_backend(), sql);
    let rows = observer.connection().query_all_raw(statement).await.unwrap();
    rows.iter().map(|row| row.try_get::<i32>("", "pid").unwrap()).collect()
}

/// Session reads and appends keep their connections between statements, at most half the pool
/// of them: with more at once, the others wait in line for one of those rather than take the
/// rest of the pool, which other requests need, and give up as the pool would, after its
/// acquire timeout. Five appends to a chat whose row another transaction holds: two (half a
/// pool of 4) wait on the row inside PostgreSQL, three wait in line in the process, and a
/// query of another kind still gets a connection at once. (The previous code gave the three
/// the pool's other two connections, and the query waited.) The row stays held past the
/// timeout: the three in line fail as unavailable, having written nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_statements_beyond_half_the_pool_wait_in_line() {
    with_database(Backend::Postgres, async |database| {
        let db = migrated_with_pool(database, 4).await;
        let item = r#"{"role":"user","content":"hello"}"#;
        db.sessions().add_items("alice", "s", &[item], None).await.unwrap();

        let (observer, holder) = hold_alices_chat_row(database).await;
        let started = std::time::Instant::now();
        let appends: Vec<_> = (0..5)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.sessions().add_items("alice", "s", &[item, item], None).await
                })
            })
            .collect();
        let waiting_on_the_row = async || waiting_on_locks(&observer).await.len();
        while waiting_on_the_row().await < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "the appends never reached the row"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(waiting_on_the_row().await, 2, "at most half the pool for session statements");
        let count = within(Duration::from_secs(2), db.chats().count("alice", false)).await.unwrap();
        assert_eq!(count, 1, "another query got a connection while the appends waited");

        // Past the 3 s acquire timeout of the three in line.
        tokio::time::sleep(Duration::from_secs(4).saturating_sub(started.elapsed())).await;
        holder.rollback().await.unwrap();
        let (mut appended, mut unavailable) = (0, 0);
        for append in appends {
            match within(Duration::from_secs(10), append).await.unwrap() {
                Ok(added) => appended += added,
                Err(repositories::RepoError::Unavailable(_)) => unavailable += 1,
                Err(other) => panic!("an append failed otherwise: {other}"),
            }
        }
        assert_eq!((appended, unavailable), (4, 3));
        assert_eq!(db.sessions().item_count("alice", "s").await.unwrap(), 5);
        assert_eq!(db.sessions().latest_items("alice", "s", 50).await.unwrap(), vec![item; 5]);
        db.close().await;
    })
    .await;
}

/// The wait in line and a wait on the pool after it share one deadline, the pool's acquire
/// timeout from when the statement asked. On a pool of 2 (a stock of one, 3 s timeout): append
/// A waits on a held row with the stock's connection, append B waits in line behind it, and
/// another request waits on the full pool. At 2.5 s A's backend is killed: its connection
/// closes, the other request takes the freed place in the pool, and B, its turn come, finds
/// the shelf empty and the pool full. It gives up at 3 s. (Timed separately, the two waits
/// ended at 5.5 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_waits_for_a_connection_one_acquire_timeout_in_all() {
    use repositories::sea_orm::TransactionTrait;
    with_database(Backend::Postgres, async |database| {
        let db = migrated_with_pool(database, 2).await;
        let item = r#"{"role":"user","content":"hello"}"#;
        // Leaves the stock's connection on its shelf.
        db.sessions().add_items("alice", "s", &[item], None).await.unwrap();
        let holding_the_pools_other_connection = db.connection().begin().await.unwrap();

        let (observer, holder) = hold_alices_chat_row(database).await;
        let append = |db: repositories::Db| {
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let outcome = db.sessions().add_items("alice", "s", &[item], None).await;
                (outcome, started.elapsed())
            })
        };
        let first = append(db.clone());
        let first_backend = within(Duration::from_secs(2), async {
            loop {
                if let Some(&pid) = waiting_on_locks(&observer).await.first() {
                    return pid;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let second = append(db.clone());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let other_request = {
            let db = db.clone();
            tokio::spawn(async move {
                let transaction = db.connection().begin().await.unwrap();
                let _ = released.await;
                transaction.rollback().await.unwrap();
            })
        };

        tokio::time::sleep(Duration::from_millis(2500)).await;
        let kill = format!("SELECT pg_terminate_backend({first_backend})");
        observer.connection().execute_unprepared(&kill).await.unwrap();
        let (outcome, _) = within(Duration::from_secs(5), first).await.unwrap();
        assert!(outcome.is_err(), "the append whose backend was killed failed");

        let (outcome, waited) = within(Duration::from_secs(10), second).await.unwrap();
        assert!(
            matches!(outcome, Err(repositories::RepoError::Unavailable(_))),
            "the append that found no connection is unavailable: {outcome:?}"
        );
        assert!(
            waited >= Duration::from_millis(2900) && waited < Duration::from_millis(4500),
            "one acquire timeout (3 s) in all, not one per wait: it gave up after {waited:?}"
        );

        release.send(()).unwrap();
        within(Duration::from_secs(5), other_request).await.unwrap();
        holder.rollback().await.unwrap();
        holding_the_pools_other_connection.rollback().await.unwrap();
        assert_eq!(db.sessions().item_count("alice", "s").await.unwrap(), 1);
        db.close().await;
    })
    .await;
}

/// With a pool of one connection there is none to spare for keeping: session statements take
/// it from the pool and give it back, so other queries still find it. Migrating works too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_one_keeps_no_connection_back() {
    with_database(Backend::Postgres, async |database| {
        // The migration lock's connection is not the pool's: a pool of one can migrate.
        let db = migrated_with_pool(database, 1).await;
        let item = r#"{"role":"user","content":"hello"}"#;
        for _ in 0..3 {
            db.sessions().add_items("alice", "s", &[item], None).await.unwrap();
            let count =
                within(Duration::from_secs(2), db.chats().count("alice", false)).await.unwrap();
            assert_eq!(count, 1);
        }
        assert_eq!(db.sessions().latest_items("alice", "s", 10).await.unwrap(), vec![item; 3]);
        db.close().await;
    })
    .await;
}

dual_backend_tests!(
    abandoned_appends_leave_whole_contiguous_batches,
    a_failed_append_leaves_nothing_behind_and_later_ones_work,
    expired_idempotency_keys_are_pruned,
    get_items_follows_the_protocol,
    first_write_creates_an_active_untitled_chat,
    pop_and_clear_follow_the_protocol,
    items_round_trip_byte_for_byte,
    odd_session_ids_work,
    users_never_see_each_others_sessions,
    a_retried_batch_with_the_same_idempotency_key_is_stored_once,
    a_full_read_longer_than_one_page_is_complete_and_ordered,
    concurrent_batches_stay_whole_and_ordered,
    concurrent_retries_with_one_key_store_the_batch_once,
    concurrent_pops_never_return_an_item_twice,
);
