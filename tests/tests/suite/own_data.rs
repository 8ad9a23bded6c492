//! Owning one's data: `DELETE /me/data` against every table of the schema, `GET /export` and
//! `POST /import` round trips, bad imports that keep nothing, tenancy, and retention.

use chatstore_tests::{
    Answer, Backend, TestApp, dual_backend_tests, with_app, with_app_configured,
};
use repositories::sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::{Value, json};

/// An item with spacing, key order, escapes and characters a re-encoding would change.
const ODD_ITEM: &str = r#"{ "z" : 1,"a":"\u0000 é 😀 \ud83d\ude00","n": 12345678901234567890.50 ,"nested":{"b":[1, 2]}}"#;

/// Gives `user` a row in every table that holds user data, through the API.
async fn populate(app: &TestApp, user: &str) {
    let chat = format!(
        r#"{{"chat_id": "c1", "title": "First", "conversation": [{ODD_ITEM}, {{"role":"user","content":"hi"}}],
            "metadata": {{ "k" : [1,2], "s": "v" }}, "tags": ["work", "Été"]}}"#
    );
    assert_eq!(app.post("/chats", user, &chat).await.status, 201);
    let batch = app
        .request(reqwest::Method::POST, "/sessions/c1/items", user)
        .header("content-type", "application/json")
        .header("idempotency-key", "batch-1")
        .body(r#"{"items": [{"role":"assistant","content":"hello"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 200);
    assert_eq!(
        app.post("/chats", user, r#"{"chat_id": "gone", "title": "Old"}"#).await.status,
        201
    );
    assert_eq!(app.delete("/chats/gone", user).await.status, 204);

    let thread = json!({"id": "thr_1", "created_at": "2025-10-06T12:00:00.123456", "title": "Trip",
        "status": {"type": "active"}, "metadata": {"private": 1}, "allowed_image_domains": null});
    let put =
        app.send(reqwest::Method::PUT, "/threads/thr_1", user, Some(&thread.to_string())).await;
    assert_eq!(put.status, 200, "{}", put.text);
    for n in 0..2 {
        let item = json!({"id": format!("msg_{n}"), "thread_id": "thr_1", "created_at": "2025-10-06T12:00:01",
            "type": "assistant_message", "content": [{"annotations": [], "text": format!("text {n}"), "type": "output_text"}]});
        let added = app.post("/threads/thr_1/items", user, &item.to_string()).await;
        assert_eq!(added.status, 201, "{}", added.text);
    }
    let feedback = json!({"type": "items.feedback", "params": {"thread_id": "thr_1", "item_ids": ["msg_1"], "kind": "positive"}});
    assert_eq!(app.post("/chatkit", user, &feedback.to_string()).await.status, 200);
    let attachment =
        json!({"id": "atc_1", "type": "file", "name": "notes.txt", "mime_type": "text/plain"});
    let saved = app
        .send(reqwest::Method::PUT, "/attachments/atc_1", user, Some(&attachment.to_string()))
        .await;
    assert!(matches!(saved.status, 200 | 201), "{}", saved.text);
    let upload = app
        .request(reqwest::Method::PUT, "/attachments/atc_1/content", user)
        .header("content-type", "text/plain")
        .body(vec![0u8, 1, 2, 255, b'\n', b'x'])
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 204);
    populate_memory(app, user).await;
}

/// Gives `user` a session `mem` that uses every part of agent memory: a prefix prune (so
/// its positions start after 0), a branch with items of its own, a deleted branch, usage on
/// main and on the branch, and main's turn starts (which a fork looks up).
async fn populate_memory(app: &TestApp, user: &str) {
    let message = |role: &str, text: &str| json!({"role": role, "content": text});
    let items = json!({"items": [message("user", "u1"), message("assistant", "a1"),
        message("user", "u2"), message("assistant", "a2"), message("user", "u3"),
        message("assistant", "a3")]});
    assert_eq!(app.post("/sessions/mem/items", user, &items.to_string()).await.status, 200);
    let snapshot = app.get("/sessions/mem/snapshot?limit=1", user).await.json();
    let prune = json!({"revision": snapshot["revision"], "after_position": 6, "prune_leading": 2,
        "items": []});
    let pruned = app.post("/sessions/mem/replace", user, &prune.to_string()).await;
    assert_eq!(pruned.status, 200, "{}", pruned.text);
    let put_usage = |body: Value| async move {
        let body = body.to_string();
        let answer = app.send(reqwest::Method::PUT, "/sessions/mem/usage", user, Some(&body)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    };
    put_usage(json!({"requests": 1, "input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
        "input_tokens_details": {"cached_tokens": 2}}))
    .await;
    for (branch, turn) in [("alt", 1), ("old", 1)] {
        let fork = json!({"branch_id": branch, "turn": turn}).to_string();
        let made = app.post("/sessions/mem/branches", user, &fork).await;
        assert_eq!(made.status, 201, "{}", made.text);
    }
    let own = json!({"items": [message("user", "alt q"), message("assistant", "alt a")]});
    let added = app.post("/sessions/mem/branches/alt/items", user, &own.to_string()).await;
    assert_eq!(added.status, 200, "{}", added.text);
    put_usage(json!({"branch": "alt", "requests": 2, "input_tokens": 7, "output_tokens": 3,
        "total_tokens": 10, "output_tokens_details": {"reasoning_tokens": 1}}))
    .await;
    assert_eq!(app.delete("/sessions/mem/branches/old", user).await.status, 204);
}

/// What the memory routes answer about `user`'s session `mem`.
async fn memory_answers(app: &TestApp, user: &str) -> Vec<(String, String)> {
    let mut answers = Vec::new();
    for path in [
        "/sessions/mem/items",
        "/sessions/mem/items?limit=2",
        "/sessions/mem/snapshot?limit=2",
        "/sessions/mem/turns",
        "/sessions/mem/turns/latest?turns=1",
        "/sessions/mem/branches",
        "/sessions/mem/branches/alt/items",
        "/sessions/mem/branches/alt/items?limit=3",
        "/sessions/mem/snapshot?limit=2&branch=alt",
        "/sessions/mem/usage",
        "/sessions/mem/usage/turns",
        "/sessions/mem/usage/turns?branch=alt",
    ] {
        let answer = app.get(path, user).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        answers.push((path.to_owned(), answer.text));
    }
    answers
}

/// The tables of the schema that are not user data: the migrations' bookkeeping, and the
/// one-row switch of search indexing (`search_state`), which is the server's, not a user's.
const NOT_USER_DATA: &[&str] = &["seaql_migrations", "search_state"];

/// Every table of the database, from its catalogue, with whether it has a `user_id` column.
/// SQLite's virtual tables and their shadow tables (the full-text index over
/// `search_entries`) are left out: they index a content table and hold nothing else, and the
/// erasure test checks that index against its content table and through `GET /search`.
async fn catalogue(app: &TestApp) -> Vec<(String, bool)> {
    let conn = app.db.connection();
    let backend = conn.get_database_backend();
    let names: Vec<String> = match backend {
        DbBackend::Postgres => {
            let rows = conn
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT table_name AS name FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                ))
                .await
                .unwrap();
            rows.iter().map(|row| row.try_get::<String>("", "name").unwrap()).collect()
        }
        _ => {
            let rows = conn
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%'",
                ))
                .await
                .unwrap();
            let tables: Vec<(String, String)> = rows
                .iter()
                .map(|row| {
                    let sql: Option<String> = row.try_get("", "sql").unwrap();
                    (row.try_get::<String>("", "name").unwrap(), sql.unwrap_or_default())
                })
                .collect();
            let virtual_tables: Vec<&String> = tables
                .iter()
                .filter(|(_, sql)| sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL TABLE"))
                .map(|(name, _)| name)
                .collect();
            tables
                .iter()
                .filter(|(name, _)| {
                    !virtual_tables
                        .iter()
                        .any(|vt| name == *vt || name.starts_with(&format!("{vt}_")))
                })
                .map(|(name, _)| name.clone())
                .collect()
        }
    };
    let mut tables = Vec::new();
    for name in names {
        let sql = match backend {
            DbBackend::Postgres => format!(
                "SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = \
                 current_schema() AND table_name = '{name}' AND column_name = 'user_id'"
            ),
            _ => format!(
                "SELECT count(*) AS n FROM pragma_table_info('{name}') WHERE name = 'user_id'"
            ),
        };
        let row = conn.query_one_raw(Statement::from_string(backend, sql)).await.unwrap().unwrap();
        tables.push((name, row.try_get::<i64>("", "n").unwrap() > 0));
    }
    tables.sort();
    tables
}

async fn rows_of(app: &TestApp, table: &str, user: &str) -> i64 {
    let conn = app.db.connection();
    let backend = conn.get_database_backend();
    let sql = format!("SELECT count(*) AS n FROM \"{table}\" WHERE user_id = '{user}'");
    let row = conn.query_one_raw(Statement::from_string(backend, sql)).await.unwrap().unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn export(app: &TestApp, user: &str) -> String {
    let answer = app.get("/export", user).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.headers["content-type"], "application/x-ndjson");
    answer.text
}

async fn import(app: &TestApp, user: &str, body: impl Into<String>) -> Answer {
    let request = app
        .request(reqwest::Method::POST, "/import", user)
        .header("content-type", "application/x-ndjson")
        .body(body.into());
    Answer::read(request.send().await.unwrap()).await
}

async fn erase_empties_every_user_table_of_the_caller_only(backend: Backend) {
    with_app(backend, async |app| {
        populate(app, "alice").await;
        populate(app, "bob").await;
        // Session items are indexed after their append: index both users' now, so that the
        // background indexer changes no count between the two looks below.
        for user in ["alice", "bob"] {
            assert!(app.db.search().entry_count(user).await.unwrap() > 0);
            // One more thread item each, which on PostgreSQL waits in `search_queue` (with the
            // background idle between the looks), so erasure is seen to empty the queue too.
            let item = json!({"id": "msg_queued", "thread_id": "thr_1", "type": "user_message",
                              "created_at": "2025-10-06T12:00:05Z", "attachments": [],
                              "content": [{"type": "input_text", "text": "still queued"}],
                              "inference_options": {}});
            let added = app.post("/threads/thr_1/items", user, &item.to_string()).await;
            assert_eq!(added.status, 201, "{}", added.text);
        }
        let tables = catalogue(app).await;
        let mut before = Vec::new();
        for (table, has_user) in &tables {
            if NOT_USER_DATA.contains(&table.as_str()) {
                continue;
            }
            assert!(
                has_user,
                "table {table} has no user_id column: user data must carry one (so erasure, \
                 export and copy find it), or list the table in NOT_USER_DATA"
            );
            let (alice, bob) =
                (rows_of(app, table, "alice").await, rows_of(app, table, "bob").await);
            assert!(
                alice > 0,
                "populate() gives alice no row in {table}: extend it, so that this test checks \
                 that DELETE /me/data empties the table"
            );
            before.push((table.clone(), bob));
        }
        assert!(before.len() >= 9, "every table was found: {tables:?}");

        for _ in 0..2 {
            let answer = app.delete("/me/data", "alice").await;
            assert_eq!((answer.status, answer.text.as_str()), (204, ""), "idempotent");
        }
        for (table, bob) in before {
            assert_eq!(rows_of(app, &table, "alice").await, 0, "alice's rows left in {table}");
            assert_eq!(rows_of(app, &table, "bob").await, bob, "bob's rows of {table} changed");
        }
        assert_eq!(export(app, "alice").await, "");
        assert!(!export(app, "bob").await.is_empty());
        // The search index went with the texts it indexes, and bob's still finds his.
        let hits = |answer: Answer| answer.json()["data"].as_array().map_or(0, Vec::len);
        assert_eq!(hits(app.get("/search?q=first&include_inactive=true", "alice").await), 0);
        assert!(hits(app.get("/search?q=first&include_inactive=true", "bob").await) > 0);
        if matches!(backend, Backend::Sqlite) {
            // Fails unless the full-text index matches `search_entries` row for row.
            let check = "INSERT INTO search_fts (search_fts) VALUES ('integrity-check')";
            let conn = app.db.connection();
            let statement = Statement::from_string(conn.get_database_backend(), check);
            conn.execute_raw(statement).await.expect("the full-text index is consistent");
        }
        app.get("/attachments/atc_1/content", "alice").await.assert_error(404, "not_found");
        assert_eq!(app.get("/attachments/atc_1/content", "bob").await.status, 200);
    })
    .await;
}

async fn export_erase_import_gives_back_the_same_records(backend: Backend) {
    with_app(backend, async |app| {
        populate(app, "alice").await;
        // More items than one export page holds.
        let items: Vec<String> =
            (0..450).map(|n| format!(r#"{{"n": {n}, "t": "x\ny"}}"#)).collect();
        let body = format!(r#"{{"items": [{}]}}"#, items.join(","));
        assert_eq!(app.post("/sessions/c1/items", "alice", &body).await.status, 200);
        let items_before = app.get("/sessions/c1/items", "alice").await.text;
        assert!(items_before.contains(ODD_ITEM), "{items_before:.300}");
        let chat_before = app.get("/chats/c1", "alice").await.text;
        let gone_before = app.get("/chats/gone", "alice").await.json();
        let memory_before = memory_answers(app, "alice").await;
        assert!(memory_before[2].1.contains(r#""position_base":2"#), "{:?}", memory_before[2]);

        let exported = export(app, "alice").await;
        let kinds: Vec<String> = exported
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["kind"].as_str().unwrap().to_owned()
            })
            .collect();
        for kind in [
            "chat",
            "session_item",
            "idempotency_key",
            "session_branch",
            "session_branch_item",
            "turn_usage",
            "thread",
            "thread_item",
            "feedback",
            "attachment",
            "attachment_content",
        ] {
            assert!(kinds.iter().any(|k| k == kind), "no {kind} record in the export");
        }
        assert_eq!(kinds.iter().filter(|k| *k == "session_item").count(), 453 + 4);
        // Chats, items, a key, branches, branch items, usage, then the ChatKit records.
        assert_eq!(exported.lines().count(), 3 + 457 + 1 + 2 + 2 + 2 + 1 + 2 + 1 + 1 + 1);
        let mem = exported.lines().find(|line| line.contains(r#""chat_id":"mem""#)).unwrap();
        assert!(mem.contains(r#""position_base":2"#), "{mem}");

        assert_eq!(app.delete("/me/data", "alice").await.status, 204);
        assert_eq!(export(app, "alice").await, "");
        let answer = import(app, "alice", exported.clone()).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.json(), json!({"imported": exported.lines().count()}));

        assert_eq!(export(app, "alice").await, exported, "byte-identical export");
        assert_eq!(app.get("/sessions/c1/items", "alice").await.text, items_before);
        assert_eq!(app.get("/chats/c1", "alice").await.text, chat_before);
        assert_eq!(app.get("/chats/gone", "alice").await.json(), gone_before);
        assert_eq!(memory_answers(app, "alice").await, memory_before, "memory routes");
        let tagged = app.get("/chats?tag=%C3%89t%C3%A9", "alice").await.json();
        assert_eq!(tagged["data"][0]["chat_id"], "c1", "the tags filter again");
        let content = app.get("/attachments/atc_1/content", "alice").await;
        assert_eq!(content.status, 200);
        // The idempotency key came back: a retry of the batch adds nothing.
        let retry = app
            .request(reqwest::Method::POST, "/sessions/c1/items", "alice")
            .header("content-type", "application/json")
            .header("idempotency-key", "batch-1")
            .body(r#"{"items": [{"role":"assistant","content":"hello"}]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(retry.status(), 200);
        assert_eq!(app.chat_row("alice", "c1").await.unwrap().item_count, 453);

        // Importing the same again replaces, and changes nothing.
        assert_eq!(import(app, "alice", exported.clone()).await.status, 200);
        assert_eq!(export(app, "alice").await, exported, "a repeated import changes nothing");
        let gone = app.chat_row("alice", "gone").await.unwrap();
        assert!(!gone.is_active && gone.deleted_at.is_some(), "the soft delete's time came back");
    })
    .await;
}

async fn a_bad_line_is_a_400_naming_it_and_keeps_nothing(backend: Backend) {
    with_app(backend, async |app| {
        populate(app, "alice").await;
        let exported = export(app, "alice").await;
        let lines: Vec<&str> = exported.lines().collect();
        let with_line = |index: usize, bad: &str| {
            let mut lines = lines.clone();
            lines.insert(index, bad);
            lines.join("\n")
        };
        let cases = [
            (with_line(2, "not json"), "line 3"),
            (with_line(0, r#"{"kind": "spaceship"}"#), "line 1"),
            (with_line(1, r#"{"chat_id": "c9"}"#), "line 2"),
            (
                with_line(3, r#"{"kind":"session_item","chat_id":"nope","position":1,"created_at":"2025-01-01T00:00:00Z","data":"{}"}"#),
                "line 4",
            ),
            (
                with_line(3, r#"{"kind":"session_item","chat_id":"c1","position":7,"created_at":"2025-01-01T00:00:00Z","data":"{}"}"#),
                "line 4",
            ),
            (
                with_line(3, r#"{"kind":"session_item","chat_id":"c1","position":3,"created_at":"2025-01-01T00:00:00Z","data":"[1]"}"#),
                "line 4",
            ),
            (
                with_line(lines.len(), r#"{"kind":"chat","chat_id":"c9","title":null,"is_active":true,"deleted_at":null,"created_at":"yesterday","updated_at":"2025-01-01T00:00:00Z","metadata":"{}","tags":[]}"#),
                &format!("line {}", lines.len() + 1),
            ),
            (
                with_line(lines.len(), r#"{"kind":"thread_item","thread_id":"thr_none","data":"{\"id\":\"m\",\"type\":\"x\",\"created_at\":\"2025-01-01T00:00:00\"}"}"#),
                &format!("line {}", lines.len() + 1),
            ),
            (
                with_line(lines.len(), r#"{"kind":"attachment_content","attachment_id":"atc_1","mime_type":"text/plain","created_at":"2025-01-01T00:00:00Z","content":"%%%"}"#),
                &format!("line {}", lines.len() + 1),
            ),
        ];
        // Agent memory: each bad record comes after all of a good file, parents included.
        let at = "2025-01-01T00:00:00Z";
        let branch = |id: &str, base: i64, fork: i64| {
            json!({"kind": "session_branch", "chat_id": "mem", "branch_id": id,
                "position_base": base, "fork_position": fork, "revision": 1, "deleted": false,
                "created_at": at, "updated_at": at})
            .to_string()
        };
        let branch_item = |id: &str, position: i64, data: &str| {
            json!({"kind": "session_branch_item", "chat_id": "mem", "branch_id": id,
                "position": position, "created_at": at, "data": data})
            .to_string()
        };
        let usage = |id: &str, tokens: i64, details: Option<&str>| {
            json!({"kind": "turn_usage", "chat_id": "mem", "branch_id": id, "turn": 1,
                "requests": 1, "input_tokens": tokens, "output_tokens": 0, "total_tokens": 0,
                "input_tokens_details": details, "output_tokens_details": null,
                "created_at": at})
            .to_string()
        };
        let last = format!("line {}", lines.len() + 1);
        let memory_cases = [
            branch("main", 2, 2),
            branch("far", 2, 99),
            branch("before", 0, 3),
            branch_item("alt", 99, "{}"),
            branch_item("old", 3, "{}"),
            branch_item("none", 5, "{}"),
            branch_item("alt", 7, "[1]"),
            usage("none", 1, None),
            usage("main", -1, None),
            usage("alt", 1, Some("[1]")),
        ];
        let cases = cases.into_iter().chain(
            memory_cases.iter().map(|bad| (with_line(lines.len(), bad), last.as_str())),
        );
        for (body, line) in cases {
            let answer = import(app, "bob", body).await;
            answer.assert_error(400, "invalid_request");
            let message = answer.json()["error"]["message"].as_str().unwrap().to_owned();
            assert!(message.starts_with(&format!("{line}:")), "{line}: {message}");
            assert_eq!(export(app, "bob").await, "", "nothing of the bad import was kept");
        }
        // Nor does a bad line undo what is already there.
        let answer = import(app, "alice", with_line(2, "{")).await;
        answer.assert_error(400, "invalid_request");
        assert_eq!(export(app, "alice").await, exported);

        // Not NDJSON: 415, and nothing kept.
        let answer = app.post("/import", "bob", &exported).await;
        answer.assert_error(415, "unsupported_media_type");
        assert_eq!(export(app, "bob").await, "");
    })
    .await;
}

async fn an_import_over_its_limit_is_a_413_and_keeps_nothing(backend: Backend) {
    let limited = |settings: &mut chatstore::settings::Settings| settings.import.max_bytes = 4096;
    with_app_configured(backend, limited, async |app| {
        let chat = r#"{"kind":"chat","chat_id":"c1","title":null,"is_active":true,"deleted_at":null,"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","metadata":"{}","tags":[]}"#;
        let item = r#"{"kind":"session_item","chat_id":"c1","position":POS,"created_at":"2025-01-01T00:00:00Z","data":"{\"x\":1}"}"#;
        let mut body = format!("{chat}\n");
        for position in 1..=60 {
            body.push_str(&item.replace("POS", &position.to_string()));
            body.push('\n');
        }
        assert!(body.len() > 4096);
        import(app, "alice", body).await.assert_error(413, "payload_too_large");
        assert_eq!(export(app, "alice").await, "");
        assert!(app.chat_row("alice", "c1").await.is_none());
        // Under the limit, with CRLF line ends and blank lines, it imports.
        let small = format!("{chat}\r\n\r\n{}\r\n", item.replace("POS", "1"));
        let answer = import(app, "alice", small).await;
        assert_eq!((answer.status, answer.json()), (200, json!({"imported": 2})));
    })
    .await;
}

async fn data_routes_are_the_callers_own(backend: Backend) {
    with_app(backend, async |app| {
        populate(app, "alice").await;
        let alices = export(app, "alice").await;
        assert_eq!(export(app, "bob").await, "", "bob sees nothing of alice's");
        // Records name no user: an import lands in the caller's namespace, whatever a line
        // claims.
        let claimed =
            alices.replacen("{\"kind\":\"chat\",", "{\"kind\":\"chat\",\"user_id\":\"alice\",", 1);
        assert_eq!(import(app, "bob", claimed).await.status, 200);
        assert_eq!(export(app, "bob").await, alices, "bob has his own copy");
        // Bob erasing his copy leaves alice's alone.
        assert_eq!(app.delete("/me/data", "bob").await.status, 204);
        assert_eq!(export(app, "alice").await, alices);
        assert_eq!(app.get("/chats/c1", "alice").await.status, 200);
        app.get("/chats/c1", "bob").await.assert_error(404, "not_found");

        for (method, path) in [
            (reqwest::Method::GET, "/export"),
            (reqwest::Method::POST, "/import"),
            (reqwest::Method::DELETE, "/me/data"),
        ] {
            let answer =
                Answer::read(app.client.request(method, app.url(path)).send().await.unwrap()).await;
            answer.assert_error(401, "unauthorized");
        }
        assert_eq!(export(app, "alice").await, alices, "nothing changed");
    })
    .await;
}

/// Sets a column of every row of `table` matching `condition` to `days` ago.
async fn backdate(app: &TestApp, table: &str, column: &str, days: i64, condition: &str) {
    let at = chrono::Utc::now() - chrono::Duration::days(days);
    let conn = app.db.connection();
    let backend = conn.get_database_backend();
    let placeholder = if backend == DbBackend::Postgres { "$1" } else { "?" };
    let sql = format!("UPDATE {table} SET {column} = {placeholder} WHERE {condition}");
    conn.execute_raw(Statement::from_sql_and_values(backend, sql, [at.into()])).await.unwrap();
}

async fn retention_deletes_what_is_old_enough_and_counts_it(backend: Backend) {
    let retention = |settings: &mut chatstore::settings::Settings| {
        settings.retention.idle_days = Some(30);
        settings.retention.inactive_days = Some(7);
        settings.retention.sweep_interval_secs = 1;
        settings.retention.batch_size = 2;
    };
    with_app_configured(backend, retention, async |app| {
        // Stop the sweeper from racing the set-up: everything is new until backdated.
        for user in ["alice", "bob"] {
            for n in 0..3 {
                let body = format!(r#"{{"chat_id": "idle{n}", "conversation": [{{"a": 1}}]}}"#);
                assert_eq!(app.post("/chats", user, &body).await.status, 201);
                let body = format!(r#"{{"chat_id": "deleted{n}"}}"#);
                assert_eq!(app.post("/chats", user, &body).await.status, 201);
                assert_eq!(app.delete(&format!("/chats/deleted{n}"), user).await.status, 204);
            }
            assert_eq!(app.post("/chats", user, r#"{"chat_id": "fresh"}"#).await.status, 201);
            assert_eq!(app.post("/chats", user, r#"{"chat_id": "recently_deleted"}"#).await.status, 201);
            assert_eq!(app.delete("/chats/recently_deleted", user).await.status, 204);
            for thread in ["thr_old", "thr_new", "thr_old_with_new_item"] {
                let body = json!({"id": thread, "created_at": "2025-10-06T12:00:00", "status": {"type": "active"}});
                let path = format!("/threads/{thread}");
                assert_eq!(app.send(reqwest::Method::PUT, &path, user, Some(&body.to_string())).await.status, 200);
            }
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
            let item = json!({"id": "m1", "thread_id": "thr_old_with_new_item", "created_at": now, "type": "user_message",
                "content": [], "attachments": [], "inference_options": {}});
            assert_eq!(app.post("/threads/thr_old_with_new_item/items", user, &item.to_string()).await.status, 201);
        }
        // Soft-deleted 10 days ago, but updated yesterday (a title change): gone, counted
        // from the soft delete. Idle 40 days: gone. A restore forgets the soft delete.
        backdate(app, "chats", "deleted_at", 10, "chat_id LIKE 'deleted%'").await;
        backdate(app, "chats", "updated_at", 1, "chat_id LIKE 'deleted%'").await;
        backdate(app, "chats", "updated_at", 40, "chat_id LIKE 'idle%'").await;
        backdate(app, "chats", "deleted_at", 3, "chat_id = 'recently_deleted'").await;
        backdate(app, "chatkit_threads", "updated_at", 40, "thread_id LIKE 'thr_old%'").await;

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let left: Vec<String> = app.all_chat_rows().await.into_iter().map(|c| format!("{}/{}", c.user_id, c.chat_id)).collect();
            if left.len() == 4 {
                let mut left = left;
                left.sort();
                assert_eq!(left, ["alice/fresh", "alice/recently_deleted", "bob/fresh", "bob/recently_deleted"]);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the sweeper did not delete: {left:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let threads = app.get("/threads?limit=100", "alice").await.json();
            let ids: Vec<&str> = threads["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
            if ids.len() == 2 {
                let mut ids = ids;
                ids.sort_unstable();
                assert_eq!(ids, ["thr_new", "thr_old_with_new_item"]);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "threads left: {ids:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Their items went with them.
        assert_eq!(rows_of(app, "conversation_items", "alice").await, 0);
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        for expected in [
            r#"chatstore_retention_deleted_total{kind="chat",rule="inactive_days"} 6"#,
            r#"chatstore_retention_deleted_total{kind="chat",rule="idle_days"} 6"#,
            r#"chatstore_retention_deleted_total{kind="thread",rule="idle_days"} 2"#,
        ] {
            assert!(metrics.contains(expected), "{expected} in:\n{metrics}");
        }
    })
    .await;
}

async fn a_restore_forgets_the_soft_delete(backend: Backend) {
    with_app(backend, async |app| {
        assert_eq!(app.post("/chats", "alice", r#"{"chat_id": "c1"}"#).await.status, 201);
        assert!(app.chat_row("alice", "c1").await.unwrap().deleted_at.is_none());
        assert_eq!(app.delete("/chats/c1", "alice").await.status, 204);
        let first = app.chat_row("alice", "c1").await.unwrap().deleted_at.unwrap();
        // A second soft delete keeps the first one's time.
        let put = app
            .send(reqwest::Method::PUT, "/chats/c1", "alice", Some(r#"{"is_active": false}"#))
            .await;
        assert_eq!(put.status, 200);
        assert_eq!(app.chat_row("alice", "c1").await.unwrap().deleted_at, Some(first));
        let put = app
            .send(reqwest::Method::PUT, "/chats/c1", "alice", Some(r#"{"is_active": true}"#))
            .await;
        assert_eq!(put.status, 200);
        assert_eq!(app.chat_row("alice", "c1").await.unwrap().deleted_at, None);
    })
    .await;
}

/// An erasure waits for a search's catch-up that holds the user's chats, so what the catch-up
/// indexed is deleted with the rest: no text of an erased user stays in the search index.
#[tokio::test]
async fn an_erasure_leaves_nothing_a_concurrent_catch_up_indexed() {
    with_app(Backend::Postgres, async |app| {
        let body = json!({"items": [{"role": "user", "content": "a secret plan"}]}).to_string();
        assert_eq!(app.post("/sessions/s/items", "alice", &body).await.status, 200);
        // What a catch-up does (see `search_index`): it locks the user's chats, then indexes
        // their items in a later statement, which sees them until an erasure commits.
        let catch_up = app.db.connection().begin().await.unwrap();
        catch_up
            .execute_unprepared("SELECT 1 FROM chats WHERE user_id = 'alice' FOR UPDATE")
            .await
            .unwrap();
        let index_then_commit = async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            catch_up
                .execute_unprepared(
                    "INSERT INTO search_entries \
                         (user_id, kind, conversation_id, item_key, body, created_at) \
                     SELECT user_id, 'session', chat_id, position::text, body, created_at \
                     FROM session_item_search_texts WHERE user_id = 'alice' AND body <> ''",
                )
                .await
                .unwrap();
            catch_up.commit().await.unwrap();
        };
        let (erased, ()) = tokio::join!(app.delete("/me/data", "alice"), index_then_commit);
        assert_eq!(erased.status, 204, "{}", erased.text);
        assert_eq!(rows_of(app, "search_entries", "alice").await, 0);
        assert_eq!(rows_of(app, "conversation_items", "alice").await, 0);
    })
    .await;
}

dual_backend_tests!(
    erase_empties_every_user_table_of_the_caller_only,
    export_erase_import_gives_back_the_same_records,
    a_bad_line_is_a_400_naming_it_and_keeps_nothing,
    an_import_over_its_limit_is_a_413_and_keeps_nothing,
    data_routes_are_the_callers_own,
    retention_deletes_what_is_old_enough_and_counts_it,
    a_restore_forgets_the_soft_delete,
);
