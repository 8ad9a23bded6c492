//! The turn workload, next to its physical limit: one agent turn is
//! `GET /sessions/{id}/items?limit=50` then `POST /sessions/{id}/items` with 2 items, over 64
//! sessions; the limit is `pgbench` running `../shared/bench/pgbench-turn.sql` (the fewest
//! statements a correct store needs) against the same PostgreSQL server.
//!
//! Also the pieces the other turn tables share: the load generator, pgbench, loading, and
//! reading a process's footprint.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use chatstore_tests::{Backend, ServerProcess, TestDatabase};
use repositories::Db;
use repositories::sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::task::JoinHandle;

use crate::http::Connection;
use crate::{Series, micros};

pub(crate) const SESSIONS: usize = 64;
const HISTORY: usize = 100;
pub(crate) const USER_ITEM: &str =
    r#"{"role":"user","content":"What did we discuss about the dragon campaign earlier today?"}"#;
pub(crate) const ASSISTANT_ITEM: &str = r#"{"role":"assistant","content":"We planned a three-act campaign: the siege, the betrayal and the dragon lair. Next you wanted to flesh out the villain."}"#;
/// The pool the benchmarked servers get: room for the 64-client runs' requests.
pub(crate) const SERVER_POOL: &str = "32";

/// What one measurement saw.
#[derive(Debug, Default)]
pub(crate) struct Run {
    pub(crate) turns: usize,
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Series,
}

impl Run {
    pub(crate) fn per_second(&self) -> f64 {
        self.turns as f64 / self.elapsed.as_secs_f64()
    }

    /// The run of client tasks started at `started`, each answering its turns' latencies.
    pub(crate) async fn gather(
        tasks: Vec<JoinHandle<anyhow::Result<Vec<Duration>>>>,
        started: Instant,
    ) -> anyhow::Result<Self> {
        let mut run = Self::default();
        for task in tasks {
            let latencies = task.await??;
            run.turns += latencies.len();
            run.latencies.samples.extend(latencies);
        }
        run.elapsed = started.elapsed();
        Ok(run)
    }

    /// Adds another measurement of the same thing.
    pub(crate) fn absorb(&mut self, other: Self) {
        self.turns += other.turns;
        self.elapsed += other.elapsed;
        self.latencies.samples.extend(other.latencies.samples);
    }
}

/// A tiny xorshift, so each client picks sessions in its own reproducible order (the Python
/// peer uses the same one).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// `clients` concurrent clients doing turns on the sessions `{prefix}s0` to `{prefix}s63` of
/// the server at `address` for `duration`, each on its own keep-alive connection.
pub(crate) async fn drive(
    address: &str,
    token: &str,
    prefix: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    let body = Bytes::from(format!("{{\"items\":[{USER_ITEM},{ASSISTANT_ITEM}]}}"));
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(Connection::open(address, token).await?);
    }
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (client_index, mut connection) in connections.into_iter().enumerate() {
        let (body, prefix) = (body.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (client_index as u64 + 1);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let session = next(&mut state) % SESSIONS as u64;
                let turn = Instant::now();
                connection.get(&format!("/sessions/{prefix}s{session}/items?limit=50")).await?;
                connection
                    .post_json(&format!("/sessions/{prefix}s{session}/items"), body.clone())
                    .await?;
                latencies.push(turn.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    Run::gather(tasks, started).await
}

/// What pgbench reported: turns per second and mean latency (ms).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PgbenchRun {
    pub(crate) tps: f64,
    pub(crate) latency_ms: f64,
}

/// `pgbench` with the reference turn script on `database`.
pub(crate) fn pgbench(
    shared: &Path,
    database: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<PgbenchRun> {
    let output = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-n", "-M", "prepared"])
        .args(["-c", &clients.to_string(), "-j", &clients.min(2).to_string()])
        .args(["-T", &duration.as_secs().to_string(), "-D", &format!("sessions={SESSIONS}")])
        .arg("-f")
        .arg(shared.join("bench/pgbench-turn.sql"))
        .arg(database)
        .output()
        .context("cannot run pgbench (apt-get install postgresql-client)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("pgbench failed: {}{}", text, String::from_utf8_lossy(&output.stderr));
    }
    let number_after = |label: &str| {
        text.lines()
            .find(|line| line.starts_with(label))
            .and_then(|line| line.split(label).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse::<f64>().ok())
    };
    let tps = number_after("tps = ").context("no tps in pgbench's output")?;
    let latency_ms = number_after("latency average = ").unwrap_or(f64::NAN);
    Ok(PgbenchRun { tps, latency_ms })
}

/// Loads the reference schema with `history` items per conversation, with psql as its README
/// says.
pub(crate) fn load_reference(
    shared: &Path,
    reference: &TestDatabase,
    history: usize,
) -> anyhow::Result<()> {
    let name = reference.pg_name().context("a PostgreSQL database")?;
    let status = Command::new("psql")
        .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", name])
        .args(["-v", &format!("sessions={SESSIONS}"), "-v", &format!("history={history}")])
        .arg("-f")
        .arg(shared.join("bench/pgbench-schema.sql"))
        .args(SETTLE_REFERENCE.iter().flat_map(|statement| ["-c", statement]))
        .stderr(std::process::Stdio::null())
        .status()
        .context("cannot run psql")?;
    anyhow::ensure!(status.success(), "loading the pgbench schema failed");
    Ok(())
}

/// Loads sessions `{prefix}s0` to `{prefix}s63` of user `bench`, `history` items each, straight
/// into PostgreSQL: rows as chatstore writes them (positions `1..=history`, `item_count` in
/// step), generated by the server, which takes seconds where the API would take minutes at
/// 100,000 items a session.
pub(crate) async fn load_sessions_sql(db: &Db, prefix: &str, history: usize) -> anyhow::Result<()> {
    let count = i64::try_from(SESSIONS)?;
    let history = i64::try_from(history)?;
    let statements = [
        (
            "INSERT INTO chats (user_id, chat_id, title, is_active, item_count, created_at, updated_at) \
             SELECT 'bench', $1 || 's' || s, NULL, TRUE, $2, now(), now() \
             FROM generate_series(0, $3 - 1) s",
            vec![prefix.into(), history.into(), count.into()],
        ),
        (
            "INSERT INTO conversation_items (user_id, chat_id, position, data, created_at) \
             SELECT 'bench', $1 || 's' || s, p, CASE WHEN p % 2 = 1 THEN $4 ELSE $5 END, now() \
             FROM generate_series(0, $3 - 1) s, generate_series(1, $2) p",
            vec![
                prefix.into(),
                history.into(),
                count.into(),
                USER_ITEM.into(),
                ASSISTANT_ITEM.into(),
            ],
        ),
    ];
    for (sql, values) in statements {
        db.connection()
            .execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
            .await?;
    }
    settle(db).await
}

/// After a bulk load, what autovacuum would have done by the time a real database served
/// these histories (hint bits set, visibility map, statistics; it is off on these machines),
/// then a checkpoint, so the load's dirty pages are written before the measurement rather
/// than during it, where they would slow whichever run happened to overlap the flush.
/// Separate statements: VACUUM may not share a query string with another.
const SETTLE_OURS: [&str; 2] = ["VACUUM (ANALYZE) chats, conversation_items", "CHECKPOINT"];
/// [`SETTLE_OURS`] for the pgbench reference schema.
const SETTLE_REFERENCE: [&str; 2] = ["VACUUM (ANALYZE) ref_chats, ref_items", "CHECKPOINT"];

/// A `chatstore serve` on `url`, with the pool the PostgreSQL tables use.
pub(crate) fn serve(binary: &Path, url: &str) -> ServerProcess {
    ServerProcess::start(binary, url, &[("APP__DATABASE__MAX_CONNECTIONS", SERVER_POOL)])
}

/// Runs [`SETTLE_OURS`] on our database.
pub(crate) async fn settle(db: &Db) -> anyhow::Result<()> {
    for statement in SETTLE_OURS {
        db.connection().execute_unprepared(statement).await?;
    }
    Ok(())
}

/// Loads the 64 sessions of `history` items each through the repositories (any database).
pub(crate) async fn load_sessions(db: &Db, prefix: &str, history: usize) -> anyhow::Result<()> {
    let items: Vec<&str> =
        (0..history).map(|n| if n % 2 == 0 { USER_ITEM } else { ASSISTANT_ITEM }).collect();
    for session in 0..SESSIONS {
        db.sessions().add_items("bench", &format!("{prefix}s{session}"), &items, None).await?;
    }
    Ok(())
}

/// Peak resident memory (kB) and CPU time (clock ticks, 1/100 s) of a process, from /proc.
pub(crate) fn footprint(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak_kb = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((peak_kb, ticks))
}

/// A bearer token for user `bench` that the benchmarked servers accept.
pub(crate) fn bench_token(database_url: &str) -> anyhow::Result<String> {
    let settings = chatstore_tests::test_settings(database_url, |_| {});
    chatstore::auth::mint_token(&settings.auth, "bench")
}

#[derive(Debug)]
pub(crate) struct TurnArgs<'a> {
    pub(crate) binary: &'a Path,
    pub(crate) shared: &'a Path,
    /// Seconds per client count, split between chatstore and pgbench.
    pub(crate) seconds: u64,
    /// How many times each client count alternates the two.
    pub(crate) rounds: u32,
}

/// Turn throughput at 1, 16 and 64 clients, chatstore and pgbench interleaved.
pub(crate) async fn turn_throughput(
    args: &TurnArgs<'_>,
    report: &mut String,
) -> anyhow::Result<()> {
    let ours =
        TestDatabase::create(Backend::Postgres).await.context("no PostgreSQL to benchmark")?;
    let reference =
        TestDatabase::create(Backend::Postgres).await.context("no PostgreSQL to benchmark")?;
    let outcome = measure(args, &ours, &reference, report).await;
    ours.drop_database().await;
    reference.drop_database().await;
    outcome
}

async fn measure(
    args: &TurnArgs<'_>,
    ours: &TestDatabase,
    reference: &TestDatabase,
    report: &mut String,
) -> anyhow::Result<()> {
    load_reference(args.shared, reference, HISTORY)?;
    let reference_name = reference.pg_name().context("a PostgreSQL database")?;

    // Ours: migrate, load the same sessions, then serve.
    let db = ours.connect().await;
    db.migrate().await?;
    load_sessions(&db, "", HISTORY).await?;
    settle(&db).await?;
    db.close().await;
    let server = serve(args.binary, &ours.url);
    let token = bench_token(&ours.url)?;

    let part = Duration::from_secs((args.seconds / u64::from(2 * args.rounds)).max(1));
    let _ = writeln!(
        report,
        "| clients | chatstore turns/s | p50 | p99 | pgbench turns/s | pgbench mean latency | ratio |\n|---|---|---|---|---|---|---|"
    );
    let mut requests = 0usize;
    let mut cpu_before = 0;
    let mut cpu_per_request = f64::NAN;
    drive(&server.address, &token, "", 4, Duration::from_secs(1)).await?; // warm-up
    let mut chart = crate::charts::empty_bars(&["chatstore", "pgbench reference"]);
    for clients in [1usize, 16, 64] {
        let mut run = Run::default();
        let (mut pg_tps, mut pg_latency) = (0.0, 0.0);
        if clients == 64 {
            cpu_before = footprint(server.pid()).map_or(0, |(_, ticks)| ticks);
            requests = 0;
        }
        for _ in 0..args.rounds {
            let part_run = drive(&server.address, &token, "", clients, part).await?;
            requests += part_run.turns * 2;
            run.absorb(part_run);
            let reference_run = pgbench(args.shared, reference_name, clients, part)?;
            pg_tps += reference_run.tps / f64::from(args.rounds);
            pg_latency += reference_run.latency_ms / f64::from(args.rounds);
        }
        if clients == 64 {
            let cpu_after = footprint(server.pid()).map_or(0, |(_, ticks)| ticks);
            // Clock ticks are 1/100 s on Linux.
            cpu_per_request = (cpu_after - cpu_before) as f64 * 10_000.0 / requests.max(1) as f64;
        }
        let ours_tps = run.per_second();
        let _ = writeln!(
            report,
            "| {clients} | {ours_tps:.0} | {} | {} | {pg_tps:.0} | {pg_latency:.2} ms | **{:.2}x** |",
            micros(run.latencies.percentile(0.5)),
            micros(run.latencies.percentile(0.99)),
            ours_tps / pg_tps
        );
        chart[0].values.push(ours_tps);
        chart[1].values.push(pg_tps);
    }
    let title = "Turns on PostgreSQL: chatstore and its reference";
    let image = crate::charts::turns_by_clients("turns", title, &[1, 16, 64], &chart)?;
    let _ = writeln!(report, "\n{image}");
    let peak_mb = footprint(server.pid()).map_or(f64::NAN, |(kb, _)| kb as f64 / 1024.0);
    let _ = writeln!(
        report,
        "\nServer footprint after the runs: peak RSS **{peak_mb:.1} MB** (target: under 100 MB); \
         CPU **{cpu_per_request:.0} µs per request** in the 64-client runs (server process only; \
         each turn is two requests)."
    );
    server.stop();
    Ok(())
}

/// `../shared` beside the workspace, or `CHATSTORE_SHARED_DIR`.
pub(crate) fn shared_dir() -> PathBuf {
    std::env::var_os("CHATSTORE_SHARED_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    )
}

/// The `chatstore` binary built beside this one.
pub(crate) fn server_binary() -> anyhow::Result<PathBuf> {
    let binary = std::env::current_exe()?.with_file_name("chatstore");
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: cargo build --release -p chatstore",
        binary.display()
    );
    Ok(binary)
}
