//! ChatKit turns: `threads.add_user_message` through `POST /chatkit` with the echo responder,
//! the Server-Sent Events answer read to its end, on kept-alive connections, as a ChatKit front
//! end sends them. Each client talks in a thread of its own, made with `threads.create`.
//!
//! A streamed answer is many small writes, so a server that leaves Nagle's algorithm on stalls
//! each answer after the first on a connection for the client's delayed ACK (40 ms): this table
//! is where that shows.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chatstore_tests::{Backend, TestDatabase};
use repositories::sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::http::Connection;
use crate::micros;
use crate::turns::{Run, TurnArgs, bench_token, serve};

const CLIENTS: [usize; 2] = [1, 16];
const MESSAGE: &str = "What did we discuss about the dragon campaign earlier today?";

fn user_input() -> String {
    format!(
        r#"{{"content":[{{"type":"input_text","text":"{MESSAGE}"}}],"attachments":[],"inference_options":{{}}}}"#
    )
}

/// Checks that a streamed answer finished: the user's message and the answer were both done
/// (which is when they are stored), and no error event came.
fn check_answer(body: &[u8]) -> anyhow::Result<()> {
    let text = std::str::from_utf8(body)?;
    let done = text.matches(r#""type":"thread.item.done""#).count();
    anyhow::ensure!(
        done == 2 && !text.contains(r#""type":"error""#),
        "an unfinished ChatKit answer: {text}"
    );
    Ok(())
}

/// Opens a connection and creates the client's thread; returns both.
async fn open_thread(address: &str, token: &str) -> anyhow::Result<(Connection, String)> {
    let mut connection = Connection::open(address, token).await?;
    let body = format!(r#"{{"type":"threads.create","params":{{"input":{}}}}}"#, user_input());
    let answer = connection.post_json("/chatkit", Bytes::from(body)).await?;
    check_answer(&answer)?;
    let first = std::str::from_utf8(&answer)?
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .context("an empty stream")?;
    let event: serde_json::Value = serde_json::from_str(first)?;
    let thread_id =
        event["thread"]["id"].as_str().context("the stream did not start with thread.created")?;
    Ok((connection, thread_id.to_owned()))
}

/// `clients` concurrent clients sending user messages for `duration`.
async fn drive(
    address: &str,
    token: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(Run, usize)> {
    let mut threads = Vec::new();
    for _ in 0..clients {
        threads.push(open_thread(address, token).await?);
    }
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut connection, thread_id) in threads {
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(format!(
                r#"{{"type":"threads.add_user_message","params":{{"thread_id":"{thread_id}","input":{}}}}}"#,
                user_input()
            ));
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let turn = Instant::now();
                let answer = connection.post_json("/chatkit", body.clone()).await?;
                latencies.push(turn.elapsed());
                check_answer(&answer)?;
            }
            anyhow::Ok(latencies)
        }));
    }
    Ok((Run::gather(tasks, started).await?, clients))
}

/// The ChatKit turn table on PostgreSQL, at 1 and 16 clients.
pub(crate) async fn chatkit_turns(args: &TurnArgs<'_>, report: &mut String) -> anyhow::Result<()> {
    let database =
        TestDatabase::create(Backend::Postgres).await.context("no PostgreSQL to benchmark")?;
    let outcome = measure(args, &database, report).await;
    database.drop_database().await;
    outcome
}

async fn measure(
    args: &TurnArgs<'_>,
    database: &TestDatabase,
    report: &mut String,
) -> anyhow::Result<()> {
    let server = serve(args.binary, &database.url);
    let token = bench_token(&database.url)?;
    let part = Duration::from_secs((args.seconds / u64::from(args.rounds)).max(1));
    let _ = writeln!(report, "| clients | turns/s | p50 | p99 |\n|---|---|---|---|");
    let (warm_up, mut threads) = drive(&server.address, &token, 4, Duration::from_secs(1)).await?;
    let mut turns = warm_up.turns;
    for clients in CLIENTS {
        let mut run = Run::default();
        for _ in 0..args.rounds {
            let (part_run, opened) = drive(&server.address, &token, clients, part).await?;
            threads += opened;
            run.absorb(part_run);
        }
        turns += run.turns;
        let _ = writeln!(
            report,
            "| {clients} | {:.0} | {} | {} |",
            run.per_second(),
            micros(run.latencies.percentile(0.5)),
            micros(run.latencies.percentile(0.99)),
        );
    }
    server.stop();
    // Every answered turn stored the user's message and the answer, and so did every
    // `threads.create` (warm-up included).
    let db = database.connect().await;
    let stored = db
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM chatkit_items WHERE user_id = 'bench'",
        ))
        .await?
        .context("no count")?
        .try_get::<i64>("", "n")?;
    db.close().await;
    let expected = 2 * (threads + turns);
    anyhow::ensure!(
        usize::try_from(stored)? == expected,
        "{stored} ChatKit items stored, expected {expected}"
    );
    let _ = writeln!(
        report,
        "\nAfterwards every turn's two items were found stored ({stored} items in {threads} threads)."
    );
    Ok(())
}
