//! The test harness shared by every suite of the workspace.
//!
//! Each test gets a database of its own on each backend: a new SQLite file, or a new
//! PostgreSQL database that the harness creates (at `TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drops afterwards, also when the test
//! panics. The schema comes from the real migrations. API tests run the real server on port 0
//! and talk HTTP to it.
//!
//! Set `TEST_LOG=1` to see the servers' logs (`RUST_LOG` picks the level).
//!
//! `dual_backend_tests!(a, b, ...)` turns `async fn a(backend: Backend)` into the tests
//! `sqlite::a` and `postgres::a`. Without a reachable PostgreSQL the PostgreSQL half is skipped
//! with a loud warning, except under `CI=true`, where it fails.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chatstore::responder::Responder;
use chatstore::settings::Settings;
use chatstore::startup::Application;
use futures::FutureExt;
use repositories::Db;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;

pub use cluster::{PgCluster, StopMode, free_port};
pub use fake_model::{FakeAnswer, FakeModel, FakeRequest};
pub use repositories::Backend;

mod cluster;
mod fake_model;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Databases this harness made carry this prefix, so leftovers of killed runs can be swept.
const PG_PREFIX: &str = "chatstore_test_";
/// A leftover database older than this belongs to no running test.
const STALE_AFTER_SECS: i64 = 3 * 3600;

/// Turns `async fn name(backend: Backend)` functions into one test per backend.
#[macro_export]
macro_rules! dual_backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Whether this is a CI run (`CI=true`), where a missing dependency fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The PostgreSQL maintenance database that test databases are created from.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// Replaces the database name (the URL path) of a PostgreSQL URL.
pub fn pg_url_with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let server = match base.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

async fn admin_connection() -> Option<DatabaseConnection> {
    static WARNED: OnceLock<()> = OnceLock::new();
    let url = admin_url();
    let mut options = sea_orm::ConnectOptions::new(url.clone());
    options.max_connections(1).connect_timeout(Duration::from_secs(5)).sqlx_logging(false);
    match Database::connect(options).await {
        Ok(conn) => Some(conn),
        Err(err) if in_ci() => {
            panic!("CI=true but PostgreSQL is unreachable at {url}: {err}")
        }
        Err(err) => {
            WARNED.get_or_init(|| {
                eprintln!(
                    "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                     !! SKIPPING every PostgreSQL test: cannot reach {url}: {err}\n\
                     !! Start one with:\n\
                     !!   pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
                     !! or point TEST_DATABASE_URL at a server where you may CREATE DATABASE.\n\
                     !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
                );
            });
            None
        }
    }
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    pub backend: Backend,
    /// What the server is given as `DATABASE_URL`.
    pub url: String,
    pg_name: Option<String>,
    sqlite_path: Option<PathBuf>,
}

impl TestDatabase {
    /// Creates an empty database, or `None` when PostgreSQL is wanted but unreachable (outside
    /// CI). Nothing is migrated yet.
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir()
                    .join(format!("chatstore-test-{}.db", uuid::Uuid::new_v4().simple()));
                Some(Self {
                    backend,
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    pg_name: None,
                    sqlite_path: Some(path),
                })
            }
            Backend::Postgres => {
                let admin = admin_connection().await?;
                sweep_stale_databases(&admin).await;
                let name = format!(
                    "{PG_PREFIX}{}_{}",
                    chrono::Utc::now().timestamp(),
                    &uuid::Uuid::new_v4().simple().to_string()[..12]
                );
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
                let _ = admin.close().await;
                Some(Self {
                    backend,
                    url: pg_url_with_database(&admin_url(), &name),
                    pg_name: Some(name),
                    sqlite_path: None,
                })
            }
        }
    }

    /// The database's PostgreSQL name, if it is one.
    pub fn pg_name(&self) -> Option<&str> {
        self.pg_name.as_deref()
    }

    /// Removes the database (its files, for SQLite).
    pub async fn drop_database(&self) {
        if let Some(name) = &self.pg_name
            && let Some(admin) = admin_connection().await
        {
            if let Err(err) = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
            {
                eprintln!("warning: could not drop test database {name}: {err}");
            }
            let _ = admin.close().await;
        }
        if let Some(path) = &self.sqlite_path {
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
        }
    }

    /// Connects to this database (for assertions on what the server stored).
    pub async fn connect(&self) -> Db {
        let settings = test_settings(&self.url, |_| {});
        Db::connect(&settings.database).await.expect("connect to the test database")
    }
}

/// Drops databases left behind by test runs that were killed before they could clean up.
async fn sweep_stale_databases(admin: &DatabaseConnection) {
    static SWEPT: Mutex<bool> = Mutex::const_new(false);
    let mut swept = SWEPT.lock().await;
    if *swept {
        return;
    }
    *swept = true;
    let Ok(rows) = admin
        .query_all_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            format!("SELECT datname FROM pg_database WHERE datname LIKE '{PG_PREFIX}%'"),
        ))
        .await
    else {
        return;
    };
    let cutoff = chrono::Utc::now().timestamp() - STALE_AFTER_SECS;
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else { continue };
        let created = name
            .strip_prefix(PG_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|ts| ts.parse::<i64>().ok());
        if created.is_some_and(|ts| ts < cutoff) {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

/// The settings a test server runs with: `config/test.toml`, this database, and `customize`.
pub fn test_settings(database_url: &str, customize: impl FnOnce(&mut Settings)) -> Settings {
    let env = HashMap::from([
        ("APP_ENV".to_owned(), "test".to_owned()),
        ("DATABASE_URL".to_owned(), database_url.to_owned()),
    ]);
    let mut settings = Settings::load_from_env(&env).expect("test settings load");
    customize(&mut settings);
    settings
}

/// A running server on a test database.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// A separate connection to the server's database, for checking what it stored.
    pub db: Db,
    pub settings: Settings,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Builds and starts the server (migrating the database through the real migrations).
    pub async fn spawn(database: &TestDatabase, customize: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_with(database, customize, None).await
    }

    /// [`TestApp::spawn`], answering with `responder` instead of the configured one.
    pub async fn spawn_with(
        database: &TestDatabase,
        customize: impl FnOnce(&mut Settings),
        responder: Option<Arc<dyn Responder>>,
    ) -> Self {
        let settings = test_settings(&database.url, customize);
        // Servers run on the test's threads but log from theirs, where libtest cannot capture
        // the output; so they log only when asked to.
        if std::env::var_os("TEST_LOG").is_some() {
            chatstore::telemetry::init(&settings.log);
        }
        let application = match responder {
            Some(responder) => Application::build_with_responder(settings.clone(), responder).await,
            None => Application::build(settings.clone()).await,
        }
        .expect("the server builds");
        let address = format!("http://{}", application.local_addr());
        let ready = application.readiness();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until(async move {
            let _ = stopped.await;
        }));
        // The server answers at once but serves the API only once its database is open.
        if ready.wait().await.is_err() {
            let failure = server.await.map_err(anyhow::Error::from).and_then(|result| result);
            panic!("the server did not open its database: {failure:?}");
        }
        Self {
            address,
            db: database.connect().await,
            settings,
            client: reqwest::Client::new(),
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A valid token for `user`.
    pub fn token(&self, user: &str) -> String {
        chatstore::auth::mint_token(&self.settings.auth, user).expect("mint a test token")
    }

    /// A request to `path` authenticated as `user`.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &str,
    ) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(self.token(user))
    }

    /// Sends a request as `user` (with a JSON body, if given) and returns the status and the
    /// body text, unparsed, so tests can compare bytes exactly.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &str,
        json_body: Option<&str>,
    ) -> Answer {
        let mut request = self.request(method, path, user);
        if let Some(body) = json_body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        Answer::read(request.send().await.expect("the server answers")).await
    }

    pub async fn get(&self, path: &str, user: &str) -> Answer {
        self.send(reqwest::Method::GET, path, user, None).await
    }

    pub async fn post(&self, path: &str, user: &str, json_body: &str) -> Answer {
        self.send(reqwest::Method::POST, path, user, Some(json_body)).await
    }

    pub async fn delete(&self, path: &str, user: &str) -> Answer {
        self.send(reqwest::Method::DELETE, path, user, None).await
    }

    /// The `chats` row of `user`'s chat `chat_id`, read straight from the database.
    pub async fn chat_row(&self, user: &str, chat_id: &str) -> Option<entity::chat::Model> {
        use sea_orm::EntityTrait;
        entity::chat::Entity::find_by_id((user.to_owned(), chat_id.to_owned()))
            .one(self.db.connection())
            .await
            .expect("read the chats table")
    }

    /// Every `chats` row, of every user.
    pub async fn all_chat_rows(&self) -> Vec<entity::chat::Model> {
        use sea_orm::EntityTrait;
        entity::chat::Entity::find().all(self.db.connection()).await.expect("read the chats table")
    }

    /// Asks the server to shut down (as SIGTERM would) and waits for it to finish.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let result = match self.server.take() {
            Some(server) => server.await.map_err(anyhow::Error::from).and_then(|r| r),
            None => Ok(()),
        };
        self.db.close().await;
        result
    }

    /// Starts the shutdown without waiting for it; `stop` then waits.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        Self { status, headers, text }
    }

    /// The body as JSON (panics with the body text when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.text))
    }

    /// Asserts the error JSON of `API.md` with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "unexpected error body: {}", self.text);
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without a message: {}",
            self.text
        );
        assert_eq!(
            self.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "error bodies are JSON"
        );
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Runs `test` against a fresh database on `backend`, then removes the database, also when
/// the test panics. Skipped (see the module docs) when PostgreSQL is unreachable outside CI.
pub async fn with_database(backend: Backend, test: impl AsyncFnOnce(&TestDatabase)) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let outcome = AssertUnwindSafe(test(&database)).catch_unwind().await;
    database.drop_database().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `test` against a server on a fresh database on `backend`; stops the server and removes
/// the database afterwards, also when the test panics.
pub async fn with_app(backend: Backend, test: impl AsyncFnOnce(&TestApp)) {
    with_app_configured(backend, |_| {}, test).await;
}

/// `with_app`, with the server's settings adjusted by `customize` first.
pub async fn with_app_configured(
    backend: Backend,
    customize: impl FnOnce(&mut Settings),
    test: impl AsyncFnOnce(&TestApp),
) {
    with_app_serving(backend, customize, None, test).await;
}

/// `with_app`, answering ChatKit threads and agent turns with `responder`.
pub async fn with_app_responding(
    backend: Backend,
    responder: Arc<dyn Responder>,
    test: impl AsyncFnOnce(&TestApp),
) {
    with_app_serving(backend, |_| {}, Some(responder), test).await;
}

async fn with_app_serving(
    backend: Backend,
    customize: impl FnOnce(&mut Settings),
    responder: Option<Arc<dyn Responder>>,
    test: impl AsyncFnOnce(&TestApp),
) {
    with_database(backend, async |database| {
        let mut app = TestApp::spawn_with(database, customize, responder).await;
        let outcome = AssertUnwindSafe(test(&app)).catch_unwind().await;
        let stopped = app.stop().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
        stopped.expect("the server stops cleanly");
    })
    .await;
}

/// Awaits `future`, failing the test if it takes longer than `limit` (a hang is a bug).
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future).await.expect("the operation finished in time")
}

/// A `chatstore serve` process (the real binary), for tests and benchmarks that need separate
/// processes. Killed when dropped, if it was not stopped. Its log (stderr) goes to a file, so
/// that a busy server never blocks on a full pipe.
#[derive(Debug)]
pub struct ServerProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub address: String,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `binary serve` on a free port with `APP_ENV=test` and `env`, and waits until it
    /// serves the whole API (its database is open).
    pub fn start(binary: &std::path::Path, database_url: &str, env: &[(&str, &str)]) -> Self {
        let mut server = Self::spawn(binary, database_url, env);
        server.wait_ready(Duration::from_secs(60));
        server
    }

    /// Starts `binary serve` like [`ServerProcess::start`], but returns as soon as it prints
    /// the line with its address: once it listens, before its database is open.
    pub fn spawn(binary: &std::path::Path, database_url: &str, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let log = std::env::temp_dir()
            .join(format!("chatstore-server-{}.log", uuid::Uuid::new_v4().simple()));
        let log_file = std::fs::File::create(&log).expect("create the server's log file");
        let mut command = std::process::Command::new(binary);
        command
            .arg("serve")
            .env("APP_ENV", "test")
            .env("DATABASE_URL", database_url)
            .env("PORT", "0")
            .stdout(std::process::Stdio::piped())
            .stderr(log_file);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start chatstore serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("read the address line");
        let address = line.trim().strip_prefix("chatstore listening on ").unwrap_or("").to_owned();
        let server = Self { child, address, log };
        assert!(!server.address.is_empty(), "no address line: {line:?}\n{}", server.log());
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server logged so far (its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200 (the database is open), failing after `limit` or
    /// when the process exits first.
    pub fn wait_ready(&mut self, limit: Duration) {
        let started = std::time::Instant::now();
        while self.get("/readyz").0 != 200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}) before it was ready:\n{}", self.log());
            }
            assert!(
                started.elapsed() < limit,
                "the server was not ready within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A plain `GET path` (no token), answered with the status (0 when the server cannot be
    /// reached) and the body. Blocking, so that threads without a runtime can poll.
    pub fn get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let host = self.address.trim_start_matches("http://");
        let Ok(mut stream) = std::net::TcpStream::connect(host) else { return (0, String::new()) };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut response = String::new();
        if write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").is_err()
            || stream.read_to_string(&mut response).is_err()
        {
            return (0, String::new());
        }
        let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned();
        (status, body)
    }

    /// Waits up to `limit` for the process to exit by itself, and returns how it did.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: the process ends at once, mid-request, as in a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (up to 10 s) for a clean exit.
    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        match self.wait_for_exit(Duration::from_secs(10)) {
            Some(status) => assert!(status.success(), "chatstore exited uncleanly: {status:?}"),
            None => panic!("chatstore did not stop within 10 s of SIGTERM"),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
