//! The embedded build: turns on the default SQLite store, next to the Agents SDK's
//! `SQLiteSession` doing the same turns from Python (`peers/sqlite_session_turns.py`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use chatstore_tests::{Backend, ServerProcess, TestDatabase};
use serde::Deserialize;

use crate::turns::{Run, SESSIONS, TurnArgs, bench_token, drive, load_sessions};

const HISTORY: usize = 100;
const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/sqlite_session_turns.py");

/// Throughput and latency of one side of a row, in turns per second and microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TurnFigures {
    pub(crate) per_second: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

impl TurnFigures {
    fn of(run: &Run) -> Self {
        let micros = |quantile| run.latencies.percentile(quantile).as_secs_f64() * 1e6;
        Self { per_second: run.per_second(), p50_us: micros(0.5), p99_us: micros(0.99) }
    }
}

/// One row of the embedded table: chatstore at each durability and the SDK, measured
/// interleaved at `clients` clients. Kept apart from its text so a chart can be drawn from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EmbeddedRow {
    pub(crate) clients: usize,
    /// `database.sqlite_synchronous = "normal"`, the default.
    pub(crate) normal: TurnFigures,
    /// `database.sqlite_synchronous = "full"`, the SDK's durability.
    pub(crate) full: TurnFigures,
    pub(crate) sdk: TurnFigures,
}

impl EmbeddedRow {
    /// chatstore's turns per SDK turn, at the default durability.
    pub(crate) fn ratio(&self) -> f64 {
        self.normal.per_second / self.sdk.per_second
    }

    /// chatstore's turns per SDK turn, both syncing at every commit.
    pub(crate) fn ratio_both_full(&self) -> f64 {
        self.full.per_second / self.sdk.per_second
    }

    fn write(&self, report: &mut String) {
        let cell = |figures: &TurnFigures| {
            format!(
                "{:.0} | {:.0} µs | {:.0} µs",
                figures.per_second, figures.p50_us, figures.p99_us
            )
        };
        let _ = writeln!(
            report,
            "| {} | {} | {} | {} | **{:.2}x** | {:.2}x |",
            self.clients,
            cell(&self.normal),
            cell(&self.full),
            cell(&self.sdk),
            self.ratio(),
            self.ratio_both_full(),
        );
    }
}

/// What the Python peer printed for one run.
#[derive(Debug, Default, Deserialize)]
struct PeerRun {
    turns: usize,
    elapsed: f64,
    p50_us: f64,
    p99_us: f64,
}

/// A Python that can `import agents`: `CHATSTORE_BENCH_PYTHON`, else the Python client's
/// virtualenv (scripts/python-tests makes it, with openai-agents), else `python3`.
fn python() -> Option<PathBuf> {
    let client_venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python/.venv/bin/python");
    let candidates = std::env::var_os("CHATSTORE_BENCH_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([client_venv, PathBuf::from("python3")]);
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import agents"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

fn peer(python: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(python).arg(PEER).args(args).output().context("cannot run python")?;
    if !output.status.success() {
        bail!("the SQLiteSession peer failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The table, or a line saying why it could not be measured (then no rows).
pub(crate) async fn embedded_turns(
    args: &TurnArgs<'_>,
    report: &mut String,
) -> anyhow::Result<Vec<EmbeddedRow>> {
    let Some(python) = python() else {
        let message = "not measured: no Python with the Agents SDK was found. Install it with \
                       `pip install openai-agents` (or run scripts/python-tests, which makes \
                       clients/python/.venv), or set CHATSTORE_BENCH_PYTHON to such a python.";
        eprintln!("embedded SQLite table {message}");
        let _ = writeln!(report, "_{message}_");
        return Ok(Vec::new());
    };
    let ours = TestDatabase::create(Backend::Sqlite).await.context("a SQLite file")?;
    let ours_full = TestDatabase::create(Backend::Sqlite).await.context("a SQLite file")?;
    let directory =
        std::env::temp_dir().join(format!("chatstore-bench-sdk-{}", std::process::id()));
    std::fs::create_dir_all(&directory)?;
    let outcome =
        measure(args, &python, [&ours, &ours_full], &directory.join("sessions.db"), report).await;
    ours.drop_database().await;
    ours_full.drop_database().await;
    let _ = std::fs::remove_dir_all(&directory);
    outcome
}

/// Turns on two chatstore servers, each on its own file: the default
/// `database.sqlite_synchronous = "normal"`, and `"full"`, which syncs at every commit as the
/// SDK does; and the SDK's turns, all three interleaved round by round.
async fn measure(
    args: &TurnArgs<'_>,
    python: &Path,
    ours: [&TestDatabase; 2],
    sdk_file: &Path,
    report: &mut String,
) -> anyhow::Result<Vec<EmbeddedRow>> {
    let sdk_file = sdk_file.to_str().context("a UTF-8 temporary path")?;
    peer(python, &["load", sdk_file, &SESSIONS.to_string(), &HISTORY.to_string()])?;
    let mut servers = Vec::new();
    for (database, synchronous) in ours.into_iter().zip(["normal", "full"]) {
        let db = database.connect().await;
        db.migrate().await?;
        load_sessions(&db, "", HISTORY).await?;
        db.close().await;
        // The default configuration's pool (the test configuration's is smaller).
        let server = ServerProcess::start(
            args.binary,
            &database.url,
            &[
                ("APP__DATABASE__MAX_CONNECTIONS", "16"),
                ("APP__DATABASE__SQLITE_SYNCHRONOUS", synchronous),
                crate::turns::DEFAULT_INDEXING,
            ],
        );
        let token = bench_token(&database.url)?;
        drive(&server.address, &token, "", 4, Duration::from_secs(1)).await?; // warm-up
        servers.push((server, token));
    }

    let _ = writeln!(
        report,
        "| clients | chatstore turns/s | p50 | p99 | chatstore, synchronous=FULL | p50 | p99 | SQLiteSession turns/s | p50 | p99 | ratio | ratio, both FULL |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let part = Duration::from_secs((args.seconds / u64::from(2 * args.rounds)).max(1));
    let names = ["chatstore", "chatstore, synchronous=FULL", "SQLiteSession"];
    let mut chart = crate::charts::empty_bars(&names);
    let mut rows = Vec::new();
    for clients in [1usize, 16] {
        let mut runs = [Run::default(), Run::default()];
        let mut sdk = PeerRun::default();
        let (mut sdk_p50, mut sdk_p99) = (0.0, 0.0);
        for _ in 0..args.rounds {
            for ((server, token), run) in servers.iter().zip(&mut runs) {
                run.absorb(drive(&server.address, token, "", clients, part).await?);
            }
            let seconds = part.as_secs().to_string();
            let line = peer(
                python,
                &["run", sdk_file, &SESSIONS.to_string(), &clients.to_string(), &seconds],
            )?;
            let sdk_run: PeerRun = serde_json::from_str(line.trim())
                .with_context(|| format!("unexpected peer output {line:?}"))?;
            sdk.turns += sdk_run.turns;
            sdk.elapsed += sdk_run.elapsed;
            sdk_p50 += sdk_run.p50_us / f64::from(args.rounds);
            sdk_p99 += sdk_run.p99_us / f64::from(args.rounds);
        }
        let [normal, full] = &runs;
        let row = EmbeddedRow {
            clients,
            normal: TurnFigures::of(normal),
            full: TurnFigures::of(full),
            sdk: TurnFigures {
                per_second: sdk.turns as f64 / sdk.elapsed,
                p50_us: sdk_p50,
                p99_us: sdk_p99,
            },
        };
        row.write(report);
        for (bars, tps) in
            chart.iter_mut().zip([row.normal.per_second, row.full.per_second, row.sdk.per_second])
        {
            bars.values.push(tps);
        }
        rows.push(row);
    }
    let title = "Turns on SQLite: chatstore and the Agents SDK's SQLiteSession";
    let _ = writeln!(
        report,
        "\n{}",
        crate::charts::turns_by_clients("sqlite", title, &[1, 16], &chart)?
    );
    for (server, _) in servers {
        server.stop();
    }
    Ok(rows)
}
