//! The turn workload, next to its physical limit: one agent turn is
//! `GET /sessions/{id}/items?limit=50` then `POST /sessions/{id}/items` with 2 items, over 64
//! sessions; the limit is `pgbench` running `../shared/bench/pgbench-turn.sql` (the fewest
//! statements a correct store needs) against the same PostgreSQL server.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chatstore_tests::{Backend, ServerProcess, TestDatabase};

use crate::{Series, micros};

const SESSIONS: usize = 64;
const HISTORY: usize = 100;
const USER_ITEM: &str =
    r#"{"role":"user","content":"What did we discuss about the dragon campaign earlier today?"}"#;
const ASSISTANT_ITEM: &str = r#"{"role":"assistant","content":"We planned a three-act campaign: the siege, the betrayal and the dragon lair. Next you wanted to flesh out the villain."}"#;

/// What one measurement saw.
#[derive(Debug, Default)]
struct Run {
    turns: usize,
    elapsed: Duration,
    latencies: Series,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.turns as f64 / self.elapsed.as_secs_f64()
    }
}

/// A tiny xorshift, so each client picks sessions in its own reproducible order.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// `clients` concurrent clients doing turns against the server at `address` for `duration`.
async fn drive(
    address: &str,
    token: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    let body = format!("{{\"items\":[{USER_ITEM},{ASSISTANT_ITEM}]}}");
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_index in 0..clients {
        let client = reqwest::Client::new();
        let (address, token, body) = (address.to_owned(), token.to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (client_index as u64 + 1);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let session = next(&mut state) % SESSIONS as u64;
                let turn = Instant::now();
                let read = client
                    .get(format!("{address}/sessions/s{session}/items?limit=50"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                anyhow::ensure!(read.status() == 200, "read answered {}", read.status());
                read.bytes().await?;
                let write = client
                    .post(format!("{address}/sessions/s{session}/items"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(write.status() == 200, "write answered {}", write.status());
                write.bytes().await?;
                latencies.push(turn.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut run = Run::default();
    for task in tasks {
        let latencies = task.await??;
        run.turns += latencies.len();
        run.latencies.samples.extend(latencies);
    }
    run.elapsed = started.elapsed();
    Ok(run)
}

/// `pgbench` with the reference turn script: turns per second and average latency.
fn pgbench(
    shared: &Path,
    database: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(f64, f64)> {
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
    Ok((tps, latency_ms))
}

/// Peak resident memory (kB) and CPU time (clock ticks) of a process, from /proc.
fn footprint(pid: u32) -> Option<(u64, u64)> {
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

pub(crate) struct TurnArgs<'a> {
    pub(crate) binary: &'a Path,
    pub(crate) shared: &'a Path,
    pub(crate) seconds: u64,
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
    // The reference schema and data, with psql as its README says.
    let reference_name = reference.pg_name().context("a PostgreSQL database")?;
    let status = Command::new("psql")
        .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", reference_name])
        .args(["-v", &format!("sessions={SESSIONS}"), "-v", &format!("history={HISTORY}")])
        .arg("-f")
        .arg(args.shared.join("bench/pgbench-schema.sql"))
        .status()
        .context("cannot run psql")?;
    anyhow::ensure!(status.success(), "loading the pgbench schema failed");

    // Ours: migrate through a first start, load the same sessions, then serve.
    let db = ours.connect().await;
    db.migrate().await?;
    let history: Vec<&str> =
        (0..HISTORY).map(|n| if n % 2 == 0 { USER_ITEM } else { ASSISTANT_ITEM }).collect();
    for session in 0..SESSIONS {
        db.sessions().add_items("bench", &format!("s{session}"), &history, None).await?;
    }
    db.close().await;
    let server =
        ServerProcess::start(args.binary, &ours.url, &[("APP__DATABASE__MAX_CONNECTIONS", "32")]);
    let settings = chatstore_tests::test_settings(&ours.url, |_| {});
    let token = chatstore::auth::mint_token(&settings.auth, "bench")?;

    let half = Duration::from_secs(args.seconds.max(2) / 2);
    let _ = writeln!(
        report,
        "| clients | chatstore turns/s | p50 | p99 | pgbench turns/s | pgbench mean latency | ratio |\n|---|---|---|---|---|---|---|"
    );
    let mut requests = 0usize;
    let mut cpu_before = footprint(server.pid()).map_or(0, |(_, ticks)| ticks);
    let mut cpu_per_request = f64::NAN;
    drive(&server.address, &token, 4, Duration::from_secs(1)).await?; // warm-up
    for clients in [1usize, 16, 64] {
        let mut run = Run::default();
        let (mut pg_tps, mut pg_latency) = (0.0, 0.0);
        if clients == 64 {
            cpu_before = footprint(server.pid()).map_or(0, |(_, ticks)| ticks);
            requests = 0;
        }
        for _ in 0..2 {
            let part = drive(&server.address, &token, clients, half).await?;
            requests += part.turns * 2;
            run.turns += part.turns;
            run.elapsed += part.elapsed;
            run.latencies.samples.extend(part.latencies.samples);
            let (tps, latency) = pgbench(args.shared, reference_name, clients, half)?;
            pg_tps += tps / 2.0;
            pg_latency += latency / 2.0;
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
    }
    let peak_mb = footprint(server.pid()).map_or(f64::NAN, |(kb, _)| kb as f64 / 1024.0);
    let _ = writeln!(
        report,
        "\nServer footprint after the runs: peak RSS **{peak_mb:.1} MB**; CPU **{cpu_per_request:.0} µs per request** \
         in the 64-client runs (server process only; each turn is two requests)."
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
