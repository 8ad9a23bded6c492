//! Faults that a deployment meets, with `chatstore serve` as a real process: its database
//! stopping, going away before it starts or filling its disk, the server itself being killed,
//! and TLS to PostgreSQL that must be verified. Tests that stop or reconfigure PostgreSQL run
//! a cluster of their own ([`PgCluster`]), never the shared one.

// A panic in a test is a failed test with a clear location.
#![allow(clippy::unwrap_used)]

mod crash;
mod disk_full;
mod early_start;
mod outage;
mod tls;

use std::path::Path;
use std::time::Duration;

use chatstore_tests::{Answer, test_settings};
use serde_json::Value;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_chatstore"))
}

/// A token the test servers (`APP_ENV=test`) accept for `user`.
fn token(user: &str) -> String {
    let settings = test_settings("sqlite::memory:", |_| {});
    chatstore::auth::mint_token(&settings.auth, user).unwrap()
}

/// A client that gives up on an answer after 10 s: a hang fails the test instead of stalling it.
fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// Appends `items` to `session` as `user`, with `Idempotency-Key: key` when given.
async fn post_items(
    client: &reqwest::Client,
    address: &str,
    session: &str,
    items: &[Value],
    key: Option<&str>,
) -> reqwest::Result<Answer> {
    let mut request = client
        .post(format!("{address}/sessions/{session}/items"))
        .bearer_auth(token("alice"))
        .json(&serde_json::json!({ "items": items }));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    Ok(Answer::read(request.send().await?).await)
}

/// Every item of `session`, oldest first.
async fn read_items(client: &reqwest::Client, address: &str, session: &str) -> Vec<Value> {
    let answer = Answer::read(
        client
            .get(format!("{address}/sessions/{session}/items"))
            .bearer_auth(token("alice"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()["items"].as_array().unwrap().clone()
}

/// Asserts a 503 `unavailable` error body with `Retry-After`.
#[track_caller]
fn assert_unavailable(answer: &Answer) {
    answer.assert_error(503, "unavailable");
    assert!(answer.header("retry-after").is_some(), "a 503 without Retry-After: {answer:?}");
}

/// Splits `items` into the batches they were sent as (`{"batch": id, "i": 0..size}`), checking
/// that every batch is whole and contiguous, and returns the batch ids in stored order.
#[track_caller]
fn whole_batches(items: &[Value], size: usize) -> Vec<String> {
    assert_eq!(items.len() % size, 0, "a partial batch: {} items", items.len());
    items
        .chunks(size)
        .map(|batch| {
            let id = batch[0]["batch"].as_str().unwrap().to_owned();
            for (i, item) in batch.iter().enumerate() {
                assert_eq!(item["batch"], id.as_str(), "batch {id} is interleaved or cut");
                assert_eq!(item["i"], i, "batch {id} is out of order");
            }
            id
        })
        .collect()
}

/// The items of one batch: `size` objects with a `pad` of `pad` bytes each.
fn batch_items(id: &str, size: usize, pad: usize) -> Vec<Value> {
    (0..size).map(|i| serde_json::json!({ "batch": id, "i": i, "pad": "x".repeat(pad) })).collect()
}
