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
    drive_turns(address, token, Some(prefix), clients, duration).await
}

/// The same clients, each turn two `GET /healthz`: the server's HTTP, routing and middleware
/// with no database, no authentication and no JSON to read, the least an HTTP turn can cost.
async fn drive_http_alone(
    address: &str,
    token: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    drive_turns(address, token, None, clients, duration).await
}

/// Turns on the sessions of `prefix`, or with `None` two `GET /healthz` a turn.
async fn drive_turns(
    address: &str,
    token: &str,
    prefix: Option<&str>,
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
        let (body, prefix) = (body.clone(), prefix.map(str::to_owned));
        tasks.push(tokio::spawn(async move {
            let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (client_index as u64 + 1);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let session = next(&mut state) % SESSIONS as u64;
                let turn = Instant::now();
                if let Some(prefix) = &prefix {
                    connection.get(&format!("/sessions/{prefix}s{session}/items?limit=50")).await?;
                    connection
                        .post_json(&format!("/sessions/{prefix}s{session}/items"), body.clone())
                        .await?;
                } else {
                    connection.get("/healthz").await?;
                    connection.get("/healthz").await?;
                }
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

/// The floor's schema and turn in `../shared/bench/`: one statement reads, one appends. No
/// store that reads before the model answers and writes after can use fewer round trips.
const FLOOR_SCHEMA: &str = "bench/pgbench-schema-2rt.sql";
const FLOOR_TURN: &str = "bench/pgbench-turn-2rt.sql";

/// `pgbench` running the floor's turn on `database`.
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
        .arg(shared.join(FLOOR_TURN))
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

/// Loads the floor's schema with `sessions` conversations of `history` items, with psql as its
/// README says (the script vacuums and checkpoints).
pub(crate) fn load_reference(
    shared: &Path,
    database: &TestDatabase,
    sessions: usize,
    history: usize,
) -> anyhow::Result<()> {
    let name = database.pg_name().context("a PostgreSQL database")?;
    let status = Command::new("psql")
        .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", name])
        .args(["-v", &format!("sessions={sessions}"), "-v", &format!("history={history}")])
        .arg("-f")
        .arg(shared.join(FLOOR_SCHEMA))
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
    index_for_search(db).await?;
    settle(db).await
}

/// Indexes every appended item for search, batch by batch, as a server does in the
/// background after appends: loaded histories are measured with their index built, not
/// while the server is still building it.
pub(crate) async fn index_for_search(db: &Db) -> anyhow::Result<()> {
    while db.search_index().index_batch().await?.indexed_any() {}
    Ok(())
}

/// After a bulk load, what autovacuum would have done by the time a real database served
/// these histories (hint bits set, visibility map, statistics; it is off on these machines),
/// then a checkpoint, so the load's dirty pages are written before the measurement rather
/// than during it, where they would slow whichever run happened to overlap the flush.
/// Separate statements: VACUUM may not share a query string with another.
const SETTLE_OURS: [&str; 2] =
    ["VACUUM (ANALYZE) chats, conversation_items, search_entries", "CHECKPOINT"];

/// The default configuration's background search indexing, for servers started with the test
/// configuration (which sets a long interval, see `config/test.toml`): benchmarks pay what a
/// deployment pays.
pub(crate) const DEFAULT_INDEXING: (&str, &str) = ("APP__SEARCH__INDEX_INTERVAL_MS", "200");

/// A `chatstore serve` on `url`, with the pool the PostgreSQL tables use.
pub(crate) fn serve(binary: &Path, url: &str) -> ServerProcess {
    ServerProcess::start(
        binary,
        url,
        &[("APP__DATABASE__MAX_CONNECTIONS", SERVER_POOL), DEFAULT_INDEXING],
    )
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
    index_for_search(db).await
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

/// CPU ticks (1/100 s) a process has used so far (0 if they cannot be read).
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    footprint(pid).map_or(0, |(_, ticks)| ticks)
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
    /// Items per session of the turn table's rows.
    pub(crate) histories: &'a [usize],
}

/// The histories of the turn table: items per session.
pub(crate) const TURN_HISTORIES: [usize; 2] = [HISTORY, 100_000];
/// The client counts of the turn table.
pub(crate) const TURN_CLIENTS: [usize; 3] = [1, 16, 64];

/// One row of the turn table: chatstore and the floor at one history and client count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TurnRow {
    pub(crate) history: usize,
    pub(crate) ours_tps: f64,
    pub(crate) ours_p50: Duration,
    pub(crate) ours_p99: Duration,
    pub(crate) floor_tps: f64,
}

/// Turn throughput at 1, 16 and 64 clients on sessions of 100 and 100,000 items, chatstore
/// and the floor (pgbench with the two-round-trip script) interleaved round by round.
pub(crate) async fn turn_throughput(
    args: &TurnArgs<'_>,
    report: &mut String,
) -> anyhow::Result<Vec<TurnRow>> {
    let ours =
        TestDatabase::create(Backend::Postgres).await.context("no PostgreSQL to benchmark")?;
    let mut floors = Vec::new();
    for _ in args.histories {
        floors.push(
            TestDatabase::create(Backend::Postgres).await.context("no PostgreSQL to benchmark")?,
        );
    }
    let outcome = measure(args, &ours, &floors, report).await;
    ours.drop_database().await;
    for floor in &floors {
        floor.drop_database().await;
    }
    outcome
}

/// The session prefix of the turn table's sessions of `history` items.
fn history_prefix(history: usize) -> String {
    format!("h{history}-")
}

async fn measure(
    args: &TurnArgs<'_>,
    ours: &TestDatabase,
    floors: &[TestDatabase],
    report: &mut String,
) -> anyhow::Result<Vec<TurnRow>> {
    // Ours: migrate, load both histories into one database (as one deployment holds short and
    // long conversations side by side), then serve with the default configuration.
    let db = ours.connect().await;
    db.migrate().await?;
    for (&history, floor) in args.histories.iter().zip(floors) {
        eprintln!("turns: loading {SESSIONS} sessions of {history} items, and the floor's");
        load_sessions_sql(&db, &history_prefix(history), history).await?;
        load_reference(args.shared, floor, SESSIONS, history)?;
    }
    db.close().await;
    let server = serve(args.binary, &ours.url);
    let token = bench_token(&ours.url)?;

    let part = Duration::from_secs((args.seconds / u64::from(2 * args.rounds)).max(1));
    let _ = writeln!(
        report,
        "| items per session | clients | chatstore / floor | chatstore turns/s | p50 | p99 | floor turns/s | floor mean latency |\n|---|---|---|---|---|---|---|---|"
    );
    let mut rows = Vec::new();
    let mut ceilings = Vec::new();
    let mut requests = 0usize;
    let (mut server_ticks, mut generator_ticks) = (0, 0);
    for (index, (&history, floor)) in args.histories.iter().zip(floors).enumerate() {
        let floor_name = floor.pg_name().context("a PostgreSQL database")?;
        let prefix = history_prefix(history);
        drive(&server.address, &token, &prefix, 4, Duration::from_secs(1)).await?; // warm-up
        for clients in TURN_CLIENTS {
            let mut run = Run::default();
            let mut http_alone = Run::default();
            let (mut floor_tps, mut floor_latency_ms) = (0.0, 0.0);
            for _ in 0..args.rounds {
                if index == 0 {
                    http_alone
                        .absorb(drive_http_alone(&server.address, &token, clients, part).await?);
                }
                let before = (cpu_ticks(server.pid()), cpu_ticks(std::process::id()));
                let part_run = drive(&server.address, &token, &prefix, clients, part).await?;
                if clients == 64 {
                    server_ticks += cpu_ticks(server.pid()) - before.0;
                    generator_ticks += cpu_ticks(std::process::id()) - before.1;
                    requests += part_run.turns * 2;
                }
                run.absorb(part_run);
                let floor_run = pgbench(args.shared, floor_name, clients, part)?;
                floor_tps += floor_run.tps / f64::from(args.rounds);
                floor_latency_ms += floor_run.latency_ms / f64::from(args.rounds);
            }
            let row = TurnRow {
                history,
                ours_tps: run.per_second(),
                ours_p50: run.latencies.percentile(0.5),
                ours_p99: run.latencies.percentile(0.99),
                floor_tps,
            };
            let _ = writeln!(
                report,
                "| {history} | {clients} | **{:.2}x** | {:.0} | {} | {} | {floor_tps:.0} | {floor_latency_ms:.2} ms |",
                row.ours_tps / floor_tps,
                row.ours_tps,
                micros(row.ours_p50),
                micros(row.ours_p99),
            );
            if index == 0 {
                ceilings.push(Ceiling {
                    clients,
                    http_alone_tps: http_alone.per_second(),
                    floor_tps,
                    ours_tps: row.ours_tps,
                });
            }
            rows.push(row);
        }
    }
    // Clock ticks are 1/100 s on Linux.
    let per_request = |ticks: u64| ticks as f64 * 10_000.0 / requests.max(1) as f64;
    let mut chart = Vec::new();
    for &history in args.histories {
        let at = |value: fn(&TurnRow) -> f64| -> Vec<f64> {
            rows.iter().filter(|row| row.history == history).map(value).collect()
        };
        chart.push(crate::charts::Bars {
            name: format!("chatstore, {history} items"),
            values: at(|row| row.ours_tps),
        });
        chart.push(crate::charts::Bars {
            name: format!("floor, {history} items"),
            values: at(|row| row.floor_tps),
        });
    }
    let title = "Turns on PostgreSQL: chatstore and the two-round-trip floor";
    let image = crate::charts::turns_by_clients("turns", title, &TURN_CLIENTS, &chart)?;
    let _ = writeln!(report, "\n{image}");
    let peak_mb = footprint(server.pid()).map_or(f64::NAN, |(kb, _)| kb as f64 / 1024.0);
    let _ = writeln!(
        report,
        "\nServer footprint after the runs: peak RSS **{peak_mb:.1} MB** (target: under 100 MB); \
         CPU **{:.0} µs per request** in the 64-client runs (server process only; each turn is \
         two requests), and the load generator's (this process) {:.0} µs.",
        per_request(server_ticks),
        per_request(generator_ticks),
    );
    write_ceilings(report, args.histories[0], &ceilings);
    server.stop();
    Ok(rows)
}

/// The floor next to an HTTP turn that does nothing, at one client count.
#[derive(Debug, Clone, Copy)]
struct Ceiling {
    clients: usize,
    http_alone_tps: f64,
    floor_tps: f64,
    ours_tps: f64,
}

impl Ceiling {
    /// The most turns/s a turn that does both the floor's work and an empty HTTP turn's can
    /// reach, where the two share the CPU (or, at one client, add their latencies).
    fn turns_per_second(&self) -> f64 {
        1.0 / (1.0 / self.floor_tps + 1.0 / self.http_alone_tps)
    }
}

fn write_ceilings(report: &mut String, history: usize, ceilings: &[Ceiling]) {
    let _ = writeln!(
        report,
        "\nWhat an HTTP turn costs by itself, measured in the rounds of the {history}-item rows (a third \
         part of each round, as long as each of the other two): the same clients each sending two \
         `GET /healthz` a turn (hyper, axum's routing and the \
         middleware every request passes, with no database, no token to check and no JSON to \
         read). The server, the load generator and PostgreSQL share this machine's cores, so a \
         turn that has to do the floor's database work *and* an empty HTTP turn's work can reach \
         at most 1 / (1 / floor + 1 / HTTP alone) turns/s, whatever the server does in between \
         (at 1 client, where a turn is waited for rather than crowded, the same sum of \
         latencies). That ceiling, next to the 0.8x target:\n\n\
         | clients | HTTP alone turns/s | floor turns/s | ceiling / floor | chatstore / floor | chatstore / ceiling |\n\
         |---|---|---|---|---|---|"
    );
    for ceiling in ceilings {
        let limit = ceiling.turns_per_second();
        let _ = writeln!(
            report,
            "| {} | {:.0} | {:.0} | **{:.2}x** | {:.2}x | {:.2}x |",
            ceiling.clients,
            ceiling.http_alone_tps,
            ceiling.floor_tps,
            limit / ceiling.floor_tps,
            ceiling.ours_tps / ceiling.floor_tps,
            ceiling.ours_tps / limit,
        );
    }
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
