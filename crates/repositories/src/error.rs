//! The repositories' one error type.

use sea_orm::{DbErr, RuntimeErr, sqlx};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The thing asked for does not exist for this user.
    #[error("{0}")]
    NotFound(String),
    /// The write collides with existing data (a taken id, a reused idempotency key).
    #[error("{0}")]
    Conflict(String),
    /// The input cannot be stored (bad cursor, value out of range).
    #[error("{0}")]
    Invalid(String),
    /// The database cannot be reached right now; retrying later may work.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] DbErr),
    /// Any other database failure.
    #[error("database error: {0}")]
    Db(#[source] DbErr),
}

pub type RepoResult<T> = Result<T, RepoError>;

impl From<DbErr> for RepoError {
    fn from(err: DbErr) -> Self {
        if is_unavailable(&err) { Self::Unavailable(err) } else { Self::Db(err) }
    }
}

/// The driver error inside `err`, if it came from sqlx.
fn sqlx_cause(err: &DbErr) -> Option<&sqlx::Error> {
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e.as_ref()),
        _ => None,
    }
}

/// Whether `err` is a failed TLS set-up (an unknown CA, a certificate for another name, a
/// server without TLS): a configuration mistake that no retry repairs.
pub(crate) fn is_tls_failure(err: &DbErr) -> bool {
    match sqlx_cause(err) {
        Some(sqlx::Error::Tls(_)) => true,
        // A refused certificate surfaces from the handshake as an I/O error around rustls's.
        Some(sqlx::Error::Io(io)) => {
            io.get_ref().is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        }
        _ => false,
    }
}

/// Whether `err` means "the database is out of reach or busy" rather than "this statement is
/// wrong": those answer 503 with `Retry-After` instead of 500.
fn is_unavailable(err: &DbErr) -> bool {
    let sqlx_err = match err {
        DbErr::ConnectionAcquire(_) => return true,
        _ => match sqlx_cause(err) {
            Some(e) => e,
            None => return matches!(err, DbErr::Conn(_)),
        },
    };
    match sqlx_err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_code(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs of a lost or refused connection, of a transaction the server gave up
/// on (a retry succeeds) or of a full disk, and SQLite's "busy", "locked" and "full". A full
/// disk is the operator's to fix, but until then every write fails the same way: the client
/// is told to come back later, not that the server is broken.
fn is_transient_code(code: &str) -> bool {
    code.starts_with("08") // connection_exception
        || matches!(
            code,
            "57P01" // admin_shutdown
            | "57P02" // crash_shutdown
            | "57P03" // cannot_connect_now (starting up, e.g. a waking serverless database)
            | "53300" // too_many_connections
            | "53100" // disk_full
            | "3D000" // invalid_catalog_name: the database is gone
            | "40001" // serialization_failure: retrying succeeds
            | "40P01" // deadlock_detected: one side was rolled back; retrying succeeds
            | "5" // SQLITE_BUSY
            | "6" // SQLITE_LOCKED
            | "517" // SQLITE_BUSY_SNAPSHOT
            | "13" // SQLITE_FULL: the disk (or the file size limit) is full
        )
}
