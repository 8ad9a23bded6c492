//! PostgreSQL stopped with `immediate` (as in a crash) under a 32-client write load, then
//! restarted: no acknowledged write is lost or doubled, the server answers 503 with
//! `Retry-After` meanwhile, and it writes again without a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chatstore_tests::{Answer, PgCluster, ServerProcess, StopMode};
use serde_json::{Value, json};

use crate::{assert_unavailable, binary, client, post_items, read_items};

const WRITERS: usize = 32;
/// The writers share this many sessions, so that their batches contend.
const SESSIONS: usize = 4;
const BATCH: usize = 3;

/// What the writers saw, counted as they go.
#[derive(Debug, Default)]
struct Tally {
    acknowledged: AtomicUsize,
    unavailable: AtomicUsize,
}

/// Writes batches `0, 1, 2...` until `stop`, each retried with its `Idempotency-Key` until it
/// is acknowledged; returns how many were. Any answer but 200 or a 503 with `Retry-After`
/// (a 500, a dropped connection, a hang) fails the test.
async fn writer(address: String, writer: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> usize {
    let client = client();
    let session = format!("load-{}", writer % SESSIONS);
    let mut batch = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("w{writer}-b{batch}");
        let items = crate::batch_items(&id, BATCH, 16);
        let started = Instant::now();
        loop {
            let answer = post_items(&client, &address, &session, &items, Some(&id))
                .await
                .unwrap_or_else(|err| panic!("batch {id}: no answer: {err}"));
            if answer.status == 200 {
                assert_eq!(answer.json(), json!({"added": BATCH}), "batch {id}");
                break;
            }
            assert_unavailable(&answer);
            tally.unavailable.fetch_add(1, Ordering::Relaxed);
            assert!(started.elapsed() < Duration::from_secs(60), "batch {id} never went through");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tally.acknowledged.fetch_add(1, Ordering::Relaxed);
        batch += 1;
    }
    batch
}

/// Waits until the writers have had `count` more batches acknowledged.
async fn acknowledged_more(tally: &Tally, count: usize, limit: Duration) {
    let target = tally.acknowledged.load(Ordering::Relaxed) + count;
    let started = Instant::now();
    while tally.acknowledged.load(Ordering::Relaxed) < target {
        assert!(started.elapsed() < limit, "the writers made no progress in {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_stop_under_32_writers_loses_no_acknowledged_write() {
    let Some(cluster) = PgCluster::init(&[]) else { return };
    cluster.start();
    cluster.execute(&["CREATE DATABASE chat"]).await;
    let server = ServerProcess::start(
        binary(),
        &cluster.url("postgres", "chat"),
        &[
            ("APP__DATABASE__MAX_CONNECTIONS", "16"),
            ("APP__DATABASE__CONNECT_TIMEOUT_SECS", "2"),
            ("APP__DATABASE__ACQUIRE_TIMEOUT_SECS", "2"),
        ],
    );
    let address = server.address.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(address.clone(), w, stop.clone(), tally.clone())))
        .collect();

    acknowledged_more(&tally, 200, Duration::from_secs(30)).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop(StopMode::Immediate);
        cluster
    })
    .await
    .unwrap();

    // While the database is down: 503 with Retry-After, fast, never a 500 or a hang.
    let client = client();
    let down_since = Instant::now();
    let unavailable_before = tally.unavailable.load(Ordering::Relaxed);
    while down_since.elapsed() < Duration::from_millis(1500) {
        let asked = Instant::now();
        let ready =
            Answer::read(client.get(format!("{address}/readyz")).send().await.unwrap()).await;
        assert_unavailable(&ready);
        assert!(asked.elapsed() < Duration::from_secs(5), "/readyz took {:?}", asked.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        tally.unavailable.load(Ordering::Relaxed) > unavailable_before,
        "no writer was told 503 while the database was down"
    );

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start();
        cluster
    })
    .await
    .unwrap();
    // Writes succeed again, with the same server process.
    acknowledged_more(&tally, 2 * WRITERS, Duration::from_secs(30)).await;
    let ready = Answer::read(client.get(format!("{address}/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    stop.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for task in writers {
        written.push(task.await.unwrap());
    }

    // Every acknowledged batch is there exactly once, whole, and each writer's in order.
    let mut seen = vec![0; WRITERS];
    for session in 0..SESSIONS {
        let items: Vec<Value> = read_items(&client, &address, &format!("load-{session}")).await;
        for id in crate::whole_batches(&items, BATCH) {
            let (w, b) = id.trim_start_matches('w').split_once("-b").unwrap();
            let (w, b): (usize, usize) = (w.parse().unwrap(), b.parse().unwrap());
            assert_eq!(w % SESSIONS, session, "batch {id} in the wrong session");
            assert_eq!(b, seen[w], "writer {w}: batch {b} where {} was due", seen[w]);
            seen[w] += 1;
        }
    }
    assert_eq!(seen, written, "stored batches per writer against acknowledged ones");
    server.stop();
    drop(cluster);
}
