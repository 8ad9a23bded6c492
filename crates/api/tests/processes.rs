//! Several `chatstore serve` processes on one PostgreSQL database, as in a deployment with
//! more than one instance.

// A panic in a test is a failed test with a clear location.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chatstore_tests::{Backend, TestDatabase, test_settings};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_chatstore");

/// A server process; killed if the test fails before stopping it.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(database_url: &str) -> Self {
        let mut child = Command::new(BINARY)
            .arg("serve")
            .env("APP_ENV", "test")
            .env("DATABASE_URL", database_url)
            .env("PORT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chatstore serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let address = line.trim().strip_prefix("chatstore listening on ").unwrap_or("").to_owned();
        assert!(!address.is_empty(), "no address line: {line:?}");
        Self { child, address }
    }

    fn stop(mut self) {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "clean exit: {status:?}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not stop");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
                    move || Server::start(&url)
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
