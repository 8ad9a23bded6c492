//! The operations routes, startup, readiness and shutdown.

use std::time::Duration;

use chatstore::startup::Application;
use chatstore_tests::{
    Answer, Backend, TestApp, TestDatabase, admin_url, dual_backend_tests, test_settings, with_app,
    with_database, within,
};
use sea_orm::{ConnectionTrait, Database};

async fn healthz_and_readyz_answer_without_a_token(backend: Backend) {
    with_app(backend, async |app| {
        for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
            let answer = Answer::read(app.client.get(app.url(path)).send().await.unwrap()).await;
            assert_eq!(answer.status, 200, "{path}: {}", answer.text);
            assert_eq!(answer.json(), serde_json::json!({ "status": status }));
            assert!(answer.header("x-request-id").is_some_and(|id| !id.is_empty()));
        }
        // A request id given by the caller is kept, so logs can be correlated end to end.
        let response = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", "trace-me-42")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    })
    .await;
}

async fn metrics_count_requests_by_route_template(backend: Backend) {
    with_app(backend, async |app| {
        app.get("/sessions/some-id/items", "alice").await;
        app.get("/sessions/other-id/items", "alice").await;
        let answer = Answer::read(app.client.get(app.url("/metrics")).send().await.unwrap()).await;
        assert_eq!(answer.status, 200);
        let line = answer
            .text
            .lines()
            .find(|line| {
                line.starts_with("chatstore_http_requests_total{")
                    && line.contains("route=\"/sessions/{session_id}/items\"")
                    && line.contains("status=\"200\"")
            })
            .unwrap_or_else(|| panic!("no request counter in:\n{}", answer.text));
        assert!(line.ends_with(" 2"), "both requests counted under one template: {line}");
        assert!(!answer.text.contains("some-id"), "ids never become label values");
        assert!(answer.text.contains("chatstore_db_pool_connections"));
    })
    .await;
}

async fn openapi_documents_every_route_and_docs_page_is_served(backend: Backend) {
    with_app(backend, async |app| {
        let answer =
            Answer::read(app.client.get(app.url("/openapi.json")).send().await.unwrap()).await;
        assert_eq!(answer.status, 200);
        let doc = answer.json();
        let paths = doc["paths"].as_object().expect("paths");
        for (path, method) in [
            ("/healthz", "get"),
            ("/readyz", "get"),
            ("/metrics", "get"),
            ("/sessions/{session_id}/items", "get"),
            ("/sessions/{session_id}/items", "post"),
            ("/sessions/{session_id}/items", "delete"),
            ("/sessions/{session_id}/pop", "post"),
            ("/chats", "get"),
            ("/chats", "post"),
            ("/chats/count", "get"),
            ("/chats/{chat_id}", "get"),
            ("/chats/{chat_id}", "put"),
            ("/chats/{chat_id}", "delete"),
            ("/chatkit", "post"),
            ("/chat/run", "post"),
            ("/export", "get"),
            ("/import", "post"),
            ("/me/data", "delete"),
            ("/search", "get"),
        ] {
            assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path}");
        }
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        let mut references = Vec::new();
        collect_references(&doc, &mut references);
        assert!(!references.is_empty());
        for reference in references {
            let target = reference.strip_prefix('#').and_then(|pointer| doc.pointer(pointer));
            assert!(target.is_some(), "dangling reference {reference}");
        }

        let page = app.client.get(app.url("/docs/")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = page.text().await.unwrap();
        // The page's assets are served by this server, not fetched from a CDN.
        assert!(!html.contains("cdn."), "docs must work offline");
        let asset = app.client.get(app.url("/docs/swagger-ui-bundle.js")).send().await.unwrap();
        assert_eq!(asset.status(), 200);
    })
    .await;
}

/// Every `$ref` in `value`.
fn collect_references(value: &serde_json::Value, references: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, value) in object {
                match value {
                    serde_json::Value::String(target) if key == "$ref" => {
                        references.push(target.clone());
                    }
                    _ => collect_references(value, references),
                }
            }
        }
        serde_json::Value::Array(values) => {
            values.iter().for_each(|value| collect_references(value, references));
        }
        _ => {}
    }
}

async fn unknown_routes_and_methods_answer_error_json(backend: Backend) {
    with_app(backend, async |app| {
        app.get("/no/such/route", "alice").await.assert_error(404, "not_found");
        let answer = app.send(reqwest::Method::PUT, "/sessions/s/items", "alice", None).await;
        assert_eq!(answer.status, 405);
        assert_eq!(answer.json()["error"]["code"], "invalid_request");
    })
    .await;
}

/// The server stops taking new connections on shutdown but finishes a request it is reading.
async fn shutdown_finishes_in_flight_requests(backend: Backend) {
    with_database(backend, async |database| {
        let mut app = TestApp::spawn(database, |_| {}).await;
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(2);
        let body = reqwest::Body::wrap_stream(tokio_stream_from(receiver));
        let request = app
            .request(reqwest::Method::POST, "/sessions/slow/items", "alice")
            .header("content-type", "application/json")
            .body(body)
            .send();
        let in_flight = tokio::spawn(request);
        sender.send(Ok("{\"items\":[{\"part\":".to_owned())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        app.begin_shutdown();
        tokio::time::sleep(Duration::from_millis(200)).await;
        sender.send(Ok("1}]}".to_owned())).await.unwrap();
        drop(sender);

        let response = within(Duration::from_secs(10), in_flight).await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "{\"added\":1}");
        within(Duration::from_secs(10), app.stop()).await.expect("clean stop");
        // The server is gone, and what it accepted is stored.
        assert!(reqwest::get(app.url("/healthz")).await.is_err());
        let db = database.connect().await;
        assert_eq!(
            db.sessions().latest_items("alice", "slow", 10).await.unwrap(),
            ["{\"part\":1}"]
        );
        db.close().await;
    })
    .await;
}

fn tokio_stream_from<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

dual_backend_tests!(
    healthz_and_readyz_answer_without_a_token,
    metrics_count_requests_by_route_template,
    openapi_documents_every_route_and_docs_page_is_served,
    unknown_routes_and_methods_answer_error_json,
    shutdown_finishes_in_flight_requests,
);

/// PostgreSQL only: an embedded SQLite file cannot become unreachable under a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_going_away_and_coming_back() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let name = database.pg_name().expect("a PostgreSQL database").to_owned();
    let mut app = TestApp::spawn(&database, |settings| {
        settings.database.acquire_timeout_secs = 1;
        settings.database.connect_timeout_secs = 1;
    })
    .await;
    let admin = Database::connect(admin_url()).await.expect("admin connection");

    let outcome = async {
        assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);

        admin.execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)")).await.unwrap();
        let down = within(
            Duration::from_secs(10),
            Answer::read(app.client.get(app.url("/readyz")).send().await.unwrap()),
        )
        .await;
        down.assert_error(503, "unavailable");
        assert_eq!(down.header("retry-after"), Some("1"));
        // Every route answers 503 (never 500) while the database is away.
        app.get("/sessions/s/items?limit=5", "alice").await.assert_error(503, "unavailable");
        assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);

        admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
        let mut ready = false;
        for _ in 0..50 {
            if app.client.get(app.url("/readyz")).send().await.unwrap().status() == 200 {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "readiness recovers once the database is back");
    };
    let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    let _ = app.stop().await;
    let _ = admin.close().await;
    database.drop_database().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A database that never answers stops the server within the configured time, with a message
/// that names the database but not its password; until then it answers, with 503.
#[tokio::test]
async fn startup_gives_up_on_an_unreachable_database_without_leaking_the_password() {
    let settings =
        test_settings("postgres://app:hunter2@127.0.0.1:9/chat?sslmode=disable", |settings| {
            settings.database.startup_timeout_secs = 1;
            settings.database.connect_timeout_secs = 1;
        });
    let started = std::time::Instant::now();
    let application = Application::build(settings).await.expect("it binds without a database");
    let address = format!("http://{}", application.local_addr());
    let server = tokio::spawn(application.run_until(std::future::pending()));
    let client = reqwest::Client::new();
    let ready = Answer::read(client.get(format!("{address}/readyz")).send().await.unwrap()).await;
    ready.assert_error(503, "unavailable");
    let error =
        within(Duration::from_secs(15), server).await.unwrap().expect_err("no database, no server");
    assert!(started.elapsed() < Duration::from_secs(10));
    let message = format!("{error:#}");
    assert!(message.contains("cannot connect to the database"), "{message}");
    assert!(message.contains("127.0.0.1:9"), "{message}");
    assert!(!message.contains("hunter2"), "the password leaked: {message}");
}

/// `sslmode=require` connects over TLS (rustls) to a server that offers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_urls_with_sslmode_require_connect_over_tls() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let tls_url = format!("{}?sslmode=require", database.url);
    let settings = test_settings(&tls_url, |_| {});
    let db = repositories::Db::connect(&settings.database).await.expect("TLS connection");
    let row = db
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            db.connection().get_database_backend(),
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .unwrap()
        .expect("a row");
    assert!(row.try_get::<bool>("", "ssl").unwrap(), "the connection is encrypted");
    db.close().await;
    database.drop_database().await;
}

/// SQLite only: `database.sqlite_synchronous` reaches every connection of the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_synchronous_setting_reaches_the_connections() {
    let Some(database) = TestDatabase::create(Backend::Sqlite).await else { return };
    // PRAGMA synchronous answers 1 for NORMAL and 2 for FULL.
    for (setting, expected) in
        [(repositories::SqliteSync::Normal, 1), (repositories::SqliteSync::Full, 2)]
    {
        let settings = test_settings(&database.url, |settings| {
            settings.database.sqlite_synchronous = setting;
        });
        let db = repositories::Db::connect(&settings.database).await.expect("connect");
        let row = db
            .connection()
            .query_one_raw(sea_orm::Statement::from_string(
                db.connection().get_database_backend(),
                "PRAGMA synchronous",
            ))
            .await
            .unwrap()
            .expect("a row");
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), expected, "{setting:?}");
        db.close().await;
    }
    database.drop_database().await;
}

/// SQLite only: a turn's append leaves checkpointing the log to the server's background task,
/// which then moves all of it into the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_leave_checkpoints_to_the_background() {
    let Some(database) = TestDatabase::create(Backend::Sqlite).await else { return };
    let db = database.connect().await;
    db.migrate().await.unwrap();
    // Each append writes several pages (the chat, the item and its overflow pages, the
    // indexes): 400 of them log well past SQLite's default threshold of 1,000 pages, at
    // which an append would have checkpointed and the log started over.
    let item = serde_json::json!({ "role": "user", "content": "x".repeat(6_000) }).to_string();
    for _ in 0..400 {
        db.sessions().add_items("alice", "s1", &[item.as_str()], None).await.unwrap();
    }
    let (logged, checkpointed) = db.checkpoint_wal().await.unwrap();
    assert!(logged > 1_000, "the appends checkpointed: {logged} pages in the log");
    assert_eq!(checkpointed, logged, "a background checkpoint copies the whole log");
    assert_eq!(db.sessions().item_count("alice", "s1").await.unwrap(), 400);
    db.close().await;
    database.drop_database().await;
}
