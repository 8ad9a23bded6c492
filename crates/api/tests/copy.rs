//! `chatstore copy FROM TO`, run as operators run it: the binary, between real databases.

// A panic in a test is a failed test with a clear location.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use chatstore_tests::{Backend, TestApp, TestDatabase};
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_chatstore");

/// Gives `user` chats, items, a soft delete, a thread with items and feedback, an
/// attachment with bytes, and a pruned session with a branch and usage.
async fn populate(app: &TestApp, user: &str, n: usize) {
    let odd = r#"{ "z" : 1,"a":"\u0000 é 😀","n": 12345678901234567890.50}"#;
    let chat = format!(
        r#"{{"chat_id": "c{n}", "title": "Chat {n}", "conversation": [{odd}, {{"k": {n}}}],
            "metadata": {{ "m" : {n} }}, "tags": ["t{n}", "shared"]}}"#
    );
    assert_eq!(app.post("/chats", user, &chat).await.status, 201);
    assert_eq!(app.post("/chats", user, r#"{"chat_id": "old"}"#).await.status, 201);
    assert_eq!(app.delete("/chats/old", user).await.status, 204);
    let thread = json!({"id": "thr", "created_at": "2025-10-06T12:00:00.5", "title": user,
        "status": {"type": "active"}, "metadata": {}});
    let put = app.send(reqwest::Method::PUT, "/threads/thr", user, Some(&thread.to_string())).await;
    assert_eq!(put.status, 200);
    for id in ["b", "a"] {
        // Equal created_at: insertion order must survive the copies.
        let item = json!({"id": id, "thread_id": "thr", "created_at": "2025-10-06T12:00:01",
            "type": "assistant_message", "content": []});
        assert_eq!(app.post("/threads/thr/items", user, &item.to_string()).await.status, 201);
    }
    let feedback = json!({"type": "items.feedback", "params": {"thread_id": "thr", "item_ids": ["a"], "kind": "negative"}});
    assert_eq!(app.post("/chatkit", user, &feedback.to_string()).await.status, 200);
    let attachment = json!({"id": "atc", "type": "file", "name": "f.bin", "mime_type": "application/octet-stream"});
    let saved = app
        .send(reqwest::Method::PUT, "/attachments/atc", user, Some(&attachment.to_string()))
        .await;
    assert!(matches!(saved.status, 200 | 201), "{}", saved.text);
    let upload = app
        .request(reqwest::Method::PUT, "/attachments/atc/content", user)
        .header("content-type", "application/octet-stream")
        .body((0..=255u8).cycle().take(3000 + n).collect::<Vec<u8>>())
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 204);

    // Agent memory: a pruned session (its positions start at 2), a branch with an item of
    // its own, and usage.
    let items = json!({"items": [{"role": "user", "content": "u1"}, {"role": "assistant",
        "content": "a1"}, {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]});
    assert_eq!(app.post("/sessions/mem/items", user, &items.to_string()).await.status, 200);
    let snapshot = app.get("/sessions/mem/snapshot?limit=1", user).await.json();
    let prune = json!({"revision": snapshot["revision"], "after_position": 4, "prune_leading": 1,
        "items": []});
    assert_eq!(app.post("/sessions/mem/replace", user, &prune.to_string()).await.status, 200);
    let usage =
        json!({"requests": 1, "input_tokens": n, "output_tokens": 1, "total_tokens": n + 1});
    let usage = usage.to_string();
    let put = app.send(reqwest::Method::PUT, "/sessions/mem/usage", user, Some(&usage)).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let fork = json!({"branch_id": "alt", "turn": 1}).to_string();
    assert_eq!(app.post("/sessions/mem/branches", user, &fork).await.status, 201);
    let own = json!({"items": [{"role": "user", "content": format!("alt {n}")}]}).to_string();
    assert_eq!(app.post("/sessions/mem/branches/alt/items", user, &own).await.status, 200);
}

/// Every user's export, in user order.
async fn exports(database: &TestDatabase, users: &[&str]) -> Vec<String> {
    let mut app = TestApp::spawn(database, |_| {}).await;
    let mut all = Vec::new();
    for user in users {
        let answer = app.get("/export", user).await;
        assert_eq!(answer.status, 200);
        all.push(answer.text);
    }
    app.stop().await.unwrap();
    all
}

fn copy(from: &TestDatabase, to: &TestDatabase) -> String {
    let output = Command::new(BINARY)
        .args(["copy", &from.url, &to.url])
        .env_remove("APP_ENV")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run chatstore copy");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "copy failed: {stdout}\n{stderr}");
    // Not a terminal: no progress bar.
    assert!(!stderr.contains("users ("), "{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_to_sqlite_keeps_every_export_and_resumes() {
    let users = ["alice", "bob", "carol"];
    let source = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let Some(middle) = TestDatabase::create(Backend::Postgres).await else {
        source.drop_database().await;
        return; // PostgreSQL unreachable outside CI: the harness has said so loudly.
    };
    let target = TestDatabase::create(Backend::Sqlite).await.unwrap();
    {
        let mut app = TestApp::spawn(&source, |_| {}).await;
        for (n, user) in users.iter().enumerate() {
            populate(&app, user, n).await;
        }
        app.stop().await.unwrap();
    }
    let original = exports(&source, &users).await;
    let lines: Vec<usize> = original.iter().map(|export| export.lines().count()).collect();
    assert_eq!(lines, [17, 17, 17]);

    let first = copy(&source, &middle);
    assert!(first.contains("copied 3 users (51 records); 0 were already copied"), "{first}");
    let second = copy(&middle, &target);
    assert!(second.contains("copied 3 users"), "{second}");
    assert_eq!(exports(&middle, &users).await, original, "SQLite -> PostgreSQL");
    assert_eq!(exports(&target, &users).await, original, "-> SQLite again");

    // An interrupted copy: one user missing on the target, another half there. A second run
    // copies those two and leaves the third as it is.
    {
        let mut app = TestApp::spawn(&target, |_| {}).await;
        assert_eq!(app.delete("/me/data", "bob").await.status, 204);
        assert_eq!(
            app.send(reqwest::Method::DELETE, "/threads/thr", "carol", None).await.status,
            204
        );
        app.stop().await.unwrap();
    }
    let resumed = copy(&middle, &target);
    assert!(resumed.contains("copied 2 users (34 records); 1 were already copied"), "{resumed}");
    assert_eq!(exports(&target, &users).await, original);

    for database in [source, middle, target] {
        database.drop_database().await;
    }
}

#[test]
fn copy_refuses_a_url_that_is_no_database() {
    let output = Command::new(BINARY)
        .args(["copy", "mysql://nowhere/db", "sqlite://x.db?mode=rwc"])
        .env_remove("APP_ENV")
        .output()
        .expect("run chatstore copy");
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("cannot open FROM"), "{stderr}");
}
