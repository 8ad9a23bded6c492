//! Regressions found in review: each test fails on the code before its fix.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use chatstore_tests::{Answer, Backend, dual_backend_tests, with_app, with_app_configured};
use serde_json::json;

fn thread(id: &str) -> String {
    json!({"id": id, "created_at": "2025-10-06T12:00:00", "title": null}).to_string()
}

/// Item writes and thread deletes take their locks in the same order: no deadlock, no 500.
async fn item_writes_and_thread_deletes_never_deadlock(backend: Backend) {
    with_app(backend, async |app| {
        let mut tasks = Vec::new();
        for writer in 0..6 {
            let requests: Vec<_> = (0..40)
                .map(|n| {
                    let item = json!({"id": format!("msg_{writer}_{n}"), "created_at": "2025-10-06T12:00:00", "type": "end_of_turn"});
                    app.request(reqwest::Method::PUT, &format!("/threads/thr_d/items/msg_{writer}_{n}"), "alice")
                        .header("content-type", "application/json")
                        .body(item.to_string())
                })
                .collect();
            tasks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for request in requests {
                    statuses.push(request.send().await.unwrap().status().as_u16());
                }
                statuses
            }));
        }
        for _ in 0..3 {
            let puts: Vec<_> = (0..40)
                .map(|_| {
                    (
                        app.request(reqwest::Method::PUT, "/threads/thr_d", "alice").header("content-type", "application/json").body(thread("thr_d")),
                        app.request(reqwest::Method::DELETE, "/threads/thr_d", "alice"),
                    )
                })
                .collect();
            tasks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for (put, delete) in puts {
                    statuses.push(put.send().await.unwrap().status().as_u16());
                    statuses.push(delete.send().await.unwrap().status().as_u16());
                }
                statuses
            }));
        }
        for task in tasks {
            for status in task.await.unwrap() {
                assert!(matches!(status, 200 | 201 | 204 | 404), "no 5xx under contention: {status}");
            }
        }
    })
    .await;
}

/// A client that stops reading a long history loses the read; the pool is not held hostage.
async fn stalled_full_reads_give_their_connection_back(backend: Backend) {
    with_app_configured(
        backend,
        |settings| {
            settings.server.stalled_read_timeout_secs = 1;
            settings.database.max_connections = 4;
        },
        async |app| {
            // Large enough that the socket buffers fill long before the client would read it.
            let item = format!("{{\"text\":\"{}\"}}", "x".repeat(40_000));
            let batch = vec![item.as_str(); 200];
            for _ in 0..3 {
                app.db.sessions().add_items("alice", "long", &batch, None).await.unwrap();
            }
            let address = app.address.trim_start_matches("http://").to_owned();
            let mut stalled = Vec::new();
            for _ in 0..3 {
                let mut socket = TcpStream::connect(&address).unwrap();
                write!(
                    socket,
                    "GET /sessions/long/items HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
                    app.token("alice")
                )
                .unwrap();
                stalled.push(socket); // never read
            }
            tokio::time::sleep(Duration::from_secs(4)).await;
            // Everything else still works, including another full read.
            assert_eq!(app.get("/chats/count", "alice").await.status, 200);
            let full = app.get("/sessions/long/items", "alice").await;
            assert_eq!(full.status, 200);
            assert_eq!(full.json()["items"].as_array().unwrap().len(), 600);
            if backend == Backend::Postgres {
                let stuck = sea_orm::ConnectionTrait::query_one_raw(
                    app.db.connection(),
                    sea_orm::Statement::from_string(
                        sea_orm::DbBackend::Postgres,
                        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                         AND state = 'idle in transaction'",
                    ),
                )
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap();
                assert_eq!(stuck, 0, "no transaction left open by a stalled read");
            }
            drop(stalled);
        },
    )
    .await;
}

/// An upload is refused on its headers: the server does not wait for the body of a stranger.
async fn unauthenticated_uploads_are_refused_before_their_body(backend: Backend) {
    with_app(backend, async |app| {
        let address = app.address.trim_start_matches("http://");
        let mut socket = TcpStream::connect(address).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        write!(socket, "PUT /attachments/atc_1/content HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 10000000\r\n\r\n").unwrap();
        let mut response = [0u8; 64];
        let read = socket.read(&mut response).expect("an answer without the body being sent");
        assert!(String::from_utf8_lossy(&response[..read]).starts_with("HTTP/1.1 401"));
    })
    .await;
}

/// Any string is an HTTP method; metric labels only take the known ones.
async fn unknown_methods_do_not_grow_the_metrics(backend: Backend) {
    with_app(backend, async |app| {
        for n in 0..5 {
            let method = reqwest::Method::from_bytes(format!("FOO{n}").as_bytes()).unwrap();
            app.client.request(method, app.url("/healthz")).send().await.unwrap();
        }
        let metrics =
            app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(!metrics.contains("FOO"), "{metrics}");
        assert!(metrics.contains("method=\"other\""));
    })
    .await;
}

/// Ids and cursors with NUL, too many feedback items, a soft-deleted cursor, a token whose sub
/// is not storable: all clear 4xx, never 500.
async fn more_bad_input_is_a_clear_4xx(backend: Backend) {
    with_app(backend, async |app| {
        app.get("/chats?after=a%00b", "alice").await.assert_error(400, "invalid_request");
        // Through the server: a second writer of a SQLite file, such as this test's own
        // connection, can meet the server's writes and fail with `database is locked`.
        let saved = app.send(reqwest::Method::PUT, "/threads/thr_1", "alice", Some(&thread("thr_1"))).await;
        assert!(matches!(saved.status, 200 | 201), "{}", saved.text);
        let feedback = |thread_id: &str, ids: Vec<String>| {
            json!({"type": "items.feedback", "params": {"thread_id": thread_id, "item_ids": ids, "kind": "positive"}}).to_string()
        };
        app.post("/chatkit", "alice", &feedback("a\u{0}b", vec!["x".into()])).await.assert_error(400, "invalid_request");
        app.post("/chatkit", "alice", &feedback("thr_1", vec!["x\u{0}y".into()])).await.assert_error(400, "invalid_request");
        app.post("/chatkit", "alice", &feedback("thr_1", (0..101).map(|n| format!("m{n}")).collect())).await.assert_error(400, "invalid_request");
        app.post("/chatkit", "alice", &feedback("thr_1", vec![])).await.assert_error(400, "invalid_request");

        // A soft-deleted chat is not an element of the active list.
        for id in ["c1", "c2", "c3"] {
            app.post("/chats", "alice", &json!({"chat_id": id}).to_string()).await;
        }
        app.delete("/chats/c3", "alice").await;
        app.get("/chats?after=c3", "alice").await.assert_error(400, "invalid_request");
        assert_eq!(app.get("/chats?after=c3&include_inactive=true", "alice").await.status, 200);

        // A valid token whose sub cannot be stored, on the routes that verify tokens themselves.
        let token = chatstore::auth::mint_token(&app.settings.auth, "a\u{0}b").unwrap();
        let answer = Answer::read(app.client.get(app.url("/attachments/atc_1/content")).bearer_auth(token).send().await.unwrap()).await;
        answer.assert_error(401, "unauthorized");
    })
    .await;
}

/// ChatKit objects that would break later reads are refused when written.
async fn chatkit_objects_that_cannot_be_read_back_are_refused(backend: Backend) {
    with_app(backend, async |app| {
        // Through the server: a second writer of a SQLite file, such as this test's own
        // connection, can meet the server's writes and fail with `database is locked`.
        let saved = app
            .send(reqwest::Method::PUT, "/threads/thr_ok", "alice", Some(&thread("thr_ok")))
            .await;
        assert!(matches!(saved.status, 200 | 201), "{}", saved.text);
        let surrogate =
            r#"{"id":"thr_bad","created_at":"2025-10-06T12:00:00","metadata":{"x":"\ud800"}}"#;
        app.send(reqwest::Method::PUT, "/threads/thr_bad", "alice", Some(surrogate))
            .await
            .assert_error(400, "invalid_request");
        for created_at in ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"] {
            let body = json!({"id": "thr_edge", "created_at": created_at}).to_string();
            app.send(reqwest::Method::PUT, "/threads/thr_edge", "alice", Some(&body))
                .await
                .assert_error(400, "invalid_request");
        }
        // The user's thread list still answers.
        let list = app.post("/chatkit", "alice", r#"{"type":"threads.list","params":{}}"#).await;
        assert_eq!(list.status, 200, "{}", list.text);
        assert_eq!(list.json()["data"].as_array().unwrap().len(), 1);
    })
    .await;
}

dual_backend_tests!(
    item_writes_and_thread_deletes_never_deadlock,
    stalled_full_reads_give_their_connection_back,
    unauthenticated_uploads_are_refused_before_their_body,
    unknown_methods_do_not_grow_the_metrics,
    more_bad_input_is_a_clear_4xx,
    chatkit_objects_that_cannot_be_read_back_are_refused,
);
