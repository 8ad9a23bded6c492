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
//! The stock has at most half the pool out at once (on its shelf or running a statement), so
//! other requests always find connections in the pool. Statements beyond that wait for a
//! connection of the stock, first come first served: a finished connection goes to the
//! longest waiter through the shelf. They used to take one from the pool instead, and give it
//! back there, paying the pool's check (a round trip) on every return: at 64 clients, more
//! clients than held connections, that was a third round trip for most statements, and 64
//! clients ran fewer turns than 16. (Before the queue was fair, requests arriving while the
//! stock had a connection overtook queued ones, and at 64 clients on a pool of 32 some ChatKit
//! turns waited seconds.) A connection that sat on the shelf longer than the pool's idle
//! check, or left the pool more than `max_lifetime` ago, goes back to the pool rather than
//! being reused, so those two settings keep their meaning.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, Database, Pool};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A pooled connection unused this long is checked before use (see `db.rs`); one held that
/// long goes back to the pool, which checks it.
pub(crate) const IDLE_CHECK: Duration = Duration::from_secs(30);

/// The stock of held connections of one database.
#[derive(Debug)]
pub(crate) struct HeldConnections<DB: Database> {
    pool: Pool<DB>,
    stock: Mutex<Stock<DB>>,
    /// A permit per connection the stock may have out, handed out in the order statements
    /// asked; `None` when the pool is too small to spare one (the statements then take their
    /// connections from the pool, and give them back there).
    out: Option<Semaphore>,
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

/// A held connection in use, with its permit (see [`HeldConnections::out`]). Dropped before
/// [`InUse::finish`] (the statement failed, or the request was cancelled while it ran), it
/// closes its connection instead of returning it, and the next statement in line opens
/// another.
struct InUse<'a, DB: Database> {
    held: Option<Held<DB>>,
    permit: Option<SemaphorePermit<'a>>,
}

impl<'a, DB: Database> InUse<'a, DB> {
    fn connection(&mut self) -> &mut DB::Connection {
        // Only `finish`, which consumes self, takes the connection out.
        &mut self.held.as_mut().expect("an InUse holds its connection until finished").connection
    }

    fn finish(mut self) -> (Option<Held<DB>>, Option<SemaphorePermit<'a>>) {
        (self.held.take(), self.permit.take())
    }
}

impl<DB: Database> Drop for InUse<'_, DB> {
    fn drop(&mut self) {
        if let Some(held) = &mut self.held {
            held.connection.close_on_drop();
        }
    }
}

impl<DB: Database> HeldConnections<DB> {
    pub(crate) fn new(pool: Pool<DB>, max_connections: u32, max_lifetime: Duration) -> Self {
        let capacity = (max_connections / 2) as usize;
        Self {
            pool,
            stock: Mutex::new(Stock { connections: Vec::new(), closed: false }),
            out: (capacity > 0).then(|| Semaphore::new(capacity)),
            max_lifetime,
        }
    }

    /// Runs `statement` on a held connection, waiting in line for one when the stock has all
    /// of its connections out, and keeps the connection for the next statement if this one
    /// succeeded.
    pub(crate) async fn run<T>(
        &self,
        statement: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut in_use = self.take().await?;
        let outcome = statement(in_use.connection()).await;
        if outcome.is_ok() {
            let (held, permit) = in_use.finish();
            if let Some(held) = held {
                self.give_back(held);
            }
            // After the shelving: the next in line finds the connection there.
            drop(permit);
        }
        outcome
    }

    /// Once it is this statement's turn, the most recently used held connection that is
    /// still fresh, else one from the pool.
    async fn take(&self) -> Result<InUse<'_, DB>, sqlx::Error> {
        // The wait in line and any wait on the pool after it share one deadline: as long as
        // the pool alone would wait for a connection, failing the same way.
        let deadline = tokio::time::Instant::now() + self.pool.options().get_acquire_timeout();
        let permit = match &self.out {
            Some(out) => Some(
                tokio::time::timeout_at(deadline, out.acquire())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)?
                    .map_err(|_| sqlx::Error::PoolClosed)?,
            ),
            None => None,
        };
        loop {
            let held = self.lock().connections.pop();
            match held {
                Some(held) if held.shelved.elapsed() < IDLE_CHECK => {
                    return Ok(InUse { held: Some(held), permit });
                }
                // Dropped outside the lock: back to the pool, which checks it.
                Some(stale) => drop(stale),
                None => break,
            }
        }
        let connection = tokio::time::timeout_at(deadline, self.pool.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let now = Instant::now();
        Ok(InUse { held: Some(Held { connection, taken: now, shelved: now }), permit })
    }

    /// Takes `held` back after a statement that completed without error, unless it is past
    /// its lifetime or the stock is closed: then it goes back to the pool.
    fn give_back(&self, mut held: Held<DB>) {
        if self.out.is_none() || held.taken.elapsed() >= self.max_lifetime {
            return;
        }
        let mut stock = self.lock();
        if !stock.closed {
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
        // Statements still in line would wait for connections that no longer come back.
        if let Some(out) = &self.out {
            out.close();
        }
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
