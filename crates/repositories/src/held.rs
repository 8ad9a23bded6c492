//! PostgreSQL connections held out of the pool between the statements of agent turns.
//!
//! sqlx checks every connection given back to its pool with a round trip to the server (a
//! `Sync`, answered by `ReadyForQuery`), in a task of its own. A session read or append is a
//! single statement, so that check doubled the round trips of the hot path and woke a
//! PostgreSQL backend for nothing (BENCHMARKS.md says what it cost). Those statements borrow
//! from this small stock instead. A connection goes back on it only after its statement
//! completed, when it is idle and in a known state; anything else (an error, a request
//! cancelled mid-statement) drops it into the pool, whose check then decides whether to keep
//! it.
//!
//! The stock holds at most half the pool, so other requests always find connections there.
//! A connection that sat on it longer than the pool's idle check, or left the pool more than
//! `max_lifetime` ago, goes back to the pool rather than being reused, so those two settings
//! keep their meaning.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, PgConnection, PgPool, Postgres};

/// A pooled connection unused this long is checked before use (see `db.rs`); one held that
/// long goes back to the pool, which checks it.
pub(crate) const IDLE_CHECK: Duration = Duration::from_secs(30);

/// The stock of held connections of one database.
#[derive(Debug)]
pub(crate) struct HeldConnections {
    stock: Mutex<Stock>,
    capacity: usize,
    max_lifetime: Duration,
}

#[derive(Debug, Default)]
struct Stock {
    connections: Vec<Held>,
    /// Set when the pool closes: from then on every connection goes back to it, or closing
    /// would wait for them forever.
    closed: bool,
}

/// A connection borrowed from the stock (or from the pool when the stock was empty).
#[derive(Debug)]
struct Held {
    connection: PoolConnection<Postgres>,
    /// When it left the pool.
    taken: Instant,
    /// When it was last put on the stock.
    shelved: Instant,
}

impl HeldConnections {
    pub(crate) fn new(max_connections: u32, max_lifetime: Duration) -> Self {
        Self {
            stock: Mutex::new(Stock::default()),
            capacity: (max_connections / 2) as usize,
            max_lifetime,
        }
    }

    /// Runs `statement` on a held connection (or one from `pool` when none is at hand), and
    /// keeps the connection for the next statement if this one succeeded.
    pub(crate) async fn run<T>(
        &self,
        pool: &PgPool,
        statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut held = self.take(pool).await?;
        let outcome = statement(&mut held.connection).await;
        if outcome.is_ok() {
            self.give_back(held);
        }
        outcome
    }

    /// The most recently used held connection that is still fresh, else one from `pool`.
    async fn take(&self, pool: &PgPool) -> Result<Held, sqlx::Error> {
        loop {
            let held = self.lock().connections.pop();
            match held {
                Some(held) if held.shelved.elapsed() < IDLE_CHECK => return Ok(held),
                // Dropped outside the lock: back to the pool, which checks it.
                Some(stale) => drop(stale),
                None => break,
            }
        }
        let connection = pool.acquire().await?;
        let now = Instant::now();
        Ok(Held { connection, taken: now, shelved: now })
    }

    /// Takes `held` back after a statement that completed without error. Past the stock's
    /// capacity or its lifetime, it goes back to the pool instead.
    fn give_back(&self, mut held: Held) {
        if held.taken.elapsed() >= self.max_lifetime {
            return;
        }
        let mut stock = self.lock();
        if !stock.closed && stock.connections.len() < self.capacity {
            held.shelved = Instant::now();
            stock.connections.push(held);
        }
    }

    /// Gives every held connection back to the pool, now and from now on: closing the pool
    /// waits for them.
    pub(crate) fn release_all(&self) {
        let released = {
            let mut stock = self.lock();
            stock.closed = true;
            std::mem::take(&mut stock.connections)
        };
        drop(released);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stock> {
        // The stock stays consistent whatever panicked while holding the lock.
        self.stock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for HeldConnections {
    fn drop(&mut self) {
        // A pooled connection returns itself through a spawned task, which needs a runtime.
        // Without one the process is ending, and the connections can simply be let go.
        if tokio::runtime::Handle::try_current().is_err() {
            for held in std::mem::take(&mut self.lock().connections) {
                std::mem::forget(held);
            }
        }
    }
}
