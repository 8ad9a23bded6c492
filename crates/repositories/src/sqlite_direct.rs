//! SQLite connections used on the request's own thread, for the two statements of an agent
//! turn: the read of a session's latest items and the append of a batch.
//!
//! Through sqlx, each SQLite statement is a command sent to the thread that owns the
//! connection, and its answer wakes the request's task again: two thread hand-offs per
//! statement, which cost more than SQLite spends on a turn's read or append (BENCHMARKS.md,
//! "The embedded SQLite build"). These two run here instead, as one synchronous call on a
//! connection of this module's own stock, opened with rusqlite on the same SQLite library
//! sqlx links and with the pool's settings (WAL, `synchronous`, foreign keys, busy timeout).
//!
//! Running them synchronously on a runtime thread is safe because each is one short call that
//! never waits long: a reader in WAL mode never waits for a writer, and a writer holds the
//! process's writer lock (see [`crate::Db`]) before it starts, so its `BEGIN IMMEDIATE` waits
//! only for another process writing the same file, up to the busy timeout. Nothing is held
//! across an `.await`, so a cancelled request never leaves a statement half-run: it is either
//! still waiting for the writer lock or already answered.
//!
//! A connection leaves the stock for one call and comes back after it, so no more are open
//! than threads ran calls at once. One that comes back inside a transaction (a failure after
//! `BEGIN` that rusqlite could not roll back) is closed instead of kept.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::{DbErr, RuntimeErr};

use crate::RepoError;
use crate::db::SqliteSync;

/// The log size (in pages) past which a turn's own commit checkpoints: ten times SQLite's
/// default, a safety net behind the server's background checkpoints.
const TURN_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Idle connections kept for reuse: more than the runtime's threads, which bound how many are
/// in use at once, on the machines chatstore runs on.
const STOCK_CAPACITY: usize = 16;

/// How to open one more connection to the database file.
#[derive(Debug)]
struct OpenSettings {
    path: PathBuf,
    read_only: bool,
    synchronous: SqliteSync,
    busy_timeout: Duration,
}

/// The stock of direct connections of one SQLite database.
#[derive(Debug)]
pub(crate) struct DirectConnections {
    open: OpenSettings,
    stock: Mutex<Stock>,
}

#[derive(Debug, Default)]
struct Stock {
    connections: Vec<Connection>,
    /// Set when the database closes: connections in use are closed when their call ends.
    closed: bool,
}

impl DirectConnections {
    /// The stock for the database at `url`, or `None` when the URL names something a second
    /// connection cannot open as the same database (an in-memory database, an immutable file,
    /// a custom VFS or a shared cache), or cannot be parsed (the pool reported that already).
    pub(crate) fn for_url(
        url: &str,
        synchronous: SqliteSync,
        busy_timeout: Duration,
    ) -> Option<Self> {
        // sqlx's reading of the URL gives the file name; the options are read here again,
        // as sqlx reads them, because sqlx keeps them to itself (and cannot write an
        // in-memory database's URL back out).
        let options = SqliteConnectOptions::from_str(url).ok()?;
        let (database, query) = url.split_once('?').unwrap_or((url, ""));
        let database = database.trim_start_matches("sqlite:").trim_start_matches("//");
        if database == ":memory:" {
            return None;
        }
        let mut read_only = false;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match (&*key, &*value) {
                ("mode", "ro") => read_only = true,
                ("mode", "rw" | "rwc") | ("cache", "private") | ("immutable", "false") => {}
                _ => return None,
            }
        }
        let path = options.get_filename().to_path_buf();
        Some(Self {
            open: OpenSettings { path, read_only, synchronous, busy_timeout },
            stock: Mutex::new(Stock::default()),
        })
    }

    /// Runs `call` on a connection of the stock (a new one when none is idle) and keeps the
    /// connection for the next call unless it was left inside a transaction.
    pub(crate) fn run<T>(
        &self,
        call: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, RepoError> {
        let idle = self.lock().connections.pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.open().map_err(|err| direct_error(&err))?,
        };
        let outcome = call(&mut connection);
        if connection.is_autocommit() {
            let mut stock = self.lock();
            if !stock.closed && stock.connections.len() < STOCK_CAPACITY {
                stock.connections.push(connection);
            }
        }
        outcome.map_err(|err| direct_error(&err))
    }

    /// Closes every idle connection, and from now on each one in use when its call ends.
    pub(crate) fn close(&self) {
        let idle = {
            let mut stock = self.lock();
            stock.closed = true;
            std::mem::take(&mut stock.connections)
        };
        drop(idle);
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let settings = &self.open;
        let access = if settings.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        // Never created here: the pool opened (and created) the file first. Each connection
        // is used by one thread at a time, so SQLite's own per-connection mutex is not needed.
        let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE;
        let connection = Connection::open_with_flags(&settings.path, flags)?;
        connection.busy_timeout(settings.busy_timeout)?;
        let synchronous = match settings.synchronous {
            SqliteSync::Normal => "NORMAL",
            SqliteSync::Full => "FULL",
        };
        // As the pool sets them (see `db.rs`); WAL is a property of the file, set by the pool
        // already, and asked again here so a file in another mode is not written another way.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", synchronous)?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        if !settings.read_only {
            // The turn's writer never checkpoints the log (the server does, in the background,
            // see [`DirectConnections::checkpoint`]): a checkpoint writes and syncs the file,
            // and paid by whichever append crossed the threshold it stalled that turn for
            // milliseconds. A far higher threshold remains, so the log stays bounded where
            // nothing checkpoints in the background (a bulk load through the repositories).
            connection.pragma_update(None, "wal_autocheckpoint", TURN_AUTOCHECKPOINT_PAGES)?;
        }
        Ok(connection)
    }

    /// Copies what the write-ahead log holds into the database file as far as readers allow,
    /// without waiting for anyone (`PRAGMA wal_checkpoint(PASSIVE)`): appends go on meanwhile.
    /// Blocks on file I/O; call it off the runtime's threads. Answers the log's size and how
    /// much of it is now in the file, in pages (both 0 on a read-only connection).
    pub(crate) fn checkpoint(&self) -> Result<(i64, i64), RepoError> {
        if self.open.read_only {
            return Ok((0, 0));
        }
        self.run(|connection| {
            connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get(1)?, row.get(2)?))
            })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stock> {
        // The stock stays consistent whatever panicked while holding the lock.
        self.stock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A rusqlite error as the same failure from sqlx would be reported: SQLite's "busy",
/// "locked" and "full" (and a file that cannot be opened) mean "retry later" (503), anything
/// else is a database error (500).
fn direct_error(err: &rusqlite::Error) -> RepoError {
    let transient = matches!(
        err.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
        )
    );
    let runtime = RuntimeErr::Internal(format!("sqlite: {err}"));
    if transient {
        RepoError::Unavailable(DbErr::Conn(runtime))
    } else {
        RepoError::Db(DbErr::Query(runtime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock_for(url: &str) -> Option<DirectConnections> {
        DirectConnections::for_url(url, SqliteSync::Normal, Duration::from_secs(1))
    }

    #[test]
    fn only_files_a_second_connection_can_share_get_direct_connections() {
        let file = stock_for("sqlite://data/chat.db?mode=rwc").expect("a file");
        assert_eq!(file.open.path, PathBuf::from("data/chat.db"));
        assert!(!file.open.read_only);
        assert!(stock_for("sqlite:chat.db?mode=ro").expect("a read-only file").open.read_only);
        for shared_differently in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "sqlite://chat.db?mode=memory",
            "sqlite://chat.db?immutable=true",
            "sqlite://chat.db?cache=shared",
            "sqlite://chat.db?vfs=unix-none",
        ] {
            assert!(stock_for(shared_differently).is_none(), "{shared_differently}");
        }
    }

    #[test]
    fn busy_and_full_are_transient_and_other_failures_are_not() {
        let failure = |code| {
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("x".into()))
        };
        assert!(matches!(direct_error(&failure(5)), RepoError::Unavailable(_)));
        assert!(matches!(direct_error(&failure(517)), RepoError::Unavailable(_)));
        assert!(matches!(direct_error(&failure(13)), RepoError::Unavailable(_)));
        assert!(matches!(direct_error(&failure(19)), RepoError::Db(_)));
    }
}
