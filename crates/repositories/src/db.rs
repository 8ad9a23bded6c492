//! The connection pool and what differs between PostgreSQL and SQLite.

use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::Connection as _;
use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::sqlx::{Postgres, Sqlite};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, TransactionTrait,
    sqlx,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::{Mutex, Notify};

use crate::error::is_tls_failure;
use crate::held::{HeldConnections, IDLE_CHECK};
use crate::sqlite_direct::DirectConnections;
use crate::{RepoError, RepoResult};

/// The advisory lock key migrations run under (any constant unique to chatstore).
const MIGRATION_LOCK_KEY: i64 = 0x6368_6174_7374_6f72; // "chatstor"

/// How to reach the database; the `[database]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://PATH?mode=rwc`; may hold a password, so it is kept secret.
    pub url: SecretString,
    pub migrate_on_start: bool,
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout_secs: u64,
    pub acquire_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_lifetime_secs: u64,
    pub startup_timeout_secs: u64,
    pub sqlite_busy_timeout_ms: u64,
    /// When a SQLite commit waits for the disk (see [`SqliteSync`]).
    pub sqlite_synchronous: SqliteSync,
}

/// How far a SQLite commit goes before it is answered; `database.sqlite_synchronous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// Written to the write-ahead log, which is synced at checkpoints: survives a crash of
    /// chatstore, may lose the last commits if the machine loses power.
    Normal,
    /// The write-ahead log is synced at every commit: survives power loss too, at the cost of
    /// one fsync per commit (about 0.3 ms on these machines).
    Full,
}

/// The two databases chatstore runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl DatabaseSettings {
    pub fn backend(&self) -> Result<Backend, String> {
        let url = self.url.expose_secret();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err(format!(
                "database.url / DATABASE_URL must start with postgres:// or sqlite: (got {})",
                redacted_url(url)
            ))
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.backend()?;
        if self.max_connections == 0 {
            return Err("database.max_connections must be at least 1".into());
        }
        if self.min_connections > self.max_connections {
            return Err("database.min_connections must not exceed max_connections".into());
        }
        Ok(())
    }

    /// The URL with any password replaced, for logs and error messages.
    pub fn redacted_url(&self) -> String {
        redacted_url(self.url.expose_secret())
    }

    fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new(self.url.expose_secret().to_owned());
        options
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .connect_timeout(Duration::from_secs(self.connect_timeout_secs))
            .acquire_timeout(Duration::from_secs(self.acquire_timeout_secs))
            .idle_timeout(Duration::from_secs(self.idle_timeout_secs))
            .max_lifetime(Duration::from_secs(self.max_lifetime_secs))
            // A connection that sat idle may have been cut by a proxy or a scaled-to-zero
            // server; check it before handing it out, but not on every hot-path acquire.
            .test_before_acquire(false)
            .test_before_acquire_if_idle_for(IDLE_CHECK)
            .sqlx_logging(false);
        options.map_sqlx_postgres_opts(|pg: PgConnectOptions| pg.application_name("chatstore"));
        let busy_timeout = Duration::from_millis(self.sqlite_busy_timeout_ms);
        let synchronous = match self.sqlite_synchronous {
            SqliteSync::Normal => SqliteSynchronous::Normal,
            SqliteSync::Full => SqliteSynchronous::Full,
        };
        options.map_sqlx_sqlite_opts(move |sqlite: SqliteConnectOptions| {
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(busy_timeout)
                .foreign_keys(true)
        });
        // A connection whose cached schema is out of date (the migrations ran on another
        // connection, or another process changed the schema) recompiles on its next statement.
        // SQLite 3.51 gets that wrong for a DELETE whose triggers write the search index: the
        // first such statement fails with `no such table`. Reading the schema table first
        // brings the connection's schema up to date, so every statement a pooled connection
        // runs starts from a current schema. (The held hot-path connections only insert and
        // read.)
        options.map_sqlx_sqlite_before_acquire(|connection, _| {
            Box::pin(async move {
                sqlx::query("SELECT 1 FROM sqlite_schema LIMIT 1").execute(connection).await?;
                Ok(true)
            })
        });
        options
    }
}

/// The database: a connection pool plus what the repositories need to know about it.
#[derive(Debug, Clone)]
pub struct Db {
    conn: DatabaseConnection,
    backend: Backend,
    /// SQLite allows one writer at a time, and a transaction that reads before it writes fails
    /// with SQLITE_BUSY_SNAPSHOT if another connection wrote meanwhile. Serialising writers in
    /// the process avoids both; PostgreSQL uses row locks instead.
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// Connections the hot-path statements keep between uses (see `held`).
    held: Arc<Held>,
    /// On a SQLite file, the connections the session read and append run on in the request's
    /// own thread (see `sqlite_direct`); `None` on PostgreSQL and in-memory SQLite.
    sqlite_direct: Option<Arc<DirectConnections>>,
    /// Signalled by writes that leave items for the background search indexer, which waits
    /// for it while nothing is left to index (see `SearchIndex::wait_for_writes`).
    pub(crate) index_wanted: Arc<Notify>,
}

/// The stock of held connections, of whichever database this is.
#[derive(Debug)]
pub(crate) enum Held {
    Postgres(HeldConnections<Postgres>),
    Sqlite(HeldConnections<Sqlite>),
}

impl Db {
    /// Opens the pool, retrying with backoff for `startup_timeout_secs`: a serverless database
    /// may still be waking up when the server starts. A failed TLS set-up (a wrong CA, a
    /// certificate for another host name) is not retried: waiting cannot fix it.
    pub async fn connect(settings: &DatabaseSettings) -> RepoResult<Self> {
        let backend = settings.backend().map_err(RepoError::Invalid)?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(settings.startup_timeout_secs);
        let mut backoff = Duration::from_millis(200);
        let conn = loop {
            let attempt = async {
                let conn = Database::connect(settings.connect_options()).await?;
                conn.ping().await?;
                Ok::<_, sea_orm::DbErr>(conn)
            };
            match attempt.await {
                Ok(conn) => break conn,
                Err(err) if is_tls_failure(&err) => return Err(RepoError::Db(err)),
                Err(err) => {
                    let err = RepoError::from(err);
                    let retryable = matches!(err, RepoError::Unavailable(_));
                    let now = tokio::time::Instant::now();
                    if !retryable || now >= deadline {
                        return Err(err);
                    }
                    // The last wait ends at the deadline, so the server gives up no sooner.
                    let delay = backoff.min(deadline - now);
                    tracing::warn!(
                        database = %settings.redacted_url(),
                        error = %err,
                        retry_in_ms = delay.as_millis(),
                        "database not reachable yet"
                    );
                    tokio::time::sleep(delay).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let sqlite_writer = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
        let max_lifetime = Duration::from_secs(settings.max_lifetime_secs);
        let held = Arc::new(match backend {
            Backend::Postgres => Held::Postgres(HeldConnections::new(
                conn.get_postgres_connection_pool().clone(),
                settings.max_connections,
                max_lifetime,
            )),
            Backend::Sqlite => Held::Sqlite(HeldConnections::new(
                conn.get_sqlite_connection_pool().clone(),
                settings.max_connections,
                max_lifetime,
            )),
        });
        let sqlite_direct = (backend == Backend::Sqlite)
            .then(|| {
                DirectConnections::for_url(
                    settings.url.expose_secret(),
                    settings.sqlite_synchronous,
                    Duration::from_millis(settings.sqlite_busy_timeout_ms),
                )
            })
            .flatten()
            .map(Arc::new);
        let index_wanted = Arc::new(Notify::new());
        Ok(Self { conn, backend, sqlite_writer, held, sqlite_direct, index_wanted })
    }

    /// Applies every pending migration. On PostgreSQL, instances starting together take
    /// turns, so they never race to create the same tables: a connection of its own holds a
    /// transaction-scoped advisory lock while the migrations run. Transaction-scoped, because
    /// behind a transaction-mode pooler (PgBouncer, Neon's pooled endpoints) a session lock
    /// would stay on whichever server connection took it, and an unlock could reach another.
    pub async fn migrate(&self) -> RepoResult<()> {
        if self.backend != Backend::Postgres {
            Migrator::up(&self.conn, None).await?;
            return Ok(());
        }
        let sqlx_error =
            |err: sqlx::Error| sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(err.into()));
        // Opened beside the pool, not taken from it: the migrations run on the pool, which
        // may have room for one connection only.
        let options = self.conn.get_postgres_connection_pool().connect_options();
        let mut lock_connection =
            sqlx::PgConnection::connect_with(&options).await.map_err(sqlx_error)?;
        let mut lock_holder = lock_connection.begin().await.map_err(sqlx_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *lock_holder)
            .await
            .map_err(sqlx_error)?;
        let migrated = Migrator::up(&self.conn, None).await;
        // Ending the transaction releases the lock (so would the connection closing).
        let _ = lock_holder.rollback().await;
        let _ = lock_connection.close().await;
        Ok(migrated?)
    }

    /// Answers whether the database responds right now.
    pub async fn ping(&self) -> RepoResult<()> {
        Ok(self.conn.ping().await?)
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn db_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Open and idle connections in the pool, for metrics.
    pub fn pool_status(&self) -> (u32, usize) {
        match self.backend {
            Backend::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            Backend::Sqlite => {
                let pool = self.conn.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
        }
    }

    /// Closes every pooled connection (at shutdown, and before tests drop their database).
    pub async fn close(&self) {
        match &*self.held {
            Held::Postgres(held) => held.release_all(),
            Held::Sqlite(held) => held.release_all(),
        }
        if let Some(direct) = &self.sqlite_direct {
            direct.close();
        }
        if let Err(err) = self.conn.close_by_ref().await {
            tracing::warn!(error = %err, "closing the database pool failed");
        }
    }

    /// The stock of connections the hot-path statements keep (see `held`).
    pub(crate) fn held(&self) -> &Held {
        &self.held
    }

    /// The direct SQLite connections, on a SQLite file (see `sqlite_direct`).
    pub(crate) fn sqlite_direct(&self) -> Option<&DirectConnections> {
        self.sqlite_direct.as_deref()
    }

    /// On a SQLite file, checkpoints the write-ahead log in the background (see
    /// `DirectConnections::checkpoint`); the server calls it a few times a second, so the
    /// turns' own commits never have to. Answers the log's size and how much of it is now in
    /// the file, in pages; `(0, 0)` on PostgreSQL.
    pub async fn checkpoint_wal(&self) -> RepoResult<(i64, i64)> {
        let Some(direct) = self.sqlite_direct.clone() else { return Ok((0, 0)) };
        tokio::task::spawn_blocking(move || direct.checkpoint())
            .await
            .map_err(|err| RepoError::Invalid(format!("the checkpoint task failed: {err}")))?
    }

    /// Serialises SQLite writers (see `sqlite_writer`); a no-op on PostgreSQL.
    pub(crate) async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.sqlite_writer {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// A transaction that writes: the process's writer lock (see [`Db::write_guard`]), then
    /// the transaction. On SQLite it starts with a write, so that it takes the file's write
    /// lock at once (waiting out another process's writer for up to the busy timeout) rather
    /// than at its first real write, where a commit by another process since its first read
    /// would fail it at once with "database is locked" (`SQLITE_BUSY_SNAPSHOT`).
    pub(crate) async fn begin_write(
        &self,
    ) -> RepoResult<(Option<tokio::sync::MutexGuard<'_, ()>>, sea_orm::DatabaseTransaction)> {
        let writer = self.write_guard().await;
        let txn = self.connection().begin().await?;
        if self.db_backend() == DbBackend::Sqlite {
            txn.execute_unprepared("UPDATE search_state SET enabled = enabled WHERE 0").await?;
        }
        Ok((writer, txn))
    }
}

/// A driver error from a statement run with sqlx directly, as sea-orm would report it, so
/// that it maps to the same answers (503 for a lost connection, and so on).
pub(crate) fn sqlx_error(err: sqlx::Error) -> RepoError {
    RepoError::from(sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(err.into())))
}

fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable database url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn redacted_url_hides_the_password_and_keeps_the_rest() {
        let shown = redacted_url("postgres://app:s3cret@db.example.com:5432/chat?sslmode=require");
        assert_eq!(shown, "postgres://app:***@db.example.com:5432/chat?sslmode=require");
        assert_eq!(
            redacted_url("sqlite://chatstore.db?mode=rwc"),
            "sqlite://chatstore.db?mode=rwc"
        );
        assert_eq!(redacted_url("not a url"), "<unparseable database url>");
    }
}
