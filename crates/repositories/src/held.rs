//! Connections held out of the pool between the statements of agent turns.
//!
//! sqlx checks every connection given back to its pool: on PostgreSQL with a round trip to the
//! server (a `Sync`, answered by `ReadyForQuery`), on SQLite with a hand-off to the thread
//! that owns the connection, each in a task of its own. A session read or append is a single
//! statement (on SQLite, a single script), so that check doubled the round trips or hand-offs
//! of the hot path (BENCHMARKS.md says what it cost). Those statements borrow from this small
//! stock instead. A connection goes back on it only after its statement succeeded, when it is
//! idle and in a known state. One whose statement failed or was cancelled midway is closed:
//! a SQLite script cut short can leave its transaction open, which the pool's check would not
//! notice.
//!
//! The stock holds at most half the pool, so other requests always find connections there.
//! When the pool has nothing idle and can open no more (requests may be queued on it), a
//! finished connection goes back to the pool instead, which hands it to the longest waiter:
//! otherwise requests arriving while the stock had a connection would overtake the queued
//! ones, and at 64 clients on a pool of 32 some ChatKit turns waited seconds (p99 about 2 s).
//! A connection that sat on it longer than the pool's idle check, or left the pool more than
//! `max_lifetime` ago, goes back to the pool rather than being reused, so those two settings
//! keep their meaning.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, Database, Pool};

/// A pooled connection unused this long is checked before use (see `db.rs`); one held that
/// long goes back to the pool, which checks it.
pub(crate) const IDLE_CHECK: Duration = Duration::from_secs(30);

/// The stock of held connections of one database.
#[derive(Debug)]
pub(crate) struct HeldConnections<DB: Database> {
    pool: Pool<DB>,
    stock: Mutex<Stock<DB>>,
    capacity: usize,
    max_connections: u32,
    max_lifetime: Duration,
}

#[derive(Debug)]
struct Stock<DB: Database> {
    connections: Vec<Held<DB>>,
    /// Set when the pool closes: from then on every connection goes back to it, or closing
    /// would wait for them forever.
    closed: bool,
}

/// A connection borrowed from the stock (or from the pool when the stock was empty).
#[derive(Debug)]
struct Held<DB: Database> {
    connection: PoolConnection<DB>,
    /// When it left the pool.
    taken: Instant,
    /// When it was last put on the stock.
    shelved: Instant,
}

/// A held connection in use. Dropped before [`InUse::finish`] (the statement failed, or the
/// request was cancelled while it ran), it closes its connection instead of returning it.
struct InUse<DB: Database>(Option<Held<DB>>);

impl<DB: Database> InUse<DB> {
    fn connection(&mut self) -> &mut DB::Connection {
        // Only `finish`, which consumes self, takes the connection out.
        &mut self.0.as_mut().expect("an InUse holds its connection until finished").connection
    }

    fn finish(mut self) -> Option<Held<DB>> {
        self.0.take()
    }
}

impl<DB: Database> Drop for InUse<DB> {
    fn drop(&mut self) {
        if let Some(held) = &mut self.0 {
            held.connection.close_on_drop();
        }
    }
}

impl<DB: Database> HeldConnections<DB> {
    pub(crate) fn new(pool: Pool<DB>, max_connections: u32, max_lifetime: Duration) -> Self {
        Self {
            pool,
            stock: Mutex::new(Stock { connections: Vec::new(), closed: false }),
            capacity: (max_connections / 2) as usize,
            max_connections,
            max_lifetime,
        }
    }

    /// Runs `statement` on a held connection (or one from the pool when none is at hand),
    /// and keeps the connection for the next statement if this one succeeded.
    pub(crate) async fn run<T>(
        &self,
        statement: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut in_use = InUse(Some(self.take().await?));
        let outcome = statement(in_use.connection()).await;
        if outcome.is_ok()
            && let Some(held) = in_use.finish()
        {
            self.give_back(held);
        }
        outcome
    }

    /// The most recently used held connection that is still fresh, else one from the pool.
    async fn take(&self) -> Result<Held<DB>, sqlx::Error> {
        loop {
            let held = self.lock().connections.pop();
            match held {
                Some(held) if held.shelved.elapsed() < IDLE_CHECK => return Ok(held),
                // Dropped outside the lock: back to the pool, which checks it.
                Some(stale) => drop(stale),
                None => break,
            }
        }
        let connection = self.pool.acquire().await?;
        let now = Instant::now();
        Ok(Held { connection, taken: now, shelved: now })
    }

    /// Takes `held` back after a statement that completed without error. Past the stock's
    /// capacity or its lifetime, it goes back to the pool instead.
    fn give_back(&self, mut held: Held<DB>) {
        if held.taken.elapsed() >= self.max_lifetime || self.pool_may_have_waiters() {
            return;
        }
        let mut stock = self.lock();
        if !stock.closed && stock.connections.len() < self.capacity {
            held.shelved = Instant::now();
            stock.connections.push(held);
        }
    }

    /// Whether requests may be queued on the pool: nothing idle in it, and no room to open
    /// another connection.
    fn pool_may_have_waiters(&self) -> bool {
        self.pool.num_idle() == 0 && self.pool.size() >= self.max_connections
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Stock<DB>> {
        // The stock stays consistent whatever panicked while holding the lock.
        self.stock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<DB: Database> Drop for HeldConnections<DB> {
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
