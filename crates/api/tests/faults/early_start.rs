//! chatstore started before its database: it listens at once, answers 503 until the database
//! is open, then serves without a restart, and gives up only after the startup timeout.

use std::time::{Duration, Instant};

use chatstore_tests::{Answer, PgCluster, ServerProcess, free_port};
use serde_json::json;

use crate::{assert_unavailable, binary, client, post_items, read_items, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_before_its_database_it_answers_503_then_serves_without_a_restart() {
    let Some(cluster) = PgCluster::init(&[]) else { return };
    // The cluster exists but is not running yet.
    let server = ServerProcess::spawn(
        binary(),
        &cluster.url("postgres", "postgres"),
        &[("APP__DATABASE__STARTUP_TIMEOUT_SECS", "60")],
    );
    let client = client();
    let address = server.address.clone();

    let health = Answer::read(client.get(format!("{address}/healthz")).send().await.unwrap()).await;
    assert_eq!((health.status, health.json()), (200, json!({"status": "ok"})));
    let ready = Answer::read(client.get(format!("{address}/readyz")).send().await.unwrap()).await;
    assert_unavailable(&ready);
    // The documentation needs no database.
    let openapi =
        Answer::read(client.get(format!("{address}/openapi.json")).send().await.unwrap()).await;
    assert_eq!(openapi.status, 200);
    assert!(openapi.json()["paths"]["/healthz"].is_object(), "{}", openapi.text);
    let write = post_items(&client, &address, "early", &[json!({"n": 1})], None).await.unwrap();
    assert_unavailable(&write);
    let chats = Answer::read(
        client.get(format!("{address}/chats")).bearer_auth(token("alice")).send().await.unwrap(),
    )
    .await;
    assert_unavailable(&chats);

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start();
        cluster
    })
    .await
    .unwrap();
    // The same process, never restarted (wait_ready fails if it exited), now serves.
    let mut server = server;
    server.wait_ready(Duration::from_secs(30));
    let write = post_items(&client, &address, "early", &[json!({"n": 1})], None).await.unwrap();
    assert_eq!(write.status, 200, "{}", write.text);
    assert_eq!(read_items(&client, &address, "early").await, vec![json!({"n": 1})]);
    server.stop();
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_database_it_answers_503_then_exits_after_the_startup_timeout() {
    const TIMEOUT_SECS: u64 = 3;
    // Nothing listens on this port: every connection attempt is refused.
    let url = format!("postgres://app:hunter2@127.0.0.1:{}/chat", free_port());
    let started = Instant::now();
    let mut server = ServerProcess::spawn(
        binary(),
        &url,
        &[("APP__DATABASE__STARTUP_TIMEOUT_SECS", &TIMEOUT_SECS.to_string())],
    );
    let client = client();
    let health =
        Answer::read(client.get(format!("{}/healthz", server.address)).send().await.unwrap()).await;
    assert_eq!(health.status, 200);
    let ready =
        Answer::read(client.get(format!("{}/readyz", server.address)).send().await.unwrap()).await;
    assert_unavailable(&ready);

    let exit = tokio::task::spawn_blocking(move || {
        let exit = server.wait_for_exit(Duration::from_secs(TIMEOUT_SECS + 15));
        (exit, server)
    })
    .await
    .unwrap();
    let (exit, server) = exit;
    let log = server.log();
    let exit = exit.unwrap_or_else(|| panic!("still running after the startup timeout:\n{log}"));
    assert!(!exit.success(), "{log}");
    assert!(
        started.elapsed() >= Duration::from_secs(TIMEOUT_SECS),
        "gave up after {:?}, before the {TIMEOUT_SECS} s startup timeout:\n{log}",
        started.elapsed()
    );
    assert!(
        log.contains("cannot connect to the database at postgres://app:***@127.0.0.1"),
        "{log}"
    );
    assert!(!log.contains("hunter2"), "the password leaked:\n{log}");
}
