//! A PostgreSQL server of a test's own, for tests that stop, restart or reconfigure the
//! database: the shared server at 127.0.0.1:5432 must never go down under other tests.
//!
//! `initdb` makes a cluster in a temporary directory on a free port; it runs as the `postgres`
//! user when the tests run as root (PostgreSQL refuses to run as root). Dropping the cluster
//! stops it and removes its directory, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sea_orm::{ConnectionTrait, Database};

/// A temporary PostgreSQL cluster, stopped and removed when dropped.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    /// The temporary directory: the data directory `data/`, the server's log and its socket.
    root: PathBuf,
    port: u16,
    /// Whether commands run through `runuser -u postgres` (the tests run as root).
    as_postgres: bool,
}

/// How `pg_ctl stop` stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Waits for clients to leave.
    Smart,
    /// Ends client sessions, then shuts down cleanly.
    Fast,
    /// Kills the server processes at once, as a crash would: a restart replays the WAL.
    Immediate,
}

impl PgCluster {
    /// Makes a new cluster that trusts local connections, with `settings` (lines of
    /// `postgresql.conf`) added. It is not started yet. `None` when PostgreSQL's server
    /// binaries are not installed (outside CI; under `CI=true` that is a failure).
    pub fn init(settings: &[&str]) -> Option<Self> {
        let Some(bin) = server_binaries() else {
            assert!(!crate::in_ci(), "CI=true but PostgreSQL's server binaries are not installed");
            eprintln!("!! SKIPPING: no PostgreSQL server binaries under /usr/lib/postgresql");
            return None;
        };
        let root = std::env::temp_dir()
            .join(format!("chatstore-pg-{}", uuid::Uuid::new_v4().simple()))
            .join("cluster");
        std::fs::create_dir_all(&root).expect("create the cluster directory");
        let as_postgres = running_as_root();
        let cluster = Self { bin, root, port: free_port(), as_postgres };
        if as_postgres {
            // The parent is private to this test run; postgres owns the cluster inside it.
            run(Command::new("chown").arg("postgres:").arg(&cluster.root));
        }
        cluster.run_pg(
            "initdb",
            &["-D", "data", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
        );
        let mut conf = format!(
            "port = {}\nlisten_addresses = 'localhost'\nunix_socket_directories = '{}'\n\
             max_connections = 100\nshared_buffers = 16MB\nfsync = on\n",
            cluster.port,
            cluster.root.display()
        );
        for line in settings {
            conf.push_str(line);
            conf.push('\n');
        }
        cluster.append("postgresql.conf", &conf);
        Some(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A temporary directory of the test's, removed with the cluster (for certificates, say).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The data directory, where `postgresql.conf`, `pg_hba.conf` and certificates live.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Writes `contents` to `name` in the data directory, readable by the server only (as
    /// PostgreSQL requires of a private key).
    pub fn write_file(&self, name: &str, contents: &str) {
        let path = self.data_dir().join(name);
        std::fs::write(&path, contents).expect("write a file of the cluster");
        self.give_to_server(&path);
    }

    /// Appends `text` to `name` in the data directory.
    pub fn append(&self, name: &str, text: &str) {
        use std::io::Write;
        let path = self.data_dir().join(name);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|err| panic!("open {}: {err}", path.display()));
        file.write_all(text.as_bytes()).expect("append to a file of the cluster");
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let log = self.root.join("server.log");
        let log = log.to_str().expect("a UTF-8 temp path");
        self.run_pg("pg_ctl", &["-D", "data", "-l", log, "-w", "-t", "60", "start"]);
    }

    /// Stops the server (and waits until it has).
    pub fn stop(&self, mode: StopMode) {
        let mode = match mode {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        self.run_pg("pg_ctl", &["-D", "data", "-w", "-t", "60", "-m", mode, "stop"]);
    }

    /// A URL for `database` on this server; `credentials` is `user` or `user:password`.
    pub fn url(&self, credentials: &str, database: &str) -> String {
        format!("postgres://{credentials}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` (one statement each) as the superuser on the `postgres` database.
    pub async fn execute(&self, statements: &[&str]) {
        let admin = Database::connect(self.url("postgres", "postgres"))
            .await
            .expect("connect to the test cluster");
        for statement in statements {
            admin
                .execute_unprepared(statement)
                .await
                .unwrap_or_else(|err| panic!("{statement}: {err}"));
        }
        let _ = admin.close().await;
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    fn give_to_server(&self, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .expect("make a cluster file private");
        if self.as_postgres {
            run(Command::new("chown").arg("postgres:").arg(path));
        }
    }

    /// Runs one of PostgreSQL's programs in the cluster directory, as its owner.
    fn run_pg(&self, program: &str, args: &[&str]) -> Output {
        run(self.pg_command(program).args(args))
    }

    /// One of PostgreSQL's programs, to run in the cluster directory as its owner.
    fn pg_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.current_dir(&self.root);
        command
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self
                .pg_command("pg_ctl")
                .args(["-D", "data", "-w", "-m", "immediate", "stop"])
                .output();
        }
        if let Some(parent) = self.root.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

/// Runs `command`, panicking with its output if it fails.
fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The newest installed PostgreSQL's `bin` directory (Debian's layout).
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
