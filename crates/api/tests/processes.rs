//! Several `chatstore serve` processes on one PostgreSQL database, as in a deployment with
//! more than one instance.

// A panic in a test is a failed test with a clear location.
#![allow(clippy::unwrap_used)]

use chatstore_tests::{Backend, ServerProcess, TestDatabase, test_settings};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_chatstore");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_interleave_or_lose_batches() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let url = database.url.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        // Started together: both migrate the new database on start, taking turns.
        let starting: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn({
                    let url = url.clone();
                    move || ServerProcess::start(std::path::Path::new(BINARY), &url, &[])
                })
            })
            .collect();
        starting.into_iter().map(|handle| handle.join().unwrap()).collect::<Vec<_>>()
    })
    .await;
    let servers = match outcome {
        Ok(servers) => servers,
        Err(panic) => {
            database.drop_database().await;
            std::panic::resume_unwind(panic.into_panic());
        }
    };

    let result = tokio::spawn({
        let addresses: Vec<String> = servers.iter().map(|s| s.address.clone()).collect();
        let token = chatstore::auth::mint_token(&test_settings(&database.url, |_| {}).auth, "alice").unwrap();
        async move {
            let client = reqwest::Client::new();
            const BATCHES: usize = 64;
            const SIZE: usize = 5;
            let mut tasks = Vec::new();
            for batch in 0..BATCHES {
                let request = client
                    .post(format!("{}/sessions/busy/items", addresses[batch % 2]))
                    .bearer_auth(&token)
                    .json(&json!({ "items": (0..SIZE).map(|i| json!({"batch": batch, "i": i})).collect::<Vec<_>>() }));
                tasks.push(tokio::spawn(async move { request.send().await.unwrap().status().as_u16() }));
            }
            for task in tasks {
                assert_eq!(task.await.unwrap(), 200);
            }
            let body: Value = client
                .get(format!("{}/sessions/busy/items", addresses[0]))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let items = body["items"].as_array().unwrap().clone();
            assert_eq!(items.len(), BATCHES * SIZE, "every item present once");
            let mut seen = std::collections::HashSet::new();
            for batch in items.chunks(SIZE) {
                let id = batch[0]["batch"].as_u64().unwrap();
                assert!(seen.insert(id), "batch {id} twice");
                for (i, item) in batch.iter().enumerate() {
                    assert_eq!(item, &json!({"batch": id, "i": i}), "contiguous and in order");
                }
            }
        }
    })
    .await;
    for server in servers {
        server.stop();
    }
    database.drop_database().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}
