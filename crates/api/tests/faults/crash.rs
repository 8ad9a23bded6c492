//! chatstore killed with SIGKILL while large batches are in flight: after a restart there are
//! only whole batches, and every acknowledged one is there.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatstore_tests::{Backend, ServerProcess, TestDatabase, with_database};

use crate::{batch_items, binary, client, post_items, read_items};

const WRITERS: usize = 8;
/// Items per batch, each about 1 KB: a batch of about 200 KB takes a while to store.
const BATCH: usize = 200;

/// Posts batches until the server goes away; records the acknowledged ones. Returns how many
/// requests were cut off (sent, never answered).
async fn writer(address: String, writer: usize, acknowledged: Arc<Mutex<Vec<String>>>) -> usize {
    let client = client();
    for batch in 0.. {
        let id = format!("w{writer}-b{batch}");
        match post_items(&client, &address, "big", &batch_items(&id, BATCH, 1000), None).await {
            Ok(answer) => {
                assert_eq!(answer.status, 200, "batch {id}: {}", answer.text);
                acknowledged.lock().unwrap().push(id);
            }
            // Refused: the server was already gone when this one was sent.
            Err(err) if err.is_connect() => return 0,
            // The server was killed with this request in flight.
            Err(_) => return 1,
        }
    }
    0
}

async fn a_killed_server_leaves_only_whole_batches(backend: Backend) {
    with_database(backend, killed_mid_batch).await;
}

async fn killed_mid_batch(database: &TestDatabase) {
    let server = ServerProcess::start(binary(), &database.url, &[]);
    let address = server.address.clone();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(address.clone(), w, acknowledged.clone())))
        .collect();
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 2 * WRITERS {
        assert!(started.elapsed() < Duration::from_secs(60), "too few batches went through");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every writer has a batch in flight now (it sends the next as soon as one is answered).
    tokio::task::spawn_blocking(move || server.kill()).await.unwrap();
    let mut cut_off = 0;
    for task in writers {
        cut_off += task.await.unwrap();
    }
    assert!(cut_off > 0, "no request was in flight when the server was killed");

    let server = ServerProcess::start(binary(), &database.url, &[]);
    let stored: Vec<String> =
        crate::whole_batches(&read_items(&client(), &server.address, "big").await, BATCH);
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "a batch is stored twice");
    for id in acknowledged.lock().unwrap().iter() {
        assert!(unique.contains(id), "acknowledged batch {id} is lost");
    }
    server.stop();
}

chatstore_tests::dual_backend_tests!(a_killed_server_leaves_only_whole_batches);
