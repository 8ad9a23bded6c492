//! How turns hold up as histories grow: the turn workload at 100, 10,000 and 100,000 items
//! per session, and a full-history read of a 10,000-item session.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use chatstore_tests::{Backend, ServerProcess, TestDatabase};

use crate::http::Connection;
use crate::turns::{
    PgbenchRun, Run, SERVER_POOL, TurnArgs, bench_token, drive, footprint, load_reference,
    load_sessions_sql, pgbench,
};
use crate::{Series, micros};

const HISTORIES: [usize; 3] = [100, 10_000, 100_000];
const CLIENTS: usize = 16;
/// Full reads of the 10,000-item session.
const FULL_READS: usize = 20;

/// The session prefix of the sessions of `history` items.
fn prefix(history: usize) -> String {
    format!("h{history}-")
}

pub(crate) async fn history_growth(args: &TurnArgs<'_>, report: &mut String) -> anyhow::Result<()> {
    let ours =
        TestDatabase::create(Backend::Postgres).await.context("no PostgreSQL to benchmark")?;
    let mut references = Vec::new();
    for _ in HISTORIES {
        references.push(
            TestDatabase::create(Backend::Postgres).await.context("no PostgreSQL to benchmark")?,
        );
    }
    let outcome = measure(args, &ours, &references, report).await;
    ours.drop_database().await;
    for reference in &references {
        reference.drop_database().await;
    }
    outcome
}

async fn measure(
    args: &TurnArgs<'_>,
    ours: &TestDatabase,
    references: &[TestDatabase],
    report: &mut String,
) -> anyhow::Result<()> {
    let db = ours.connect().await;
    db.migrate().await?;
    for (history, reference) in HISTORIES.into_iter().zip(references) {
        eprintln!("loading {} sessions of {history} items, twice", crate::turns::SESSIONS);
        load_sessions_sql(&db, &prefix(history), history).await?;
        load_reference(args.shared, reference, history)?;
    }
    db.close().await;
    let server = ServerProcess::start(
        args.binary,
        &ours.url,
        &[("APP__DATABASE__MAX_CONNECTIONS", SERVER_POOL)],
    );
    let token = bench_token(&ours.url)?;
    for history in HISTORIES {
        drive(&server.address, &token, &prefix(history), 4, Duration::from_secs(1)).await?;
    }

    // Round by round, every history for chatstore then for pgbench, so drift hits all alike.
    let part = Duration::from_secs((args.seconds / u64::from(2 * args.rounds)).max(1));
    let mut runs: Vec<Run> = HISTORIES.iter().map(|_| Run::default()).collect();
    let mut reference_runs = vec![PgbenchRun::default(); HISTORIES.len()];
    for _ in 0..args.rounds {
        for (index, (history, reference)) in HISTORIES.into_iter().zip(references).enumerate() {
            let run = drive(&server.address, &token, &prefix(history), CLIENTS, part).await?;
            runs[index].absorb(run);
            let name = reference.pg_name().context("a PostgreSQL database")?;
            let reference_run = pgbench(args.shared, name, CLIENTS, part)?;
            reference_runs[index].tps += reference_run.tps / f64::from(args.rounds);
            reference_runs[index].latency_ms += reference_run.latency_ms / f64::from(args.rounds);
        }
    }
    server.stop();

    let _ = writeln!(
        report,
        "| items per session | chatstore turns/s | p50 | p99 | pgbench turns/s | chatstore / pgbench | chatstore / its 100-item figure |\n|---|---|---|---|---|---|---|"
    );
    let base = runs[0].per_second();
    for ((history, run), reference) in HISTORIES.into_iter().zip(&runs).zip(&reference_runs) {
        let tps = run.per_second();
        let _ = writeln!(
            report,
            "| {history} | {tps:.0} | {} | {} | {:.0} | {:.2}x | **{:.2}x** |",
            micros(run.latencies.percentile(0.5)),
            micros(run.latencies.percentile(0.99)),
            reference.tps,
            tps / reference.tps,
            tps / base,
        );
    }

    // A fresh server, so its peak memory is this read's and not the turn runs'.
    let server = ServerProcess::start(
        args.binary,
        &ours.url,
        &[("APP__DATABASE__MAX_CONNECTIONS", SERVER_POOL)],
    );
    let session = format!("/sessions/{}s0/items", prefix(10_000));
    let mut connection = Connection::open(&server.address, &token).await?;
    connection.get(&format!("{session}?limit=50")).await?;
    let before_kb = footprint(server.pid()).map_or(0, |(kb, _)| kb);
    let mut reads = Series::default();
    let mut bytes = 0;
    for _ in 0..FULL_READS {
        let started = Instant::now();
        let body = connection.get(&session).await?;
        reads.samples.push(started.elapsed());
        bytes = body.len();
        anyhow::ensure!(body.ends_with(b"]}"), "a full read ended early");
    }
    let after_kb = footprint(server.pid()).map_or(0, |(kb, _)| kb);
    server.stop();
    let _ = writeln!(
        report,
        "\nFull-history read, `GET /sessions/{{id}}/items` without `limit`, of one session of 10,000 items \
         ({:.1} MB of JSON), {FULL_READS} times on a fresh server: **{}** p50, {} p99. The server's peak RSS \
         was **{:.1} MB** before the reads and **{:.1} MB** after them: the read is streamed in pages of 500 \
         items, so memory does not grow with the history.",
        bytes as f64 / 1e6,
        micros(reads.percentile(0.5)),
        micros(reads.percentile(0.99)),
        before_kb as f64 / 1024.0,
        after_kb as f64 / 1024.0,
    );
    Ok(())
}
