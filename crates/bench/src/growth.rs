//! How turns hold up as histories grow: the turn workload at 100, 10,000 and 100,000 items
//! per session, and a full-history read of a 10,000-item session.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use chatstore_tests::{Backend, TestDatabase};

use crate::http::Connection;
use crate::turns::{
    PgbenchRun, Reference, Run, TurnArgs, bench_token, drive, footprint, load_reference,
    load_sessions_sql, pgbench, serve,
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
        load_reference(args.shared, Reference::FiveStatements, reference, history)?;
    }
    db.close().await;
    let server = serve(args.binary, &ours.url);
    let token = bench_token(&ours.url)?;
    for history in HISTORIES {
        drive(&server.address, &token, &prefix(history), 4, Duration::from_secs(1)).await?;
    }

    // Round by round, every history for chatstore then for pgbench, so drift hits all alike;
    // each round starts one history later, so none is always measured first (after the
    // previous round's largest) or last (after the most churn on the chats table).
    let part = Duration::from_secs((args.seconds / u64::from(2 * args.rounds)).max(1));
    let mut runs: Vec<Run> = HISTORIES.iter().map(|_| Run::default()).collect();
    let mut reference_runs = vec![PgbenchRun::default(); HISTORIES.len()];
    for round in 0..args.rounds as usize {
        for turn in 0..HISTORIES.len() {
            let index = (round + turn) % HISTORIES.len();
            let (history, reference) = (HISTORIES[index], &references[index]);
            let run = drive(&server.address, &token, &prefix(history), CLIENTS, part).await?;
            runs[index].absorb(run);
            let name = reference.pg_name().context("a PostgreSQL database")?;
            let reference_run =
                pgbench(args.shared, Reference::FiveStatements, name, CLIENTS, part)?;
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

    // A fresh server, so its peak memory is these reads' and not the turn runs'.
    let server = serve(args.binary, &ours.url);
    let mut connection = Connection::open(&server.address, &token).await?;
    connection.get(&format!("/sessions/{}s0/items?limit=50", prefix(100))).await?;
    let peak_mb = || footprint(server.pid()).map_or(f64::NAN, |(kb, _)| kb as f64 / 1024.0);
    let before = peak_mb();
    let (medium, medium_bytes) = full_reads(&mut connection, &prefix(10_000), FULL_READS).await?;
    let after_medium = peak_mb();
    // Ten times the history: if a read held the history, the peak would grow with it.
    let (large, large_bytes) = full_reads(&mut connection, &prefix(100_000), 3).await?;
    let after_large = peak_mb();
    server.stop();
    // Streamed in pages, a read's memory must not follow the history: ten times the items may
    // not raise the peak by much more than the smaller reads did.
    let verdict = if after_large - before <= 1.5 * (after_medium - before) + 5.0 {
        "Reads are streamed in pages of 500 items, so the peak does not follow the history's size; \
         what it gains over the idle server is the allocator keeping freed pages of the page \
         buffers for a while."
    } else {
        "**The peak grew with the history: a full read is holding more than a page.**"
    };
    let _ = writeln!(
        report,
        "\nFull-history reads, `GET /sessions/{{id}}/items` without `limit`, on a fresh server: a session of \
         10,000 items ({:.1} MB of JSON) {FULL_READS} times, **{}** p50, {} p99; then one of 100,000 items \
         ({:.1} MB) 3 times, {} p50. The server's peak RSS: **{before:.1} MB** before, **{after_medium:.1} MB** \
         after the 10,000-item reads, **{after_large:.1} MB** after the 100,000-item ones. {verdict}",
        medium_bytes as f64 / 1e6,
        micros(medium.percentile(0.5)),
        micros(medium.percentile(0.99)),
        large_bytes as f64 / 1e6,
        micros(large.percentile(0.5)),
    );
    Ok(())
}

/// `reads` full reads of session `{prefix}s0`: their times and the body's size.
async fn full_reads(
    connection: &mut Connection,
    prefix: &str,
    reads: usize,
) -> anyhow::Result<(Series, usize)> {
    let mut times = Series::default();
    let mut bytes = 0;
    for _ in 0..reads {
        let started = Instant::now();
        let body = connection.get(&format!("/sessions/{prefix}s0/items")).await?;
        times.samples.push(started.elapsed());
        bytes = body.len();
        anyhow::ensure!(body.ends_with(b"]}"), "a full read ended early");
    }
    Ok((times, bytes))
}
