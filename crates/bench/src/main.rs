//! `chatstore-bench`: measures chatstore on real servers and fresh databases, over HTTP, and
//! writes `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p bench -- --out BENCHMARKS.md      # or: just bench
//! ```
//!
//! These machines are shared and noisy, so every table compares two things measured in the
//! same run, interleaved round by round, and reports their ratio.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use chatstore_tests::{Backend, TestApp, TestDatabase};
use clap::Parser;
use repositories::sea_orm::{ConnectionTrait, DbBackend, Statement};

mod charts;
mod chatkit;
mod data;
mod growth;
mod http;
mod memory;
mod search;
mod splice;
mod sqlite;
mod turns;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks chatstore and writes BENCHMARKS.md")]
pub(crate) struct Args {
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub(crate) out: std::path::PathBuf,
    /// Requests per measurement round.
    #[arg(long, default_value_t = 200)]
    pub(crate) requests: usize,
    /// Interleaved rounds per comparison.
    #[arg(long, default_value_t = 10)]
    pub(crate) rounds: usize,
    /// Run only these sections (turns, chatkit, growth, sqlite, reads, chats, tags, threads,
    /// data, search, memory); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seconds per row of the turn tables, split between chatstore and its reference.
    #[arg(long, default_value_t = 24)]
    turn_seconds: u64,
    /// How many times each row of the turn tables alternates chatstore and its reference.
    #[arg(long, default_value_t = 3)]
    turn_rounds: u32,
    /// Items per session of the turn table's rows (`--turn-histories 100` for a quick run
    /// while profiling; the published table has both).
    #[arg(long, value_delimiter = ',', default_values_t = turns::TURN_HISTORIES)]
    turn_histories: Vec<usize>,
    /// The searching user's items in the search table.
    #[arg(long, default_value_t = 1_000_000)]
    search_items: usize,
    /// Every user's items in the search table.
    #[arg(long, default_value_t = 5_000_000)]
    search_total: usize,
    /// Users in the growth table's large database, 10,000 items each.
    #[arg(long, default_value_t = 1_000)]
    growth_users: u64,
}

/// Latencies of one series of requests.
#[derive(Debug, Default, Clone)]
pub(crate) struct Series {
    pub(crate) samples: Vec<Duration>,
}

impl Series {
    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    fn mean(&self) -> Duration {
        let total: Duration = self.samples.iter().sum();
        total / u32::try_from(self.samples.len().max(1)).unwrap_or(u32::MAX)
    }
}

pub(crate) fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

/// Times `requests` sequential GETs of `path` as `user`, checking each answers 200.
pub(crate) async fn time_gets(
    app: &TestApp,
    path: &str,
    user: &str,
    requests: usize,
    series: &mut Series,
) -> anyhow::Result<()> {
    let token = app.token(user);
    let url = app.url(path);
    for _ in 0..requests {
        let started = Instant::now();
        let response = app.client.get(&url).bearer_auth(&token).send().await?;
        anyhow::ensure!(response.status() == 200, "GET {path} answered {}", response.status());
        response.bytes().await?;
        series.samples.push(started.elapsed());
    }
    Ok(())
}

/// Appends `count` items to a session, in batches, straight through the repositories.
pub(crate) async fn load_session(
    app: &TestApp,
    user: &str,
    session: &str,
    count: usize,
) -> anyhow::Result<()> {
    let user_item = r#"{"role":"user","content":"What did we discuss about the dragon campaign earlier today?"}"#;
    let assistant_item = r#"{"role":"assistant","content":"We planned a three-act campaign: the siege, the betrayal and the dragon lair. Next you wanted to flesh out the villain."}"#;
    let items: Vec<&str> =
        (0..count).map(|n| if n % 2 == 0 { user_item } else { assistant_item }).collect();
    for batch in items.chunks(5000) {
        app.db.sessions().add_items(user, session, batch, None).await?;
    }
    Ok(())
}

/// Loads a fresh database on `backend` with `load`, then times GETs of the two paths it
/// returns in interleaved rounds, so drift on a shared machine hits both alike, and writes
/// their comparison as a table row.
async fn compare_paths(
    backend: Backend,
    args: &Args,
    requests: usize,
    report: &mut String,
    load: impl AsyncFnOnce(&TestApp) -> anyhow::Result<(String, String)>,
) -> anyhow::Result<()> {
    let database = TestDatabase::create(backend).await.context("no PostgreSQL to benchmark")?;
    let outcome = async {
        let mut app = TestApp::spawn(&database, |settings| {
            settings.database.max_connections = 16;
        })
        .await;
        let (base_path, other_path) = load(&app).await?;
        let (mut base, mut other) = (Series::default(), Series::default());
        time_gets(&app, &base_path, "bench", 20, &mut Series::default()).await?;
        time_gets(&app, &other_path, "bench", 20, &mut Series::default()).await?;
        for _ in 0..args.rounds {
            time_gets(&app, &base_path, "bench", requests, &mut base).await?;
            time_gets(&app, &other_path, "bench", requests, &mut other).await?;
        }
        app.stop().await?;
        write_row(report, backend, &base, &other);
        anyhow::Ok(())
    }
    .await;
    database.drop_database().await;
    outcome
}

/// `GET /sessions/{id}/items?limit=50` on a 100-item and on a 100,000-item session.
async fn history_independence(
    backend: Backend,
    args: &Args,
    report: &mut String,
) -> anyhow::Result<()> {
    compare_paths(backend, args, args.requests, report, async |app| {
        load_session(app, "bench", "short", 100).await?;
        load_session(app, "bench", "long", 100_000).await?;
        Ok((
            "/sessions/short/items?limit=50".to_owned(),
            "/sessions/long/items?limit=50".to_owned(),
        ))
    })
    .await
}

/// `GET /chats?limit=100` for page 1 and for page 100 of a user's 10,000 chats.
async fn chat_paging_depth(
    backend: Backend,
    args: &Args,
    report: &mut String,
) -> anyhow::Result<()> {
    compare_paths(backend, args, args.requests / 4, report, async |app| {
        for n in 0..10_000 {
            let chat_id = format!("chat-{n:05}");
            let (metadata, tags) = Default::default();
            app.db.chats().create("bench", &chat_id, None, &[], metadata, tags).await?;
        }
        // Also other users' chats, so the table is not one user's alone.
        for n in 0..10_000 {
            let (user, chat_id) = (format!("other-{}", n % 50), format!("chat-{n:05}"));
            let (metadata, tags) = Default::default();
            app.db.chats().create(&user, &chat_id, None, &[], metadata, tags).await?;
        }
        // Walk to page 100 once to learn its cursor.
        let mut after = String::new();
        for _ in 0..99 {
            let cursor = (!after.is_empty()).then_some(after.as_str());
            let active = repositories::ChatFilter::default();
            let page = app
                .db
                .chats()
                .list("bench", &active, cursor, repositories::Order::Desc, 100)
                .await?;
            after = page.after.context("fewer than 100 pages")?;
        }
        Ok(("/chats?limit=100".to_owned(), format!("/chats?limit=100&after={after}")))
    })
    .await
}

/// `GET /chats?limit=100&tag=work` for page 1 and for page 100 (the last) of a user's 10,000
/// chats tagged `work`, among 20,000 of theirs, and 10,000 other users' chats tagged the same.
async fn tagged_chat_paging_depth(
    backend: Backend,
    args: &Args,
    report: &mut String,
) -> anyhow::Result<()> {
    compare_paths(backend, args, args.requests / 4, report, async |app| {
        let work = || repositories::Tags::parse(vec!["work".to_owned()]);
        for n in 0..20_000 {
            let chat_id = format!("chat-{n:05}");
            let tags = if n % 2 == 0 { work()? } else { repositories::Tags::default() };
            let metadata = repositories::Metadata::default();
            app.db.chats().create("bench", &chat_id, None, &[], metadata, tags).await?;
        }
        for n in 0..10_000 {
            let (user, chat_id) = (format!("other-{}", n % 50), format!("chat-{n:05}"));
            let metadata = repositories::Metadata::default();
            app.db.chats().create(&user, &chat_id, None, &[], metadata, work()?).await?;
        }
        // As autovacuum would after these inserts (it is off on the benchmark's server):
        // without statistics PostgreSQL plans the filter by reading every tagged chat.
        app.db.connection().execute_unprepared("ANALYZE").await?;
        let tagged = repositories::ChatFilter { include_inactive: false, tags: work()? };
        let mut after = String::new();
        for _ in 0..99 {
            let cursor = (!after.is_empty()).then_some(after.as_str());
            let page = app
                .db
                .chats()
                .list("bench", &tagged, cursor, repositories::Order::Desc, 100)
                .await?;
            after = page.after.context("fewer than 100 pages")?;
        }
        let first = "/chats?limit=100&tag=work".to_owned();
        Ok((first.clone(), format!("{first}&after={after}")))
    })
    .await
}

/// `GET /threads/{id}/items?limit=100`: the first and the last page of a ChatKit thread of
/// 100,000 items.
async fn thread_paging_depth(
    backend: Backend,
    args: &Args,
    report: &mut String,
) -> anyhow::Result<()> {
    use repositories::chatkit::Store as _;
    const ITEMS: usize = 100_000;
    compare_paths(backend, args, args.requests / 4, report, async |app| {
        let store = app.db.chatkit();
        store
            .save_thread(
                r#"{"id":"thr_bench","created_at":"2025-10-06T12:00:00","title":"Bench","metadata":{}}"#,
                "bench",
            )
            .await?;
        let start = chrono::DateTime::parse_from_rfc3339("2025-10-06T12:00:00Z")?;
        let item = |n: usize| {
            let created_at = start + chrono::Duration::seconds(i64::try_from(n).unwrap_or(0));
            format!(
                r#"{{"id":"msg_{n:06}","thread_id":"thr_bench","created_at":"{}","type":"assistant_message","content":[{{"type":"output_text","text":"{}","annotations":[]}}]}}"#,
                created_at.format("%Y-%m-%dT%H:%M:%S"),
                if n.is_multiple_of(2) { "The siege comes first." } else { "Then the betrayal." },
            )
        };
        match backend {
            // 100,000 transactions through the store take minutes on PostgreSQL: the rows it
            // would write are generated by the server instead (the same columns, `seq` in
            // item order), then analysed, as autovacuum would in time.
            Backend::Postgres => {
                store.add_thread_item("thr_bench", &item(0), "bench").await?;
                let sql = "INSERT INTO chatkit_items (user_id, thread_id, item_id, item_type, created_at, data) \
                    SELECT 'bench', 'thr_bench', format('msg_%s', lpad(n::text, 6, '0')), 'assistant_message', \
                           timestamptz '2025-10-06T12:00:00Z' + n * interval '1 second', \
                           replace(replace($1, 'msg_000000', format('msg_%s', lpad(n::text, 6, '0'))), \
                                   '2025-10-06T12:00:00', to_char(timestamp '2025-10-06T12:00:00' + n * interval '1 second', 'YYYY-MM-DD\"T\"HH24:MI:SS')) \
                    FROM generate_series(1, $2 - 1) n";
                let values = [item(0).into(), i64::try_from(ITEMS)?.into()];
                app.db
                    .connection()
                    .execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
                    .await?;
                app.db.connection().execute_unprepared("ANALYZE chatkit_items").await?;
            }
            Backend::Sqlite => {
                for n in 0..ITEMS {
                    store.add_thread_item("thr_bench", &item(n), "bench").await?;
                }
            }
        }
        Ok((
            "/threads/thr_bench/items?limit=100".to_owned(),
            format!("/threads/thr_bench/items?limit=100&after=msg_{:06}", ITEMS - 101),
        ))
    })
    .await
}

/// A table row comparing `base` with `other`: p50, p99, mean of each and the p50 ratio.
pub(crate) fn write_row(report: &mut String, backend: Backend, base: &Series, other: &Series) {
    let name = match backend {
        Backend::Postgres => "PostgreSQL",
        Backend::Sqlite => "SQLite",
    };
    let ratio = other.percentile(0.5).as_secs_f64() / base.percentile(0.5).as_secs_f64();
    let _ = writeln!(
        report,
        "| {name} | {} | {} | {} | {} | {} | {} | **{ratio:.2}x** |",
        micros(base.percentile(0.5)),
        micros(base.percentile(0.99)),
        micros(base.mean()),
        micros(other.percentile(0.5)),
        micros(other.percentile(0.99)),
        micros(other.mean()),
    );
}

/// What was changed for speed, and what it gained. The turn-path figures were measured while
/// making the changes, with this program's load generator: two servers, before and after,
/// on one database, alternating 4-5 s runs of 16 clients (turns/s and the server's CPU per
/// request from /proc), and instruction counts per request from `valgrind --tool=callgrind`
/// on the server, which do not depend on what else the machine is doing.
const CHANGES: &str = "## What changed, and what it gained\n\n\
Profiled with `perf record` (system-wide and on the server) and callgrind during the turn runs. PostgreSQL \
was not the limit: the server's CPU was, about 160 µs per request, a third of it in the kernel.\n\n\
- **Appends in one statement on PostgreSQL.** `POST /sessions/{id}/items` was BEGIN, the chat upsert, the \
  item INSERT and COMMIT: four round trips. A data-modifying CTE now upserts the chat (taking its row lock and \
  bumping `item_count`) and numbers the items, sent as one text array, after the count it returned; with an \
  `Idempotency-Key` the key is inserted first and the rest happens only if it was new. One round trip, no \
  explicit transaction, the same guarantees. Together with the lean load generator below, 16 clients went \
  from 0.51x to about 0.85x pgbench.\n\
- **No pool check per statement.** sqlx sends every connection it takes back into its pool a `Sync` and \
  waits for `ReadyForQuery`, in a spawned task: a second round trip for each one-statement request, and a \
  PostgreSQL backend woken for nothing. The session read and append now keep their connections out of the \
  pool between uses (up to half of it; a connection is kept only after a statement that succeeded, and goes \
  back to the pool when idle past the pool's 30 s check or past `max_lifetime`), and run on sqlx directly \
  rather than through sea-orm, whose boxing of the driver's futures copied several kilobytes per query. \
  **+23%** turns/s at 16 clients (2,500 to 3,080 with a pool of 16, +29% with 32), CPU per request \
  **117 to 88 µs**.\n\
- **Verified tokens remembered.** Checking the bearer token (base64, two JSON documents, the HMAC) was about \
  44,000 instructions, more than the rest of a session read. A token that passed is remembered by its exact \
  text and accepted again until its `exp` (with the configured leeway); keys and rules are fixed for the \
  process's life.\n\
- **The latest-items read written out.** It was built with sea-query on every request: about 52,000 \
  instructions, more than PostgreSQL spent answering it.\n\
- **mimalloc as the global allocator.** glibc's malloc and free were a sixth of the server's instructions \
  (a request makes about a hundred allocations); with mimalloc they are a twentieth. The application state \
  axum clones per request no longer copies the URL-signing key.\n\
  These three together: instructions per request **343,000 to 223,000** (callgrind), CPU per request \
  **154 to 132 µs**.\n\
- **A lean load generator.** reqwest's client cost about a quarter of the server's CPU, on the same 2 cores; \
  the load generator now drives one keep-alive HTTP/1.1 connection per client through hyper's connection \
  API, prebuilt headers and bodies, closer to what pgbench's C client costs.\n\
- **Session items keyed by position** (`(user_id, chat_id, position)`, positions `1..=item_count`). \
  `ORDER BY seq DESC LIMIT 50` let PostgreSQL choose a bitmap scan plus a sort of the whole session, \
  whose cost grows with the history; the key range `position > item_count - 50` reads 50 rows whatever \
  the plan.\n\
- **Chat cursors resolved inside the page query.** A later page first looked its cursor up, then read: \
  two round trips where page 1 has one, **1.32x** page 1 on PostgreSQL. As a row-value subquery of the \
  page query it is about **1.05x**. ChatKit thread and item pages now do the same (thread items: **1.14x to \
  1.10x** on PostgreSQL); only an empty page after a cursor asks whether the cursor exists, to tell the \
  end of the list from a cursor that names nothing (a 400).\n\
- **Stored JSON passed through.** Session items and ChatKit objects are written back from their stored \
  text, never parsed and re-encoded on the read path.\n\
- **SQLite appends in one hand-off.** sqlx runs each SQLite connection on a thread of its own, and every \
  statement is a hand-off to it and back; the server's profile was mostly the kernel switching threads. An \
  append was five (BEGIN, the chat upsert, the INSERT, COMMIT, and the pool's check on return). It is now \
  one script run as one command (`BEGIN IMMEDIATE`, upsert, INSERT of the items from `json_each`, COMMIT; \
  with an `Idempotency-Key`, each write only if the one before it wrote), on a connection held out of the \
  pool as on PostgreSQL. A held connection whose script failed or was cancelled is closed, not reused, \
  since its transaction may still be open. **1.69x to 3.43x** `SQLiteSession` at 16 clients, together \
  with the joined read below.\n\
- **Latest items joined by the database.** `GET /sessions/{id}/items?limit=50` asks for \
  `string_agg`/`group_concat` of the item texts in position order: one row crosses from the driver instead \
  of fifty, and the body is that text between `{\"items\":[` and `]}`.\n\
- **Bulk loads settled before measuring.** The growth table loads 14 million rows and then measured while \
  PostgreSQL was still checkpointing them and (autovacuum being off here) while the first reads set hint \
  bits: 100,000-item sessions came out at 0.79x to 0.93x of 100-item ones, yet the same turns without the \
  interleaved pgbench runs gave 0.99x, and pgbench running chatstore's own statements was fastest at \
  100,000. Every load now ends with `VACUUM (ANALYZE)` and `CHECKPOINT`, for both sides, and the growth \
  rounds rotate which history goes first.\n\
- **SQLite on the request's own thread.** Even as one script, each SQLite statement was a hand-off to \
  sqlx's thread for the connection and a wake-up back, twice a turn; on one client those bounded the turn, \
  not SQLite. On a SQLite file the latest-items read and the append now run synchronously on a small stock \
  of rusqlite connections (the same SQLite library, the pool's pragmas): the append takes the process's \
  writer lock first, so `BEGIN IMMEDIATE` waits only for another process, and each call is one short \
  synchronous step that a cancelled request cannot cut in half. A connection left inside a transaction is \
  closed, not reused. chatstore against itself on a busy machine: 1 client +15% (p50 623 to 516 µs), \
  `synchronous=FULL` about 2.4x.\n\
- **Search indexing off the append.** With search on, each append's trigger planned two SQL-language helpers \
  afresh and turned the items into `tsvector`s inside the turn: `EXPLAIN ANALYZE` put the trigger at 0.6 ms \
  of a 0.85 ms append, and turns ran at about half the speed of search off (0.54x on PostgreSQL, 0.52x on \
  SQLite). The helpers are PL/pgSQL now (cached plans; the trigger alone 0.6 to about 0.15 ms), and session \
  items are no longer indexed by a trigger at all: `chats.search_indexed` marks how far each chat is indexed, \
  the server indexes the rest in batches every 200 ms, and a search first indexes its own user's waiting \
  items, so it still sees every earlier write. On a busy machine, 16-client turns with search on went from \
  about 0.5x to about 0.75x of the same turns with search off.\n\
- **The ChatKit turn in single statements on PostgreSQL.** A turn's `load_thread` and item upserts were \
  sea-orm transactions of up to five round trips each, holding pooled connections (seen as backends \
  `idle in transaction`) while 64 clients queued for a pool of 32: 64 clients ran slower than 16. Each is \
  now one statement on the connections the session path already holds (a data-modifying CTE that locks the \
  thread `FOR SHARE`): at 64 clients, turns/s about 2x and p50 3-4x lower on a busy machine; p99 is not \
  yet better (see the ChatKit table).\n\
- **No JIT compilation in the search batch.** With session items indexed in batches, the turn table fell to \
  **0.06-0.10x** of the floor, p99 about 200 ms even at 1 client, while a database of 6,400 items gave \
  about 0.5x. Sampling `pg_stat_activity` every 50 ms showed appends waiting on the batch's row locks, and \
  `EXPLAIN ANALYZE` on the 6.4-million-item database showed why: the batch's statement ran in about 1 ms \
  but PostgreSQL spent about **250 ms JIT-compiling** it, since the planner, unable to see how few ranges \
  the batch's JSON holds, estimated a cost well past `jit_above_cost`. The batch now runs with \
  `SET LOCAL jit = off` (**297 ms to 3 ms** for the statement), and the turn table went back to about \
  **0.4-0.5x**. The latest-items read carries a `LIMIT` for the same planner (its estimate was a third of \
  the session, which passes `jit_above_cost` at a few hundred thousand items a session).\n\
- **One search batch per tick under load.** The background task ran batch after batch until nothing \
  waited, which under a steady stream of appends is never: it indexed a turn or two at a time without \
  pause, holding SQLite's writer lock (or PostgreSQL's chat locks) beside every append. A batch now says \
  whether it left older items waiting (it took as many chats, or as many items of a chat, as a batch may), \
  and only then does the next run at once. On SQLite, turns at 1 client went from **1.03x to 2.11x** \
  `SQLiteSession` (p99 19 ms to 1.2 ms), at 16 clients from **2.41x to 3.67x**; with the indexer off \
  altogether the same run gave 2.82x and 4.64x, the cost of search. On SQLite the batch also sends its \
  ranges as one JSON value through `json_each` (three statements per batch, not two per chat, while \
  holding the writer lock).\n\
- **Checkpoints off the append.** A checkpoint writes and syncs the database file, and SQLite has the \
  commit that crosses 1,000 pages of log pay for it. The turn's connections now leave it to the server, \
  which runs a `PASSIVE` checkpoint every 250 ms off the runtime's threads (it never waits for or blocks \
  a writer); past 10,000 pages an append still checkpoints, so a bulk load with no server keeps its log \
  bounded. Not measured on its own: it landed together with the change above.\n\
- **A search batch that no append waits for.** The batch locked each chat it indexed (`FOR UPDATE`) \
  for the length of its insert, so the appends to up to 64 chats waited for it every 200 ms: that was \
  the turn table's p99. It now locks the items it reads instead (`FOR KEY SHARE SKIP LOCKED`), which only \
  a removal must wait for, and moves a chat's mark only if it saw the whole range and the chat's row is \
  free that instant (`FOR NO KEY UPDATE SKIP LOCKED`), so the row is held for one round trip before the \
  commit; a search's catch-up still locks the chats. With `--turn-histories 100`, run back to back with \
  the binaries before and after: p99 at 16 clients **56 ms to 30 ms** (p50 9 to 11-12 ms on a busier \
  minute), throughput unchanged against the floor (0.50x and 0.50-0.51x).\n\
- **Tried and not kept: handing connections from request to request at 64 clients.** With 64 clients on \
  a pool of 32, every held connection goes back through the pool and its check (a round trip). A version \
  that queued requests on the stock and handed a finished connection straight to the longest waiter (one \
  in four still through the pool, so other work queued there moves) measured **0.55x** the floor at 64 \
  clients, as did the code it would have replaced (0.55x twice), so the check is not what limits 64 \
  clients, and the simpler code stayed. (Racing the pool on a pool that was not exhausted halved \
  16-client turns: a connection handed over cancelled the one the pool was opening, and every turn paid \
  for a new backend.)\n\
- **Where a turn's time goes (a profile, not a change).** `perf record -a` during the 16-client rows \
  (`--turn-histories 100`): per turn, PostgreSQL spent about **0.97 ms** of CPU on chatstore's statements \
  and the background search batch against **0.71 ms** on the floor's, the chatstore server **0.39 ms** \
  (HTTP, JSON and the PostgreSQL protocol spread over hyper, axum, tower and sqlx, none above 4%: \
  allocation, wake-ups and the kernel's TCP lead) and the load generator 0.10 ms, where pgbench spends \
  0.11 ms. On 2 cores that all compete, 1.46 ms of CPU a turn against 0.82 ms is about 0.56x, which is \
  where the table stands; search indexing off gave 0.60-0.63x. PostgreSQL's extra is the search batch, the \
  chat row's six indexes (an append moves `updated_at`, so its update is never HOT; the floor's table has \
  one index) and the wider rows.\n\
- **The ceiling an HTTP turn puts on the ratio (a measurement, not a change).** The turn table's 100-item \
  rows now also time an empty HTTP turn (two `GET /healthz` through the same middleware, no database), \
  and with it the most a turn doing both that and the floor's work can reach on these shared cores. In \
  six short runs (`--turn-histories 100`) on a noisy morning the ceiling came out at **0.80-0.90x** the \
  floor at every client count, and chatstore at 0.46-0.70x of the ceiling: 0.8x of the floor would need \
  the token check, the JSON, the PostgreSQL protocol and the search indexing together to cost next to \
  nothing beyond an empty request.\n\
- **Tried and not kept: polling the load generator's connections in the client's own task.** hyper's \
  connection half ran as a task of its own, so every request and answer woke one task from another. \
  Polled beside the request instead, the load generator's CPU was 47 and 58 µs per request in two runs, \
  against 48 and 53 µs for the spawned task in the two runs alternating with them: no difference worth \
  the extra code.
- **ChatKit items indexed after the turn, on PostgreSQL.** `pg_stat_statements` (with nested statements) \
  during the ChatKit table put the item upsert at 0.92 ms, 60% of it in its search triggers: the item's \
  JSON to text, the text to a `tsvector`, the entry and its GIN entries, twice a turn. The triggers now \
  only queue the item (`search_queue`, one small row in the item's transaction), and the background \
  batch indexes the queue with each item locked `FOR KEY SHARE SKIP LOCKED`, so a delete in progress is \
  never raced; a search first indexes its user's queued items, as it does for session appends. The \
  upsert fell to 0.32 ms. Run interleaved with the binary before (`--only chatkit`, before / after / \
  before / after): 16 clients **1,254 and 1,122 to 1,807 and 1,743** turns/s, p99 42 and 45 to 27 and \
  28 ms; 64 clients 1,222 and 1,224 to 1,717 and 1,783. The batch first left its lookups to the planner, \
  which on the unanalysed table hashed every item and every queue row each time (27 ms for 150 items); \
  it now reads each item by primary key and deletes each row by `ctid` (5.6 ms). With search switched \
  off, p99 at 16 clients was still 27 ms: what is left of the 25 ms target is not the indexing.\n\
- **An idle indexer sends nothing.** The background batch polled every 200 ms whether or not anything \
  was written: eight statements a tick, which kept a Neon compute from ever scaling to zero. Writes that \
  leave items to index now wake it, and after a batch that found nothing it waits for the next. Under \
  load it runs a batch per interval as before, so the turn tables are unchanged by it; the interval \
  itself was tried at 200, 50 and 20 ms (`--only turns --turn-histories 100`, one run each): 0.43, 0.42 \
  and 0.42x of the floor at 16 clients, p99 18.7, 16.5 and 17.8 ms, within this machine's noise, so \
  200 ms stays.\n\
- **Where the rest of the gap lies (measurements, not changes).** With `wrk` driving turns (a `GET \
  ?limit=50` and a `POST` of 2 items, alternating, on 64 sessions of 100 items) at 16 connections \
  against a `chatstore serve`, 10 s a run, each pair of settings interleaved on a day this machine \
  ran the floor at 2,400-2,500 turns/s: (1) **the chat row's update made HOT**: dropping every \
  secondary index of `chats` (lists, retention, the pending-search index), after which 98% of the \
  appends' updates were HOT, gained **5-7%** (2,855 and 2,964 requests/s to 3,070, 3,041 and 3,143): \
  the most that reworking those indexes could give, so they stay; (2) **TLS to PostgreSQL**: \
  chatstore and `pgbench` both connect with libpq's default `sslmode=prefer`, so both encrypt; \
  `sslmode=disable` gained 5-15% (2,729 and 2,760 to 3,141 and 2,919), which a deployment on a \
  private network can take; (3) **one Tokio worker instead of two**: no gain (2,866, 2,803, 2,846 \
  against 2,660, 2,742, 2,559); (4) **generic plans**: the statement log shows the read planned \
  afresh on every call (bind 0.055 ms beside 0.139 ms executing), but `plan_cache_mode = \
  force_generic_plan` gained nothing (3,029, 2,869, 2,882 against 2,825, 2,767, 2,984) and doubled \
  p99, as the background batch's plans went generic too.\n\
- **Tried and not kept: cheaper ChatKit events.** A `perf` profile of `POST /chatkit` turns put \
  about a tenth of the server's CPU in JSON: rebuilding every event's maps to drop nulls, and \
  writing each frame through `format!`. Dropping nulls in place and serialising frames straight into \
  their buffer left the server's CPU per turn where it was (722, 743 and 768 µs before, 738, 670 and \
  752 after, interleaved): the turn's time is in its three statements, the TLS to PostgreSQL and the \
  socket writes.\n\
- **Batches of several servers share the work.** The background batch read the waiting chats without \
  locking them (so that appends never wait), so two servers on one database took the same first 64 \
  and each indexed them. Each batch now claims its chats with a transaction-scoped advisory lock \
  (`pg_try_advisory_xact_lock`, which appends never take), tried on at most four times as many \
  candidates as the chats a batch may take, and passes over chats another batch holds. For one \
  server it cost nothing measurable (`--only turns --turn-histories 100`, the binary before and \
  after alternating: 0.47 and 0.45x of the floor before, 0.54 and 0.51x after at 16 clients; 0.51 \
  and 0.49x before, 0.47 and 0.50x after at 64).\n\
- **A ChatKit turn in two round trips.** `threads.add_user_message` loaded the thread, then upserted \
  the user's message, then the answer: three statements. The message's upsert already locks the \
  thread's row `FOR SHARE` in a CTE; it now also selects the thread's title, `created_at` and JSON \
  from it, so the turn needs no load of its own (with attachments the thread is still loaded first, \
  so that a missing thread is the error of a request naming both, as in the SDK). Run interleaved \
  with the binary before (`--only chatkit`, before / after / before / after): 16 clients **1,758 and \
  1,805 to 2,003 and 1,876** turns/s, p99 29.1 and 29.9 to 25.7 and 30.4 ms; 64 clients **1,652 and \
  1,530 to 2,154 and 1,804**: 64 clients now run about as many turns as 16, where they ran 6-15% \
  fewer. Search indexing, measured the same way (`APP__SEARCH__ENABLED=false`, then the default; one \
  run each), costs ChatKit turns about a tenth: 2,077 turns/s and p99 24.2 ms off, 1,819 and 28.6 \
  ms on, at 16 clients. Over the five runs of this binary, p99 at 16 clients came out at 22.3 to 30.4 \
  ms: the table's run is under the 25 ms target, but not every run is.\n\
- **The application state in one allocation.** A `perf` profile with call stacks (`--call-graph \
  dwarf`) of the server answering the 16 clients' `/healthz` turns put 15% of its CPU in cloning \
  and dropping the application state: axum clones \
  it into every route and middleware service a request passes, and it held a reference count per \
  field (the pool, the verifier, the metrics, ...), whose cache lines moved between the two cores. \
  It is now one `Arc`. The binary before and after alternating twice (`--only turns \
  --turn-histories 100`): HTTP alone **27,000 and 31,600 to 42,000 and 39,800** turns/s at 16 \
  clients; session turns at 16 clients 2,543 and 2,533 to 3,482 and 2,996 turns/s (0.45 and 0.38x \
  of the floor to 0.47 and 0.44x, the floor itself running faster in the later runs), p99 21.9 and \
  14.6 to 11.7 and 12.9 ms. Also: request ids drawn from a thread-local generator (uuid's \
  `fast-rng`) instead of a `getrandom` system call each, 2.5% of the server's CPU under `/healthz` \
  load before, 0.1% after.\n\
- **Statements beyond the held connections wait in line.** At 64 clients, more than the 16 \
  connections the session statements keep (half the pool), a statement that found none free took \
  one from the pool and gave it back there, where sqlx checks it with a round trip: a third round \
  trip for most statements, and 64 clients ran fewer turns than 16 (0.37-0.39x of the floor \
  against 0.44-0.49x). Those statements now wait in a fair queue for a kept connection, and the \
  rest of the pool stays free for other requests. Alternating with the binary before (`--only \
  turns --turn-histories 100`, twice): 64 clients **2,547 and 2,992 to 3,788 and 3,495** turns/s \
  (0.37 and 0.38x to 0.45 and 0.46x), p99 45.7 and 38.5 to 29.7 and 31.0 ms; 16 clients unchanged \
  (0.47 and 0.49x against 0.47 and 0.48x).\n\
- **Where the rest of the gap lies now (a measurement).** The CPU of each process, read from /proc \
  every second through a turn run at 16 clients: during chatstore's turns PostgreSQL used about \
  170% of the two cores, the server about 45% and the load generator about 12%; during the floor's, \
  PostgreSQL and pgbench used the whole machine for about twice the turns. PostgreSQL spends about \
  twice the CPU on a chatstore turn that it spends on the floor's, so the server is no longer the \
  larger part of the gap. Of that, search indexing is a part: with `APP__SEARCH__ENABLED=false` \
  the same run gave 0.47x at 16 clients and 0.60x at 64, against 0.41x and 0.57x with it on (one \
  run each, on a busier hour of the machine).\n\
- **The session read planned once per connection, not at every turn.** `pg_stat_statements` with \
  `track_planning`, under 16 `wrk` connections of session turns on sessions grown to about 30,000 \
  items: the read of the latest items was planned at every call (28,822 plans for 28,822 calls), \
  **105 µs of planning beside 70 µs of execution**. That is the \"planned afresh on every call\" of \
  the measurements above. Its `LIMIT $3`, there to keep the planner's estimate of the range under \
  `jit_above_cost`, made a plan for each call's own limit look cheaper than the generic plan once \
  sessions average more than about 1,500 items, so the plan cache never kept the generic one. The \
  read now gives the range both ends (`position <= position_base + item_count`, which no item \
  passes) and no `LIMIT`: with two unknown bounds the planner estimates half a percent of the \
  session (a 400,000-item session costs 3,471, far from JIT's 100,000), and it keeps the generic \
  plan from the sixth call. Forcing generic plans on every statement, tried earlier, also made the \
  background batch's plans generic and doubled p99; this changes only the read. A PostgreSQL test \
  prepares both reads on a 5,000-item session and checks the plan kept is the generic one. \
  Alternating with the binary before (`--only turns --turn-histories 100,5000`, twice): sessions of \
  5,000 items went from **0.57 and 0.39x to 0.67 and 0.68x** of the floor at 1 client, **0.40 and \
  0.38x to 0.44 and 0.43x** at 16, and **0.43 and 0.42x to 0.49 and 0.50x** at 64 (2,704 and 2,471 \
  to 3,168 and 3,177 turns/s). Sessions of 100 items were unchanged (0.40 and 0.38x against 0.41 and \
  0.41x at 16 clients).\n\
- **The index of soft-deleted chats lists only those** (migration 13). `chats_deleted_at` serves \
  the sweeper of `retention.inactive_days`, which only looks at chats with a `deleted_at`. As a full \
  index it took a new entry at every append, because an append moves `updated_at` and so its update \
  of the row is never HOT. Partial, it is never touched by appends to active chats, and both \
  databases still use it for `deleted_at < cutoff`. pgbench running chatstore's two turn statements \
  on its own schema, against the floor's, 16 clients, alternating: 0.74-0.86x with the full index, \
  0.84-0.87x with the partial one. That is a point or two, below what the turn tables can see.\n\
- **Where a turn's CPU goes, process by process (a measurement).** `wrk` at 16 connections driving \
  the turns above against a `chatstore serve`, and pgbench at 16 clients on the same database, with \
  each process's CPU read from /proc over 8 s of each run:\n\
\x20\x20- Through the server, before the read's fix: PostgreSQL spent **500-530 µs** of CPU per \
  chatstore turn, the server 170-180 µs and `wrk` 35-38 µs.\n\
\x20\x20- pgbench running chatstore's two statements: PostgreSQL **274-289 µs** a turn. The floor's two \
  statements: **226-229 µs**, with pgbench itself at about 34 µs.\n\
\x20\x20- Of the 220-250 µs between PostgreSQL's cost under the server and under pgbench, about 105 µs \
  was the read's planning (removed above) and about 100 µs the background search batch (40 ms a \
  batch of about 1,000 items).\n\
\x20\x20- The chat row's secondary indexes and the upsert make chatstore's two statements cost 20-25% \
  more than the floor's.\n\
\x20\x20- What 0.8x of the floor would take on two shared cores: the floor's turn costs about 262 µs of \
  CPU, PostgreSQL's and pgbench's. chatstore's whole turn (load generator, server and PostgreSQL) \
  would have to fit in about 330 µs. That is about what PostgreSQL alone spends on chatstore's two \
  statements, before search indexing and before the server.\n\
\x20\x20- With autovacuum off on these machines, the chat rows' dead versions pile up, since every \
  append's update is non-HOT. After about 1,000,000 of them, turns ran at 1,979 a second, and at \
  2,630 after a `VACUUM`. Up to 158,000, about what a turn table leaves, they cost nothing \
  measurable.";

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines().next().map(|line| line.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or_else(|| "unknown".to_owned(), |kb| format!("{} GiB", kb / 1024 / 1024));
    format!("{cores} cores ({cpu}), {memory} memory")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(unknown) = args.only.iter().find(|key| !splice::is_section(key)) {
        anyhow::bail!("--only: there is no section {unknown:?}");
    }
    let mut report = String::new();
    let _ = writeln!(report, "# Benchmarks\n");
    let _ = writeln!(
        report,
        "Written by `chatstore-bench` on {} on {}.\n\nReproduce with `just bench` (a release build of `chatstore` and `chatstore-bench`, then `target/release/chatstore-bench --out BENCHMARKS.md`; `--only turns,chatkit,growth,sqlite,reads,chats,tags,threads,data,search,memory` to re-measure some sections, which replaces just those in the existing file; charts are written to `docs/bench/`). \
         Each table is measured in one run, with the things it compares interleaved round by round; \
         the machines are shared and noisy, so read the ratios, not the absolute times.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine()
    );

    let wanted = |section: &str| args.only.is_empty() || args.only.iter().any(|s| s == section);
    // Where each section starts in `report`, by the key `--only` knows it by.
    let mut marks: Vec<(&str, usize)> = Vec::new();
    charts::set_dir(args.out.parent().unwrap_or(std::path::Path::new("")));
    let binary = turns::server_binary()?;
    let shared = turns::shared_dir();
    let turn_args = turns::TurnArgs {
        binary: &binary,
        shared: &shared,
        seconds: args.turn_seconds,
        rounds: args.turn_rounds,
        histories: &args.turn_histories,
    };
    marks.push(("turns", report.len()));
    if wanted("turns") {
        let _ = writeln!(
            report,
            "## Turn throughput on PostgreSQL, next to its floor\n\n\
         A turn is what one agent run does with its memory: `GET /sessions/{{id}}/items?limit=50`, then \
         `POST /sessions/{{id}}/items` with 2 items, on one of 64 sessions of 100 or of 100,000 items (both sets \
         in one database), by a Rust HTTP load generator in this process (one keep-alive HTTP/1.1 connection per \
         client) against a `chatstore serve` process with its default configuration (search indexing on) and a \
         pool of {} connections. The reference is the floor: `pgbench` running \
         `../shared/bench/pgbench-turn-2rt.sql` on `pgbench-schema-2rt.sql` loaded with the same histories, on \
         the same PostgreSQL server: one statement reads the latest 50 items, one appends the 2 atomically, with \
         prepared statements and no HTTP, no authentication and no search index. A turn cannot take fewer round \
         trips, since the model answers between the read and the write. Each row alternates the two {} times, \
         {} s in all. Targets: at least **0.8x** the floor at 16 and 64 clients, p99 under 15 ms at 16.\n",
            turns::SERVER_POOL,
            args.turn_rounds,
            args.turn_seconds
        );
        let _turn_rows = turns::turn_throughput(&turn_args, &mut report).await?;
    }
    marks.push(("chatkit", report.len()));
    if wanted("chatkit") {
        chatkit::chatkit_turns(&turn_args, &mut report).await?;
    }
    marks.push(("growth", report.len()));
    if wanted("growth") {
        let growth_args = turns::TurnArgs {
            seconds: 2 * args.turn_seconds,
            rounds: 2 * args.turn_rounds,
            ..turn_args
        };
        let _ = writeln!(
            report,
            "\n## Turns as the database grows\n\n\
         The same turns at 16 clients, on the same 64 sessions of 100 items of user `bench`, in a database of \
         100,000 items (10 users) and in one of {} ({} users), both of the same shape per user (100 \
         chats of 100 items), so only the data around the turns' sessions differs: deeper B-trees, a larger search \
         index, less of both in memory. The default configuration, search indexing included: \
         the items are loaded in bulk with set-based SQL and the search triggers index them as they would any \
         write; then `VACUUM (ANALYZE)` and `CHECKPOINT`. Two servers, one per database, measured interleaved in \
         one run, each next to the floor (`../shared/bench/pgbench-schema-2rt.sql` loaded with as many \
         conversations of 100 items, `pgbench-turn-2rt.sql` on its first 64). Every size and its floor \
         alternate {} times, {} s each in all, each round starting with the other size: twice the other tables' \
         time, because this target compares chatstore's figures with each other, and a hiccup of the shared \
         machine in one short run moved them by up to 15% between runs. Target: throughput at 10 million items \
         at least **0.9x** that at 100 thousand.\n",
            growth::grouped(args.growth_users * 10_000),
            growth::grouped(args.growth_users),
            growth_args.rounds,
            growth_args.seconds
        );
        growth::history_growth(&growth_args, args.growth_users, &mut report).await?;
    }
    let sqlite_start = report.len();
    marks.push(("sqlite", sqlite_start));
    if wanted("sqlite") {
        let _ = writeln!(
            report,
            "\n## The embedded SQLite build, next to the Agents SDK's `SQLiteSession`\n\n\
         The same turns against `chatstore serve` on its default embedded SQLite file, and the Agents SDK's \
         `SQLiteSession` doing `get_items(limit=50)` then `add_items` of 2 items from Python \
         (`crates/bench/peers/sqlite_session_turns.py`): 64 sessions of 100 items in one file, clients as asyncio \
         tasks picking sessions in the same order. Each client count alternates the two {} times, {} s in all. \
         Target: at least **3x** `SQLiteSession`.\n\n\
         What each side pays, so the ratio can be read fairly: the SDK runs in the measuring process, with no HTTP \
         and no second process, but serialises every call on one lock per file, runs each in a worker thread, and \
         parses and re-encodes the JSON of every item; it leaves SQLite's `synchronous` at its default (FULL; \
         with WAL that syncs the log at every commit, about 0.3 ms on these machines). chatstore answers over \
         HTTP from its own process and stores and returns the items' text as received; by default it runs WAL \
         with `synchronous=NORMAL` (durable across crashes of the application, may lose the last commits on \
         power loss). The middle columns are a second server, on a file of its own, with \
         `database.sqlite_synchronous = \"full\"`: the SDK's durability, for the like-for-like ratio. All three \
         alternate round by round. The SDK's p50/p99 are its own timings, averaged over the rounds.\n",
            args.turn_rounds, args.turn_seconds
        );
        let rows = sqlite::embedded_turns(&turn_args, &mut report).await?;
        if rows.is_empty() && !args.only.is_empty() && args.out.exists() {
            // Not measured (no Python with the Agents SDK, said above): a partial run keeps
            // the table the file has rather than replacing it with that notice.
            eprintln!("the SQLite table already in {} stays as it was", args.out.display());
            report.truncate(sqlite_start);
        }
    }
    marks.push(("reads", report.len()));
    if wanted("reads") {
        let _ = writeln!(
            report,
            "\n## Session reads cost the same whatever the history's length\n\n\
         `GET /sessions/{{id}}/items?limit=50` (the Agents SDK's `get_items(limit=50)`) over HTTP, one client, \
         on a session of 100 items and on one of 100,000 items in the same database; {} rounds of {} requests each, \
         alternating. Target: the 100,000-item session within **1.5x** of the 100-item one.\n\n\
         | database | 100 items p50 | p99 | mean | 100,000 items p50 | p99 | mean | ratio (p50) |\n\
         |---|---|---|---|---|---|---|---|",
            args.rounds, args.requests
        );
        for backend in [Backend::Postgres, Backend::Sqlite] {
            history_independence(backend, &args, &mut report).await?;
        }
        let _ = writeln!(
            report,
            "\nWhy: items are keyed `(user_id, chat_id, position)` with positions `1..=item_count`, so the latest 50 \
         are the key range `position > item_count - 50`: 50 rows through the primary key, whatever the history."
        );
    }
    marks.push(("chats", report.len()));
    if wanted("chats") {
        let _ = writeln!(
            report,
            "\n## Chat lists cost the same on every page\n\n\
         `GET /chats?limit=100`: page 1 and page 100 (the last) of one user's 10,000 chats, with 10,000 chats of \
         50 other users in the same table; {} rounds of {} requests each, alternating. Target: about the same \
         (within **1.5x**).\n\n\
         | database | page 1 p50 | p99 | mean | page 100 p50 | p99 | mean | ratio (p50) |\n\
         |---|---|---|---|---|---|---|---|",
            args.rounds,
            args.requests / 4
        );
        for backend in [Backend::Postgres, Backend::Sqlite] {
            chat_paging_depth(backend, &args, &mut report).await?;
        }
        let _ = writeln!(
            report,
            "\nWhy: pages are keyset pages on `(updated_at, chat_id)` through the index \
         `(user_id, is_active, updated_at, chat_id)`; the cursor's key is looked up inside the page query, never counted \
         as an `OFFSET`."
        );
    }
    marks.push(("tags", report.len()));
    if wanted("tags") {
        let _ = writeln!(
            report,
            "\n## Tag-filtered chat lists cost the same on every page\n\n\
         `GET /chats?limit=100&tag=work`: page 1 and page 100 (the last) of the 10,000 chats tagged `work` among \
         one user's 20,000, with 10,000 chats of 50 other users tagged `work` in the same tables; {} rounds of {} \
         requests each, alternating. Target: about the same (within **1.5x**).\n\n\
         | database | page 1 p50 | p99 | mean | page 100 p50 | p99 | mean | ratio (p50) |\n\
         |---|---|---|---|---|---|---|---|",
            args.rounds,
            args.requests / 4
        );
        for backend in [Backend::Postgres, Backend::Sqlite] {
            tagged_chat_paging_depth(backend, &args, &mut report).await?;
        }
        let _ = writeln!(
            report,
            "\nWhy: the same keyset page as the unfiltered list, plus one primary-key lookup in `chat_tags` per \
         tag for each chat the page walks past; the cursor's key (and its tags) are looked up inside the page query."
        );
    }
    marks.push(("threads", report.len()));
    if wanted("threads") {
        let _ = writeln!(
            report,
            "\n## ChatKit thread items cost the same on every page\n\n\
         `GET /threads/{{id}}/items?limit=100`: the first page and the last page (`after` the 99,900th item) of one \
         thread of 100,000 items; {} rounds of {} requests each, alternating. Target: within **1.5x**.\n\n\
         | database | first page p50 | p99 | mean | last page p50 | p99 | mean | ratio (p50) |\n\
         |---|---|---|---|---|---|---|---|",
            args.rounds,
            args.requests / 4
        );
        for backend in [Backend::Postgres, Backend::Sqlite] {
            thread_paging_depth(backend, &args, &mut report).await?;
        }
        let _ = writeln!(
            report,
            "\nWhy: items are keyset pages on `(created_at, seq)` through the index \
         `(user_id, thread_id, created_at, seq)`; the cursor is an item id, whose key is one unique-index lookup \
         inside the page query."
        );
    }

    marks.push(("data", report.len()));
    if wanted("data") {
        let _ = writeln!(
            report,
            "\n## Export, import and `chatstore copy`\n\n\
             `GET /export` and `POST /import` of one user's data through a `chatstore serve` process, with the \
             server's peak resident memory (VmHWM) along the way, then `chatstore copy` of every user to a fresh \
             database of the other kind.\n"
        );
        data::data_throughput(&binary, &mut report).await?;
    }
    marks.push(("search", report.len()));
    if wanted("search") {
        let sizes = search::SearchSizes {
            items: args.search_items,
            total: args.search_total,
            rounds: args.rounds,
            requests: (args.requests / 10).max(4),
        };
        let _ = writeln!(
            report,
            "\n## Search next to a `LIKE` scan\n\n\
         `GET /search`'s query (through the repositories, without HTTP: `limit=20`, best first) for one user with \
         {} session items among {} in the table (the rest belong to {} other users, in chats of 1,000 items), \
         next to `SELECT ... WHERE user_id = $1 AND data LIKE '%word%' ORDER BY chat_id, position LIMIT 20` on \
         the same rows; loaded in bulk with SQL, the search triggers indexing as for any write; {} rounds, \
         alternating, of {} searches and {} scans. The load column is the time to load and index the table.\n\n\
         | database | word | search p50 | p99 | `LIKE` p50 | p99 | `LIKE` / search (p50) | load |\n\
         |---|---|---|---|---|---|---|---|",
            sizes.items,
            sizes.total,
            50,
            sizes.rounds,
            sizes.requests,
            (sizes.requests / 4).max(1),
        );
        for backend in [Backend::Postgres, Backend::Sqlite] {
            search::search_latency(backend, sizes, &mut report).await?;
        }
        let _ = writeln!(
            report,
            "\nRanking reads every match (best first needs them all), so a word in 1 of 100 items costs \
         more than a rare one, while the unranked scan stops at its 20th row.\n\n\
         Turns (as in the first table) at 16 clients, with search indexing on and off: two servers, each on \
         a database of its own (the setting is per database), alternating {} times, {} s in all. On, the \
         default, a turn's items are indexed after its append, by the server's background batches (every \
         `search.index_interval_ms`, 200 ms), so what the ratio shows is the batches' share of the machine, \
         not a step of the turn.\n\n\
         | database | indexing on turns/s | p50 | p99 | off turns/s | p50 | p99 | on / off |\n\
         |---|---|---|---|---|---|---|---|",
            args.turn_rounds, args.turn_seconds
        );
        for backend in [Backend::Postgres, Backend::Sqlite] {
            search::indexing_cost(backend, &turn_args, &mut report).await?;
        }
    }

    marks.push(("memory", report.len()));
    if wanted("memory") {
        let _ = writeln!(
            report,
            "\n## Advanced agent memory at 100 and 100,000 items\n\n\
         Forks, branch reads and compactions over HTTP, one client, on sessions of 100 and \
         100,000 items in the same database.\n"
        );
        memory::memory(&args, &mut report).await?;
    }
    marks.push((splice::CHANGES, report.len()));
    let _ = writeln!(report, "\n{CHANGES}");

    let document = document(&report, &marks, &args)?;
    std::fs::write(&args.out, &document)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    print!("{report}");
    Ok(())
}

/// The file to write: a full run's report, each section keyed for later partial runs; a
/// partial run's sections spliced into the existing file, whose other sections, closing part
/// and header stay (the header then also says what was measured later, and when).
fn document(report: &str, marks: &[(&str, usize)], args: &Args) -> anyhow::Result<String> {
    let ends = marks.iter().skip(1).map(|(_, start)| *start).chain([report.len()]);
    let sections: Vec<splice::Section> = marks
        .iter()
        .zip(ends)
        .filter(|((_, start), end)| start < end)
        .map(|((key, start), end)| splice::Section {
            key: Some((*key).to_owned()),
            text: splice::keyed(key, &report[*start..end]),
        })
        .collect();
    let header = &report[..marks.first().map_or(report.len(), |(_, start)| *start)];
    if args.only.is_empty() || !args.out.exists() {
        return Ok(splice::join(header, &sections));
    }
    let existing = std::fs::read_to_string(&args.out)
        .with_context(|| format!("cannot read {}", args.out.display()))?;
    let (changes, measured): (Vec<_>, Vec<_>) =
        sections.into_iter().partition(|section| section.key.as_deref() == Some(splice::CHANGES));
    let when = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let command = std::env::args()
        .enumerate()
        .map(|(index, arg)| if index == 0 { "chatstore-bench".to_owned() } else { arg })
        .collect::<Vec<_>>()
        .join(" ");
    Ok(splice::splice(&existing, &measured, changes.first(), &when, &command))
}
