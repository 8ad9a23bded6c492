//! Search: `GET /search`'s query next to a `LIKE '%word%'` scan of the same items, for one
//! user among many; and turns with search indexing on and off.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use chatstore_tests::{Backend, ServerProcess, TestDatabase};
use repositories::sea_orm::{ConnectionTrait, DbBackend, Statement};
use repositories::{Db, SearchKind, SearchRequest, SearchText};

use crate::turns::{Run, TurnArgs, bench_token, drive, load_sessions, load_sessions_sql};
use crate::{Series, micros};

/// Items per chat in the loaded data.
const CHAT_ITEMS: i64 = 1000;
/// Other users the rest of the items belong to.
const OTHER_USERS: i64 = 50;

/// The sizes of the search table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchSizes {
    /// The searching user's items.
    pub(crate) items: usize,
    /// Every user's items.
    pub(crate) total: usize,
    pub(crate) rounds: usize,
    /// Requests per round (searches; the scans get a quarter, at least 1).
    pub(crate) requests: usize,
}

/// The words searched for: one in 10,000 items, and one in 100.
const WORDS: [(&str, &str); 2] = [("zebra", "1 in 10,000 items"), ("falcon", "1 in 100 items")];

/// Item `n`'s text, as an SQL expression over `n`: a dozen words, a few of them varying, and
/// the words of [`WORDS`] in their share of the items.
const ITEM_SQL: &str = "'{\"role\":\"user\",\"content\":\"Message ' || n || ' about the dragon campaign: \
    the siege, topic' || (n % 997) || ' and the betrayal' || \
    CASE WHEN n % 10000 = 7 THEN ' near a zebra' ELSE '' END || \
    CASE WHEN n % 100 = 3 THEN ' with a falcon' ELSE '' END || '.\"}'";

/// Numbers `0..$1` as rows `n`.
fn series_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "generate_series(0, $1 - 1) AS g (n)",
        Backend::Sqlite => {
            "(WITH RECURSIVE g (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < $1) \
             SELECT n FROM g) AS g"
        }
    }
}

fn db_backend(backend: Backend) -> DbBackend {
    match backend {
        Backend::Postgres => DbBackend::Postgres,
        Backend::Sqlite => DbBackend::Sqlite,
    }
}

/// Loads `sizes.total` items in chats of [`CHAT_ITEMS`]: the first `sizes.items` belong to
/// user `bench`, the rest to [`OTHER_USERS`] others. Bulk SQL, then indexed for search as
/// a server indexes appended items.
async fn load(db: &Db, backend: Backend, sizes: SearchSizes) -> anyhow::Result<()> {
    let total = i64::try_from(sizes.total)?;
    let items = i64::try_from(sizes.items)?;
    let chats = (total + CHAT_ITEMS - 1) / CHAT_ITEMS;
    let owner = |chat: &str| {
        format!(
            "CASE WHEN {chat} * {CHAT_ITEMS} < $2 THEN 'bench' \
             ELSE 'other-' || ({chat} % {OTHER_USERS}) END"
        )
    };
    let series = series_sql(backend);
    let chats_sql = format!(
        "INSERT INTO chats (user_id, chat_id, title, is_active, item_count, created_at, updated_at) \
         SELECT {}, 'c' || n, NULL, TRUE, {CHAT_ITEMS}, $3, $3 FROM {series}",
        owner("n")
    );
    let items_sql = format!(
        "INSERT INTO conversation_items (user_id, chat_id, position, data, created_at) \
         SELECT {}, 'c' || (n / {CHAT_ITEMS}), n % {CHAT_ITEMS} + 1, {ITEM_SQL}, $3 FROM {series}",
        owner(&format!("(n / {CHAT_ITEMS})"))
    );
    let now = chrono::Utc::now();
    let backend_sql = db_backend(backend);
    let connection = db.connection();
    connection
        .execute_raw(Statement::from_sql_and_values(
            backend_sql,
            chats_sql,
            [chats.into(), items.into(), now.into()],
        ))
        .await?;
    // In slices, so that no one statement (and, on SQLite, no one transaction) is huge.
    let slice = 500_000_i64;
    let mut start = 0;
    while start < total {
        let end = (start + slice).min(total);
        let sql = items_sql
            .replace(&format!("FROM {series}"), &format!("FROM {series} WHERE n >= {start}"));
        connection
            .execute_raw(Statement::from_sql_and_values(
                backend_sql,
                sql,
                [end.into(), items.into(), now.into()],
            ))
            .await?;
        start = end;
    }
    crate::turns::index_for_search(db).await?;
    let settle: &[&str] = match backend {
        Backend::Postgres => {
            &["VACUUM (ANALYZE) chats, conversation_items, search_entries", "CHECKPOINT"]
        }
        Backend::Sqlite => &["ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"],
    };
    for statement in settle {
        connection.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// The scan the index replaces: the user's first 20 items containing `word`.
async fn like_scan(db: &Db, backend: Backend, word: &str) -> anyhow::Result<usize> {
    let rows = db
        .connection()
        .query_all_raw(Statement::from_sql_and_values(
            db_backend(backend),
            "SELECT chat_id, position, data FROM conversation_items \
             WHERE user_id = $1 AND data LIKE $2 ORDER BY chat_id, position LIMIT 20",
            ["bench".into(), format!("%{word}%").into()],
        ))
        .await?;
    Ok(rows.len())
}

async fn search(db: &Db, word: &str) -> anyhow::Result<usize> {
    let request = SearchRequest {
        text: SearchText::parse(word)?,
        kind: SearchKind::All,
        include_inactive: false,
        after: None,
        limit: 20,
    };
    Ok(db.search().find("bench", &request).await?.data.len())
}

/// One table row per word and database: search p50/p99 next to the scan's.
pub(crate) async fn search_latency(
    backend: Backend,
    sizes: SearchSizes,
    report: &mut String,
) -> anyhow::Result<()> {
    let database = TestDatabase::create(backend).await.context("no PostgreSQL to benchmark")?;
    let outcome = async {
        let db = database.connect().await;
        db.migrate().await?;
        let started = Instant::now();
        load(&db, backend, sizes).await?;
        let loaded = started.elapsed();
        eprintln!("search: loaded {} items on {backend:?} in {loaded:?}", sizes.total);
        let name = match backend {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite",
        };
        for (word, share) in WORDS {
            let (mut searched, mut scanned) = (Series::default(), Series::default());
            // Warm-up, and a check that both find something.
            anyhow::ensure!(search(&db, word).await? > 0, "no hit for {word}");
            anyhow::ensure!(like_scan(&db, backend, word).await? > 0, "no row for {word}");
            for _ in 0..sizes.rounds {
                for _ in 0..sizes.requests {
                    let started = Instant::now();
                    search(&db, word).await?;
                    searched.samples.push(started.elapsed());
                }
                for _ in 0..(sizes.requests / 4).max(1) {
                    let started = Instant::now();
                    like_scan(&db, backend, word).await?;
                    scanned.samples.push(started.elapsed());
                }
            }
            let ratio =
                scanned.percentile(0.5).as_secs_f64() / searched.percentile(0.5).as_secs_f64();
            let _ = writeln!(
                report,
                "| {name} | `{word}` ({share}) | {} | {} | {} | {} | **{ratio:.1}x** | {:.0} s |",
                micros(searched.percentile(0.5)),
                micros(searched.percentile(0.99)),
                micros(scanned.percentile(0.5)),
                micros(scanned.percentile(0.99)),
                loaded.as_secs_f64(),
            );
        }
        db.close().await;
        anyhow::Ok(())
    }
    .await;
    database.drop_database().await;
    outcome
}

/// Turns at 16 clients on two servers, one with search indexing on and one off, each on a
/// database of its own (the setting is per database), alternating round by round.
pub(crate) async fn indexing_cost(
    backend: Backend,
    args: &TurnArgs<'_>,
    report: &mut String,
) -> anyhow::Result<()> {
    let mut databases = Vec::new();
    for _ in 0..2 {
        databases.push(TestDatabase::create(backend).await.context("no PostgreSQL to benchmark")?);
    }
    let outcome = async {
        let mut servers = Vec::new();
        for (database, enabled) in databases.iter().zip(["true", "false"]) {
            let db = database.connect().await;
            db.migrate().await?;
            db.search().configure(enabled == "true").await?;
            match backend {
                Backend::Postgres => load_sessions_sql(&db, "", 100).await?,
                Backend::Sqlite => load_sessions(&db, "", 100).await?,
            }
            db.close().await;
            let server = ServerProcess::start(
                args.binary,
                &database.url,
                &[
                    ("APP__DATABASE__MAX_CONNECTIONS", crate::turns::SERVER_POOL),
                    ("APP__SEARCH__ENABLED", enabled),
                    crate::turns::DEFAULT_INDEXING,
                ],
            );
            let token = bench_token(&database.url)?;
            drive(&server.address, &token, "", 4, Duration::from_secs(1)).await?; // warm-up
            servers.push((server, token));
        }
        let part = Duration::from_secs((args.seconds / u64::from(2 * args.rounds)).max(1));
        let mut runs = [Run::default(), Run::default()];
        for _ in 0..args.rounds {
            for ((server, token), run) in servers.iter().zip(&mut runs) {
                run.absorb(drive(&server.address, token, "", 16, part).await?);
            }
        }
        for (server, _) in servers {
            server.stop();
        }
        let name = match backend {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite",
        };
        let [on, off] = &runs;
        let _ = writeln!(
            report,
            "| {name} | {:.0} | {} | {} | {:.0} | {} | {} | **{:.2}x** |",
            on.per_second(),
            micros(on.latencies.percentile(0.5)),
            micros(on.latencies.percentile(0.99)),
            off.per_second(),
            micros(off.latencies.percentile(0.5)),
            micros(off.latencies.percentile(0.99)),
            on.per_second() / off.per_second(),
        );
        anyhow::Ok(())
    }
    .await;
    for database in &databases {
        database.drop_database().await;
    }
    outcome
}
