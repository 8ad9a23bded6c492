//! How turns hold up as the database grows: the turn workload on 64 sessions of one user, in a
//! database of 100 thousand items and in one of 10 million (1,000 users), measured
//! interleaved, next to pgbench's two-round-trip floor loaded to the same sizes; the bytes on
//! disk each stored item costs; and full-history reads of long sessions.
//!
//! Both databases have the same shape per user, 100 chats of 100 items, and differ only in
//! how many users they hold (10 or 1,000): the turns' sessions, their histories and the
//! statements they run are the same, so what differs is only the data around them (deeper
//! B-trees, a larger search index, less of it in memory).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use chatstore_tests::{Backend, TestDatabase};
use repositories::Db;
use repositories::sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::charts::{self, Labels, Line};
use crate::http::Connection;
use crate::turns::{
    ASSISTANT_ITEM, Run, TurnArgs, USER_ITEM, bench_token, drive, footprint, load_reference,
    pgbench, serve,
};
use crate::{Series, micros};

/// Users in the small database; the large one's are `--growth-users` (1,000 by default).
const SMALL_USERS: u64 = 10;
const CHATS_PER_USER: u64 = 100;
const ITEMS_PER_CHAT: u64 = 100;
const CLIENTS: usize = 16;
/// Users loaded per statement (500,000 items), so progress shows and no statement is huge.
const USERS_PER_STATEMENT: u64 = 50;
/// Full reads of the 10,000-item session.
const FULL_READS: usize = 20;

fn items_of(users: u64) -> u64 {
    users * CHATS_PER_USER * ITEMS_PER_CHAT
}

/// 100000 as "100,000".
pub(crate) fn grouped(number: u64) -> String {
    let digits = number.to_string();
    let mut text = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// What the section measured on one database size.
#[derive(Debug, Default)]
struct Size {
    run: Run,
    floor_tps: f64,
    floor_latency_ms: f64,
    bytes: Option<PgBytes>,
    load: Duration,
}

pub(crate) async fn history_growth(
    args: &TurnArgs<'_>,
    large_users: u64,
    report: &mut String,
) -> anyhow::Result<()> {
    let users = [SMALL_USERS, large_users];
    let mut databases = Vec::new();
    for _ in 0..2 * users.len() {
        databases.push(
            TestDatabase::create(Backend::Postgres).await.context("no PostgreSQL to benchmark")?,
        );
    }
    let (ours, floors) = databases.split_at(users.len());
    let outcome = measure(args, users, ours, floors, report).await;
    for database in &databases {
        database.drop_database().await;
    }
    outcome?;
    let sqlite = TestDatabase::create(Backend::Sqlite).await.context("no SQLite file")?;
    let outcome = sqlite_bytes(&sqlite, report).await;
    sqlite.drop_database().await;
    outcome
}

async fn measure(
    args: &TurnArgs<'_>,
    users_of: [u64; 2],
    ours: &[TestDatabase],
    floors: &[TestDatabase],
    report: &mut String,
) -> anyhow::Result<()> {
    let mut sizes: Vec<Size> = users_of.iter().map(|_| Size::default()).collect();
    for ((users, database), size) in users_of.into_iter().zip(ours).zip(&mut sizes) {
        let db = database.connect().await;
        db.migrate().await?;
        let started = Instant::now();
        load_users(&db, Backend::Postgres, 0..users, CHATS_PER_USER, ITEMS_PER_CHAT, "").await?;
        settle(&db).await?;
        size.load = started.elapsed();
        size.bytes = Some(pg_bytes(&db).await?);
        db.close().await;
    }
    for (users, floor) in users_of.into_iter().zip(floors) {
        eprintln!("loading the floor's schema with {} items", grouped(items_of(users)));
        load_reference(
            args.shared,
            floor,
            usize::try_from(users * CHATS_PER_USER)?,
            usize::try_from(ITEMS_PER_CHAT)?,
        )?;
    }

    let servers: Vec<_> = ours.iter().map(|database| serve(args.binary, &database.url)).collect();
    let tokens =
        ours.iter().map(|database| bench_token(&database.url)).collect::<Result<Vec<_>, _>>()?;
    for (server, token) in servers.iter().zip(&tokens) {
        drive(&server.address, token, "", 4, Duration::from_secs(1)).await?;
    }
    // Round by round, each size for chatstore then for the floor, so drift hits all alike;
    // each round starts with the other size, so neither is always measured first.
    let part = Duration::from_secs((args.seconds / u64::from(2 * args.rounds)).max(1));
    for round in 0..args.rounds as usize {
        for turn in 0..users_of.len() {
            let index = (round + turn) % users_of.len();
            let run = drive(&servers[index].address, &tokens[index], "", CLIENTS, part).await?;
            sizes[index].run.absorb(run);
            let name = floors[index].pg_name().context("a PostgreSQL database")?;
            let floor_run = pgbench(args.shared, name, CLIENTS, part)?;
            sizes[index].floor_tps += floor_run.tps / f64::from(args.rounds);
            sizes[index].floor_latency_ms += floor_run.latency_ms / f64::from(args.rounds);
        }
    }
    for server in servers {
        server.stop();
    }

    write_tables(report, users_of, &sizes);
    let chart = charts::path("growth");
    let points = |figure: &dyn Fn(&Size) -> f64| {
        users_of
            .iter()
            .zip(&sizes)
            .map(|(users, size)| (items_of(*users) as f64, figure(size)))
            .collect()
    };
    charts::lines(
        &chart,
        Labels {
            title: "Turns at 16 clients as the database grows",
            x: "items in the database",
            y: "turns/s",
        },
        true,
        &[
            Line { name: "chatstore".to_owned(), points: points(&|size| size.run.per_second()) },
            Line {
                name: "pgbench floor (2 round trips)".to_owned(),
                points: points(&|size| size.floor_tps),
            },
        ],
    )?;
    let _ = writeln!(
        report,
        "\n![Turns/s at 16 clients with {} and {} items in the database](docs/bench/growth.svg)",
        grouped(items_of(users_of[0])),
        grouped(items_of(users_of[1])),
    );

    full_history_reads(args, &ours[0], report).await
}

fn write_tables(report: &mut String, users_of: [u64; 2], sizes: &[Size]) {
    let _ = writeln!(
        report,
        "| items in the database | users | chatstore turns/s | p50 | p99 | floor turns/s | chatstore / floor | chatstore / its figure at 100,000 |\n|---|---|---|---|---|---|---|---|"
    );
    let base = sizes[0].run.per_second();
    for (users, size) in users_of.into_iter().zip(sizes) {
        let tps = size.run.per_second();
        let _ = writeln!(
            report,
            "| {} | {} | {tps:.0} | {} | {} | {:.0} | {:.2}x | **{:.2}x** |",
            grouped(items_of(users)),
            grouped(users),
            micros(size.run.latencies.percentile(0.5)),
            micros(size.run.latencies.percentile(0.99)),
            size.floor_tps,
            tps / size.floor_tps,
            tps / base,
        );
    }
    let large = &sizes[sizes.len() - 1];
    let _ = writeln!(
        report,
        "\nLoading {} items in bulk with SQL, search indexing included, then `VACUUM (ANALYZE)` and `CHECKPOINT`, \
         took **{:.0} s** ({:.0} items/s).",
        grouped(items_of(users_of[1])),
        large.load.as_secs_f64(),
        items_of(users_of[1]) as f64 / large.load.as_secs_f64(),
    );
    let raw = (USER_ITEM.len() + ASSISTANT_ITEM.len()) as f64 / 2.0;
    let _ = writeln!(
        report,
        "\nBytes on disk per stored item on PostgreSQL, measured on the loaded databases before the turns \
         (`pg_total_relation_size`: table, TOAST and indexes), next to an item's raw JSON, {raw:.0} bytes on \
         average here:\n\n\
         | items in the database | items (table and indexes) | search entries (table and GIN index) | chats | all, per item | all / raw JSON |\n|---|---|---|---|---|---|"
    );
    for (users, size) in users_of.into_iter().zip(sizes) {
        let Some(bytes) = size.bytes else { continue };
        let per_item = |total: i64| total as f64 / bytes.items.max(1) as f64;
        let all = bytes.items_bytes + bytes.search_bytes + bytes.chats_bytes;
        let _ = writeln!(
            report,
            "| {} | {:.0} B | {:.0} B | {:.0} B | **{:.0} B** | {:.1}x |",
            grouped(items_of(users)),
            per_item(bytes.items_bytes),
            per_item(bytes.search_bytes),
            per_item(bytes.chats_bytes),
            per_item(all),
            per_item(all) / raw,
        );
    }
}

/// Loads users `users` (user 0 is `bench`, the others `u1`, `u2`, ...), each with `chats`
/// chats `{prefix}s0`, `{prefix}s1`, ... of `items` items: rows as chatstore writes them
/// (positions `1..=items`, `item_count` in step), generated by the database in set-based SQL,
/// then indexed for search as a server indexes appended items.
async fn load_users(
    db: &Db,
    backend: Backend,
    users: std::ops::Range<u64>,
    chats: u64,
    items: u64,
    prefix: &str,
) -> anyhow::Result<()> {
    let user = |chat: &str| {
        format!("CASE WHEN {chat} / {chats} = 0 THEN 'bench' ELSE 'u' || ({chat} / {chats}) END")
    };
    let (db_backend, now) = (db_backend(backend), chrono::Utc::now());
    let chats_sql = format!(
        "INSERT INTO chats (user_id, chat_id, title, is_active, item_count, created_at, updated_at) \
         SELECT {}, '{prefix}s' || (n % {chats}), NULL, TRUE, {items}, $1, $1 FROM {}",
        user("n"),
        series(backend, users.start * chats, users.end * chats),
    );
    db.connection()
        .execute_raw(Statement::from_sql_and_values(db_backend, chats_sql, [now.into()]))
        .await?;
    let total = (users.end - users.start) * chats * items;
    let started = Instant::now();
    let mut first = users.start;
    while first < users.end {
        let end = (first + USERS_PER_STATEMENT).min(users.end);
        // Items are numbered n across users and chats; odd positions are the user's turn.
        let items_sql = format!(
            "INSERT INTO conversation_items (user_id, chat_id, position, data, created_at) \
             SELECT {}, '{prefix}s' || ((n / {items}) % {chats}), n % {items} + 1, \
                    CASE WHEN n % 2 = 0 THEN $1 ELSE $2 END, $3 FROM {}",
            user(&format!("(n / {items})")),
            series(backend, first * chats * items, end * chats * items),
        );
        let values = [USER_ITEM.into(), ASSISTANT_ITEM.into(), now.into()];
        db.connection()
            .execute_raw(Statement::from_sql_and_values(db_backend, items_sql, values))
            .await?;
        let done = (end - users.start) * chats * items;
        if total > 1_000_000 {
            eprintln!(
                "loaded {} of {} items in {:.0} s",
                grouped(done),
                grouped(total),
                started.elapsed().as_secs_f64()
            );
        }
        first = end;
    }
    crate::turns::index_for_search(db).await?;
    if total > 1_000_000 {
        eprintln!("indexed {} items in {:.0} s", grouped(total), started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Numbers `start..end` as rows `n`.
fn series(backend: Backend, start: u64, end: u64) -> String {
    match backend {
        Backend::Postgres => format!("generate_series({start}, {end} - 1) AS g (n)"),
        Backend::Sqlite => format!(
            "(WITH RECURSIVE g (n) AS (SELECT {start} UNION ALL SELECT n + 1 FROM g WHERE n + 1 < {end}) \
             SELECT n FROM g) AS g"
        ),
    }
}

fn db_backend(backend: Backend) -> DbBackend {
    match backend {
        Backend::Postgres => DbBackend::Postgres,
        Backend::Sqlite => DbBackend::Sqlite,
    }
}

/// What autovacuum (off on these machines) would have done by the time a real database held
/// this much, for the search entries too, then a checkpoint, so the load's dirty pages are
/// written before the measurement rather than during it.
async fn settle(db: &Db) -> anyhow::Result<()> {
    for statement in ["VACUUM (ANALYZE) chats, conversation_items, search_entries", "CHECKPOINT"] {
        db.connection().execute_unprepared(statement).await?;
    }
    Ok(())
}

/// Bytes on disk of the tables an item touches, with their TOAST and indexes.
#[derive(Debug, Clone, Copy)]
struct PgBytes {
    items: i64,
    items_bytes: i64,
    search_bytes: i64,
    chats_bytes: i64,
}

async fn pg_bytes(db: &Db) -> anyhow::Result<PgBytes> {
    let row = db
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT (SELECT count(*) FROM conversation_items) AS items, \
                    pg_total_relation_size('conversation_items') AS items_bytes, \
                    pg_total_relation_size('search_entries') AS search_bytes, \
                    pg_total_relation_size('chats') AS chats_bytes",
        ))
        .await?
        .context("no sizes")?;
    Ok(PgBytes {
        items: row.try_get("", "items")?,
        items_bytes: row.try_get("", "items_bytes")?,
        search_bytes: row.try_get("", "search_bytes")?,
        chats_bytes: row.try_get("", "chats_bytes")?,
    })
}

/// Bytes per item on SQLite, from the `dbstat` virtual table (compiled into the SQLite that
/// sqlx bundles), on a file holding the small database's shape.
async fn sqlite_bytes(database: &TestDatabase, report: &mut String) -> anyhow::Result<()> {
    let db = database.connect().await;
    db.migrate().await?;
    let users = SMALL_USERS;
    load_users(&db, Backend::Sqlite, 0..users, CHATS_PER_USER, ITEMS_PER_CHAT, "").await?;
    for statement in ["ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"] {
        db.connection().execute_unprepared(statement).await?;
    }
    let row = db
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT (SELECT count(*) FROM conversation_items) AS items, \
               (SELECT coalesce(sum(d.pgsize), 0) FROM dbstat d JOIN sqlite_schema m ON m.name = d.name \
                 WHERE m.tbl_name = 'conversation_items') AS items_bytes, \
               (SELECT coalesce(sum(d.pgsize), 0) FROM dbstat d JOIN sqlite_schema m ON m.name = d.name \
                 WHERE m.tbl_name LIKE 'search%') AS search_bytes, \
               (SELECT coalesce(sum(d.pgsize), 0) FROM dbstat d JOIN sqlite_schema m ON m.name = d.name \
                 WHERE m.tbl_name = 'chats') AS chats_bytes, \
               (SELECT page_count * page_size FROM pragma_page_count, pragma_page_size) AS file_bytes",
        ))
        .await?
        .context("no sizes")?;
    let items: i64 = row.try_get("", "items")?;
    let per_item = |column: &str| -> anyhow::Result<f64> {
        Ok(row.try_get::<i64>("", column)? as f64 / items.max(1) as f64)
    };
    let raw = (USER_ITEM.len() + ASSISTANT_ITEM.len()) as f64 / 2.0;
    let file = per_item("file_bytes")?;
    let _ = writeln!(
        report,
        "\nOn SQLite, on a file of {} items in the same shape (search indexing on, after `ANALYZE` and a \
         checkpoint), from the `dbstat` virtual table: items (table and indexes) **{:.0} B** per item, search \
         (`search_entries` and the FTS5 tables) **{:.0} B**, chats {:.0} B; the whole file {file:.0} B per item, \
         {:.1}x the raw JSON.",
        grouped(items_of(users)),
        per_item("items_bytes")?,
        per_item("search_bytes")?,
        per_item("chats_bytes")?,
        file / raw,
    );
    db.close().await;
    Ok(())
}

/// Full-history reads of a session of 10,000 and one of 100,000 items, added to the small
/// database after its turns, on a fresh server: time, and whether the server's peak memory
/// follows the history.
async fn full_history_reads(
    args: &TurnArgs<'_>,
    database: &TestDatabase,
    report: &mut String,
) -> anyhow::Result<()> {
    let db = database.connect().await;
    for history in [10_000, 100_000] {
        load_users(&db, Backend::Postgres, 0..1, 1, history, &format!("h{history}-")).await?;
    }
    settle(&db).await?;
    db.close().await;
    let token = bench_token(&database.url)?;
    // A fresh server, so its peak memory is these reads' and not the turn runs'.
    let server = serve(args.binary, &database.url);
    let mut connection = Connection::open(&server.address, &token).await?;
    connection.get("/sessions/s0/items?limit=50").await?;
    let peak_mb = || footprint(server.pid()).map_or(f64::NAN, |(kb, _)| kb as f64 / 1024.0);
    let before = peak_mb();
    let (medium, medium_bytes) = full_reads(&mut connection, "h10000-", FULL_READS).await?;
    let after_medium = peak_mb();
    // Ten times the history: if a read held the history, the peak would grow with it.
    let (large, large_bytes) = full_reads(&mut connection, "h100000-", 3).await?;
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
        "\nFull-history reads, `GET /sessions/{{id}}/items` without `limit`, on a fresh server over the \
         100,000-item database: a session of 10,000 items ({:.1} MB of JSON) {FULL_READS} times, **{}** p50, \
         {} p99; then one of 100,000 items ({:.1} MB) 3 times, {} p50. The server's peak RSS: \
         **{before:.1} MB** before, **{after_medium:.1} MB** after the 10,000-item reads, \
         **{after_large:.1} MB** after the 100,000-item ones. {verdict}",
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

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(10_000_000), "10,000,000");
        assert_eq!(grouped(100_000), "100,000");
        assert_eq!(grouped(999), "999");
    }
}
