//! ChatKit turns: `threads.add_user_message` through `POST /chatkit` with the echo responder,
//! the Server-Sent Events answer read to its end, on kept-alive connections, as a ChatKit front
//! end sends them. Each client talks in a thread of its own, made with `threads.create`.
//!
//! Three servers answer the same turns, interleaved round by round: chatstore, and
//! chatkit-python's `ChatKitServer` with an echo `respond` (`peers/chatkit_server.py`, a
//! FastAPI app under uvicorn) over two stores: (a) one built the way the seed
//! `001_9718ca2640416d75.txt` builds its `PostgresStore` (psycopg, a connection per call), and
//! (b) the project's own `ChatstoreStore`, talking to a second chatstore server. Every side
//! writes to its own database on the same PostgreSQL, where its stored items are counted
//! afterwards.
//!
//! A streamed answer is many small writes, so a server that leaves Nagle's algorithm on stalls
//! each answer after the first on a connection for the client's delayed ACK (40 ms): this table
//! is where that shows.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chatstore_tests::{Backend, ServerProcess, TestDatabase};
use repositories::sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::http::Connection;
use crate::micros;
use crate::turns::{Run, TurnArgs, bench_token, cpu_ticks, serve};

const CLIENTS: [usize; 3] = [1, 16, 64];
const MESSAGE: &str = "What did we discuss about the dragon campaign earlier today?";
const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/chatkit_server.py");
const REQUIREMENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/requirements.txt");
/// A turn that takes longer than this has failed (a peer that hangs must not hang the bench).
const TURN_TIMEOUT: Duration = Duration::from_secs(30);

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

/// One `POST /chatkit` whose answer must be a finished stream, within [`TURN_TIMEOUT`].
async fn chatkit_turn(connection: &mut Connection, body: Bytes) -> anyhow::Result<Bytes> {
    let answer = tokio::time::timeout(TURN_TIMEOUT, connection.post_json("/chatkit", body))
        .await
        .context("no answer within the turn timeout")??;
    check_answer(&answer)?;
    Ok(answer)
}

/// Opens a connection and creates the client's thread; returns both.
async fn open_thread(address: &str, token: &str) -> anyhow::Result<(Connection, String)> {
    let mut connection = Connection::open(address, token).await?;
    let body = format!(r#"{{"type":"threads.create","params":{{"input":{}}}}}"#, user_input());
    let answer = chatkit_turn(&mut connection, Bytes::from(body)).await?;
    let first = std::str::from_utf8(&answer)?
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .context("an empty stream")?;
    let event: serde_json::Value = serde_json::from_str(first)?;
    let thread_id =
        event["thread"]["id"].as_str().context("the stream did not start with thread.created")?;
    Ok((connection, thread_id.to_owned()))
}

/// What one side's clients did in one measurement.
#[derive(Debug, Default)]
struct Driven {
    run: Run,
    /// Threads made (each stored two items, as a turn does).
    threads: usize,
    /// Turns (and thread creations) that failed: an error status, a broken or unfinished
    /// stream, a timeout.
    failed: usize,
    /// The first failure's message, for the report.
    first_error: Option<String>,
}

/// `clients` concurrent clients sending user messages for `duration`. A failed turn is
/// counted and the client carries on, on a new connection if its old one broke.
async fn drive(
    address: &str,
    token: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Driven> {
    let mut driven = Driven::default();
    let mut thread_ids = Vec::new();
    for _ in 0..clients {
        match open_thread(address, token).await {
            Ok((_, thread_id)) => thread_ids.push(thread_id),
            Err(err) => {
                driven.failed += 1;
                driven.first_error.get_or_insert_with(|| format!("{err:#}"));
            }
        }
    }
    driven.threads = thread_ids.len();
    // Fresh connections for the timed turns: while a slow server made the other clients'
    // threads, the first connections sat idle, and uvicorn closes a connection idle for 5 s.
    let mut threads = Vec::new();
    for thread_id in thread_ids {
        threads.push((Connection::open(address, token).await?, thread_id));
    }
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for (mut connection, thread_id) in threads {
        let (address, token) = (address.to_owned(), token.to_owned());
        let (failed_sender, failed) = tokio::sync::oneshot::channel();
        failures.push(failed);
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(format!(
                r#"{{"type":"threads.add_user_message","params":{{"thread_id":"{thread_id}","input":{}}}}}"#,
                user_input()
            ));
            let mut latencies = Vec::new();
            let (mut failed, mut first_error) = (0usize, None);
            while Instant::now() < deadline {
                let turn = Instant::now();
                match chatkit_turn(&mut connection, body.clone()).await {
                    Ok(_) => latencies.push(turn.elapsed()),
                    Err(err) => {
                        failed += 1;
                        first_error.get_or_insert_with(|| format!("{err:#}"));
                        // The connection may be broken: start again on a new one, after a
                        // pause, so a peer that refuses everything is not spun against.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if let Ok(fresh) = Connection::open(&address, &token).await {
                            connection = fresh;
                        }
                    }
                }
            }
            let _ = failed_sender.send((failed, first_error));
            anyhow::Ok(latencies)
        }));
    }
    driven.run = Run::gather(tasks, started).await?;
    for failed in failures {
        let (count, error) = failed.await?;
        driven.failed += count;
        if let Some(error) = error {
            driven.first_error.get_or_insert(error);
        }
    }
    Ok(driven)
}

/// A Python that can run the peer: `CHATSTORE_BENCH_CHATKIT_PYTHON`, else the virtualenv
/// beside the peer (`peers/.venv`, made from `peers/requirements.txt`), else `python3`.
fn python() -> Option<PathBuf> {
    let peer_venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/.venv/bin/python");
    let candidates = std::env::var_os("CHATSTORE_BENCH_CHATKIT_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([peer_venv, PathBuf::from("python3")]);
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import chatkit, fastapi, uvicorn, psycopg, httpx"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

/// A running `peers/chatkit_server.py`, killed when dropped.
struct Peer {
    child: Child,
    address: String,
}

impl Peer {
    /// Starts the peer with `store` (`psycopg` or `chatstore`) over `url`, and waits until it
    /// answers.
    fn start(python: &Path, store: &str, url: &str) -> anyhow::Result<Self> {
        let port = chatstore_tests::free_port();
        let child = Command::new(python)
            .arg(PEER)
            .args([store, &port.to_string(), url])
            .stdout(Stdio::null())
            .spawn()
            .context("cannot run python")?;
        let mut peer = Self { child, address: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = peer.child.try_wait()? {
                anyhow::bail!("the {store} peer exited ({status}) before it listened");
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the {store} peer did not listen within a minute"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(peer)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One side's figures at one client count.
#[derive(Debug, Default, Clone)]
pub(crate) struct SideResult {
    pub(crate) turns_per_second: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) failed: usize,
}

impl SideResult {
    fn of(driven: &Driven) -> Self {
        Self {
            turns_per_second: driven.run.per_second(),
            p50: driven.run.latencies.percentile(0.5),
            p99: driven.run.latencies.percentile(0.99),
            failed: driven.failed,
        }
    }

    fn cells(&self) -> String {
        if self.turns_per_second == 0.0 {
            return format!("0 | – | – | {}", self.failed);
        }
        format!(
            "{:.0} | {} | {} | {}",
            self.turns_per_second,
            micros(self.p50),
            micros(self.p99),
            self.failed
        )
    }
}

/// One row: chatstore, (a) and (b) at one client count, and where the CPU went in (b)'s runs.
#[derive(Debug, Default, Clone)]
pub(crate) struct ChatkitRow {
    pub(crate) clients: usize,
    pub(crate) chatstore: SideResult,
    pub(crate) psycopg: SideResult,
    pub(crate) chatstore_store: SideResult,
    /// CPU time over wall time in (b)'s runs (1.0 is one core busy): the Python server's, and
    /// the chatstore server's behind it.
    pub(crate) python_cpu: f64,
    pub(crate) chatstore_cpu_behind_python: f64,
}

/// The whole table, kept so it can be drawn as well as written.
#[derive(Debug, Default, Clone)]
pub(crate) struct ChatkitTable {
    pub(crate) rows: Vec<ChatkitRow>,
    /// Per side (chatstore, (a), (b)): threads made, turns answered, items found stored.
    pub(crate) stored: [(usize, usize, i64); 3],
    /// The first failure each side saw, if any.
    pub(crate) first_errors: [Option<String>; 3],
}

/// The section's heading and what it measures.
fn write_intro(args: &TurnArgs<'_>, report: &mut String) {
    let _ = writeln!(
        report,
        "\n## ChatKit turns against the Python stack\n\n\
         A ChatKit turn is `POST /chatkit` `threads.add_user_message` with an echo answer (the user's words \
         back as one assistant message, a text delta a word), its Server-Sent Events answer read to the end, \
         on one kept-alive connection per client, each client in a thread of its own (made with \
         `threads.create`). Three servers answer the same turns from the same load generator, interleaved \
         round by round, each writing to its own database on the same PostgreSQL:\n\n\
         - **chatstore**: `chatstore serve` with its default echo responder and a pool of {pool} connections.\n\
         - **(a) psycopg**: chatkit-python 1.6.5's `ChatKitServer` with an echo `respond`, a FastAPI app \
         (`POST /chatkit`, a `StreamingResponse` for streams) under uvicorn (one worker; uvloop and httptools, \
         which uvicorn picks when its standard extras are installed), over a `Store` built the way the seed \
         `001_9718ca2640416d75.txt` builds its `PostgresStore`: psycopg 3, a connection opened for every \
         store call, synchronous calls inside the async methods (`crates/bench/peers/chatkit_server.py`).\n\
         - **(b) ChatstoreStore**: the same Python server over the project's own `ChatstoreStore` \
         (clients/python), talking to a second `chatstore serve` on the same PostgreSQL: what a Python team \
         would deploy in front of chatstore.\n\n\
         Each client count runs {rounds} times, {seconds} s in all, split between the three. A turn fails when \
         it answers an error, its stream breaks or ends without both items done, or it takes over 30 s; failed \
         turns are counted per side. The CPU columns are CPU time over wall time in (b)'s runs (100% is one \
         core busy), from /proc: the Python server's, and that of the chatstore server behind it. The Python \
         side runs in a virtualenv made with `python3 -m venv crates/bench/peers/.venv && \
         crates/bench/peers/.venv/bin/pip install -r crates/bench/peers/requirements.txt` (or set \
         `CHATSTORE_BENCH_CHATKIT_PYTHON`). Streamed answers are many small writes: without `TCP_NODELAY` on \
         accepted connections every answer after a connection's first waited about 40 ms for the client's \
         delayed ACK (23 turns/s at 1 client, p50 44 ms), which this table also watches for.\n",
        pool = crate::turns::SERVER_POOL,
        rounds = args.rounds,
        seconds = args.seconds,
    );
}

/// The ChatKit turn table on PostgreSQL, at 1, 16 and 64 clients.
pub(crate) async fn chatkit_turns(args: &TurnArgs<'_>, report: &mut String) -> anyhow::Result<()> {
    write_intro(args, report);
    let Some(python) = python() else {
        let message = format!(
            "not measured: no Python with chatkit-python, FastAPI, uvicorn and psycopg was found. \
             Make one with `python3 -m venv crates/bench/peers/.venv && \
             crates/bench/peers/.venv/bin/pip install -r {REQUIREMENTS}`, or set \
             CHATSTORE_BENCH_CHATKIT_PYTHON to such a python."
        );
        eprintln!("ChatKit table {message}");
        let _ = writeln!(report, "_{message}_");
        return Ok(());
    };
    let mut databases = Vec::new();
    for _ in 0..3 {
        databases.push(
            TestDatabase::create(Backend::Postgres).await.context("no PostgreSQL to benchmark")?,
        );
    }
    let outcome = measure(args, &python, &databases).await;
    for database in &databases {
        database.drop_database().await;
    }
    let table = outcome?;
    write_table(report, &table);
    write_chart(report, &table)?;
    Ok(())
}

/// Counts user `bench`'s ChatKit items: the same query fits chatstore's tables and the seed's.
async fn stored_items(database: &TestDatabase) -> anyhow::Result<i64> {
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
    Ok(stored)
}

async fn measure(
    args: &TurnArgs<'_>,
    python: &Path,
    databases: &[TestDatabase],
) -> anyhow::Result<ChatkitTable> {
    let [ours, seed, behind] = databases else { anyhow::bail!("three databases") };
    let server = serve(args.binary, &ours.url);
    let token = bench_token(&ours.url)?;
    let psycopg = Peer::start(python, "psycopg", &seed.url)?;
    // (b): a chatstore server of its own, so its CPU time is (b)'s alone.
    let server_behind: ServerProcess = serve(args.binary, &behind.url);
    let token_behind = bench_token(&behind.url)?;
    let chatstore_store = Peer::start(python, "chatstore", &server_behind.address)?;

    let sides = [
        (server.address.as_str(), token.as_str()),
        (psycopg.address.as_str(), "bench"),
        (chatstore_store.address.as_str(), token_behind.as_str()),
    ];
    let mut table = ChatkitTable::default();
    let mut totals = [(0usize, 0usize); 3];
    let mut note = |index: usize, driven: &Driven, totals: &mut [(usize, usize); 3]| {
        totals[index].0 += driven.threads;
        totals[index].1 += driven.run.turns;
        if table.first_errors[index].is_none() {
            table.first_errors[index].clone_from(&driven.first_error);
        }
    };
    for (index, (address, token)) in sides.iter().enumerate() {
        let warm_up = drive(address, token, 4, Duration::from_secs(1)).await?;
        note(index, &warm_up, &mut totals);
    }
    let part = Duration::from_secs((args.seconds / u64::from(3 * args.rounds)).max(1));
    let mut rows = Vec::new();
    for clients in CLIENTS {
        let mut driven: [Driven; 3] = Default::default();
        let (mut python_ticks, mut behind_ticks, mut wall) = (0u64, 0u64, Duration::ZERO);
        for _ in 0..args.rounds {
            for (index, (address, token)) in sides.iter().enumerate() {
                let ticks_before =
                    (cpu_ticks(chatstore_store.pid()), cpu_ticks(server_behind.pid()));
                let started = Instant::now();
                let part_run = drive(address, token, clients, part).await?;
                if index == 2 {
                    wall += started.elapsed();
                    python_ticks += cpu_ticks(chatstore_store.pid()) - ticks_before.0;
                    behind_ticks += cpu_ticks(server_behind.pid()) - ticks_before.1;
                }
                note(index, &part_run, &mut totals);
                let side = &mut driven[index];
                side.run.absorb(part_run.run);
                side.failed += part_run.failed;
            }
        }
        let share = |ticks: u64| ticks as f64 / 100.0 / wall.as_secs_f64().max(1e-9);
        rows.push(ChatkitRow {
            clients,
            chatstore: SideResult::of(&driven[0]),
            psycopg: SideResult::of(&driven[1]),
            chatstore_store: SideResult::of(&driven[2]),
            python_cpu: share(python_ticks),
            chatstore_cpu_behind_python: share(behind_ticks),
        });
    }
    drop((psycopg, chatstore_store));
    server.stop();
    server_behind.stop();

    // Every answered turn stored the user's message and the answer, and so did every
    // `threads.create`; a failed one may have stored its user message, or both.
    for (index, database) in [ours, seed, behind].into_iter().enumerate() {
        let stored = stored_items(database).await?;
        let (threads, turns) = totals[index];
        let failed: usize = rows
            .iter()
            .map(|row| [&row.chatstore, &row.psycopg, &row.chatstore_store][index].failed)
            .sum();
        let answered = i64::try_from(2 * (threads + turns))?;
        let most = answered + i64::try_from(2 * failed)?;
        anyhow::ensure!(
            (answered..=most).contains(&stored),
            "side {index}: {stored} ChatKit items stored, expected {answered} (or up to {most})"
        );
        table.stored[index] = (threads, turns, stored);
    }
    table.rows = rows;
    Ok(table)
}

/// Turns/s by client count for the three sides, under the table.
fn write_chart(report: &mut String, table: &ChatkitTable) -> anyhow::Result<()> {
    let clients: Vec<usize> = table.rows.iter().map(|row| row.clients).collect();
    let side = |name: &str, figure: fn(&ChatkitRow) -> f64| crate::charts::Bars {
        name: name.to_owned(),
        values: table.rows.iter().map(figure).collect(),
    };
    let series = [
        side("chatstore", |row| row.chatstore.turns_per_second),
        side("(a) chatkit-python, psycopg store", |row| row.psycopg.turns_per_second),
        side("(b) chatkit-python, ChatstoreStore", |row| row.chatstore_store.turns_per_second),
    ];
    let title = "ChatKit turns: chatstore and chatkit-python";
    let _ = writeln!(
        report,
        "\n{}",
        crate::charts::turns_by_clients("chatkit", title, &clients, &series)?
    );
    Ok(())
}

fn write_table(report: &mut String, table: &ChatkitTable) {
    let _ = writeln!(
        report,
        "| clients | chatstore / (a) | chatstore / (b) | chatstore turns/s | p50 | p99 | failed \
         | (a) psycopg turns/s | p50 | p99 | failed | (b) ChatstoreStore turns/s | p50 | p99 | failed \
         | (b): Python server CPU | (b): chatstore CPU |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let ratio = |ours: f64, theirs: f64| {
        if theirs > 0.0 { format!("**{:.1}x**", ours / theirs) } else { "–".to_owned() }
    };
    for row in &table.rows {
        let ours = row.chatstore.turns_per_second;
        let _ = writeln!(
            report,
            "| {} | {} | {} | {} | {} | {} | {:.0}% | {:.0}% |",
            row.clients,
            ratio(ours, row.psycopg.turns_per_second),
            ratio(ours, row.chatstore_store.turns_per_second),
            row.chatstore.cells(),
            row.psycopg.cells(),
            row.chatstore_store.cells(),
            row.python_cpu * 100.0,
            row.chatstore_cpu_behind_python * 100.0,
        );
    }
    let names = ["chatstore", "(a)", "(b)"];
    let stored: Vec<String> = table
        .stored
        .iter()
        .zip(names)
        .map(|((threads, turns, stored), name)| {
            format!("{name}: {stored} items for {turns} turns in {threads} threads")
        })
        .collect();
    let _ = writeln!(
        report,
        "\nAfterwards every answered turn's two items were found stored, counted in each side's \
         own database ({}).",
        stored.join("; ")
    );
    for (error, name) in table.first_errors.iter().zip(names) {
        if let Some(error) = error {
            let error: String = error.chars().take(300).collect();
            let _ = writeln!(report, "\n{name}'s first failure: `{}`", error.replace('`', "'"));
        }
    }
}
