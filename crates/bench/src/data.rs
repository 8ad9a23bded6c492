//! Owning one's data at scale: `GET /export` and `POST /import` throughput with the server's
//! peak memory, and `chatstore copy` throughput, on both databases.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use chatstore_tests::{Backend, TestDatabase, test_settings};

use crate::Series;
use crate::turns::{footprint, serve};

/// Sessions per user, and items per session of the small, the large and the huge user.
const SESSIONS: usize = 64;
const SMALL_ITEMS: usize = 100;
const LARGE_ITEMS: usize = 1_000;
const HUGE_ITEMS: usize = 4_000;
/// Timed exports and imports of the large user.
const REPEATS: usize = 3;

const USER_ITEM: &str =
    r#"{"role":"user","content":"What did we discuss about the dragon campaign earlier today?"}"#;
const ASSISTANT_ITEM: &str = r#"{"role":"assistant","content":[{"type":"output_text","text":"We planned a three-act campaign: the siege, the betrayal and the dragon lair. Next you wanted to flesh out the villain.","annotations":[]}]}"#;

pub(crate) async fn data_throughput(binary: &Path, report: &mut String) -> anyhow::Result<()> {
    let _ = writeln!(
        report,
        "| database | export MB/s | import MB/s | export of {} items | server peak RSS: idle / after the small export / the large exports / the huge export / the imports | `chatstore copy` to the other database |\n|---|---|---|---|---|---|",
        SESSIONS * LARGE_ITEMS
    );
    let mut verdicts = Vec::new();
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let source = TestDatabase::create(backend).await.context("no PostgreSQL to benchmark")?;
        let other = if backend == Backend::Postgres { Backend::Sqlite } else { Backend::Postgres };
        let target = TestDatabase::create(other).await.context("no PostgreSQL to benchmark")?;
        let outcome = measure(binary, &source, &target, report).await;
        source.drop_database().await;
        target.drop_database().await;
        verdicts.push(outcome?);
    }
    let grew = verdicts.iter().any(|grew| *grew);
    let _ = writeln!(
        report,
        "\nThe small user has {SESSIONS} sessions of {SMALL_ITEMS} items, the large one {SESSIONS} of \
         {LARGE_ITEMS}, the huge one {SESSIONS} of {HUGE_ITEMS}. Export and import rates are the large user's export size over the \
         median of {REPEATS} runs, on one HTTP connection; the imports write the large export into a third \
         user, replacing it each time. `chatstore copy` moves all four users (migrating the target first, \
         verifying counts and digests at the end: it reads every user twice on each side), rate in MB of \
         export. {}",
        if grew {
            "**The peak grew with the export's size: an export is holding more than a page.**"
        } else {
            "Exports are read from one snapshot in pages of at most 500 records, so the peak does not follow \
             the data: the huge export, four times the large one, raises it by a few MB at most."
        }
    );
    Ok(())
}

/// Loads the users, measures, and writes one row; returns whether the peak grew with the
/// data.
async fn measure(
    binary: &Path,
    source: &TestDatabase,
    target: &TestDatabase,
    report: &mut String,
) -> anyhow::Result<bool> {
    let db = source.connect().await;
    db.migrate().await?;
    for (user, items) in [("small", SMALL_ITEMS), ("large", LARGE_ITEMS), ("huge", HUGE_ITEMS)] {
        let batch: Vec<&str> =
            (0..items).map(|n| if n % 2 == 0 { USER_ITEM } else { ASSISTANT_ITEM }).collect();
        for session in 0..SESSIONS {
            db.sessions().add_items(user, &format!("s{session}"), &batch, None).await?;
        }
    }
    db.close().await;

    let server = serve(binary, &source.url);
    let settings = test_settings(&source.url, |_| {});
    let token = |user: &str| chatstore::auth::mint_token(&settings.auth, user);
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.address);
    let peak_mb = || footprint(server.pid()).map_or(f64::NAN, |(kb, _)| kb as f64 / 1024.0);

    let export = async |user: &str| -> anyhow::Result<(Duration, bytes::Bytes)> {
        let started = Instant::now();
        let response = client.get(url("/export")).bearer_auth(token(user)?).send().await?;
        anyhow::ensure!(response.status() == 200, "export answered {}", response.status());
        let body = response.bytes().await?;
        Ok((started.elapsed(), body))
    };
    let idle = peak_mb();
    export("small").await?;
    let after_small = peak_mb();
    let mut exports = Series::default();
    let mut large = bytes::Bytes::new();
    for _ in 0..REPEATS {
        let (elapsed, body) = export("large").await?;
        exports.samples.push(elapsed);
        large = body;
    }
    let after_large = peak_mb();
    let (_, huge) = export("huge").await?;
    let after_huge = peak_mb();
    anyhow::ensure!(huge.len() > 3 * large.len(), "the huge export is {} bytes", huge.len());
    let lines = large.iter().filter(|byte| **byte == b'\n').count();
    anyhow::ensure!(lines == SESSIONS * (LARGE_ITEMS + 1), "the export has {lines} lines");

    let mut imports = Series::default();
    for _ in 0..REPEATS {
        let started = Instant::now();
        let response = client
            .post(url("/import"))
            .bearer_auth(token("restored")?)
            .header("content-type", "application/x-ndjson")
            .body(large.clone())
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "import answered {}", response.status());
        response.bytes().await?;
        imports.samples.push(started.elapsed());
    }
    let after_imports = peak_mb();
    server.stop();

    let megabytes = large.len() as f64 / 1e6;
    let rate = |series: &Series| megabytes / series.percentile(0.5).as_secs_f64();
    let started = Instant::now();
    let output = std::process::Command::new(binary)
        .args(["copy", &source.url, &target.url])
        .env_remove("APP_ENV")
        .output()?;
    let copy_time = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "chatstore copy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Four users: small, large, huge, and restored (a copy of large).
    let copied_mb = (large.len() * 2 + huge.len()) as f64 / 1e6
        + megabytes * f64::from(SMALL_ITEMS as u32) / f64::from(LARGE_ITEMS as u32);
    let records = SESSIONS * (SMALL_ITEMS + 2 * LARGE_ITEMS + HUGE_ITEMS + 4);
    let name = |url: &str| if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" };
    let _ = writeln!(
        report,
        "| {} | **{:.1}** | **{:.1}** | {:.1} MB in {:.2} s | {idle:.1} / {after_small:.1} / {after_large:.1} / **{after_huge:.1}** / {after_imports:.1} MB | to {}: {:.1} MB ({records} records) in {:.1} s, **{:.1} MB/s** |",
        name(&source.url),
        rate(&exports),
        rate(&imports),
        megabytes,
        exports.percentile(0.5).as_secs_f64(),
        name(&target.url),
        copied_mb,
        copy_time.as_secs_f64(),
        copied_mb / copy_time.as_secs_f64(),
    );
    // Streamed, an export holds a page: four times the data may raise the peak by the
    // allocator's slack, not by anything like the export's size.
    Ok(after_huge - after_large > 5.0)
}
