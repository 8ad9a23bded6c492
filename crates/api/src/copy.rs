//! `chatstore copy FROM TO`: every user's records from one database into another (SQLite to
//! PostgreSQL and back), through the same records as `GET /export` and `POST /import`.
//!
//! - Both databases are brought up to date by the real migrations first.
//! - Each user is copied in one transaction on TO that first erases that user there, so TO's
//!   copy of a user is exactly FROM's, never half of it. The records stream through page by
//!   page (the export's pages are the batches): memory holds one page.
//! - Resumable: a user whose records on TO already have FROM's counts and digest is skipped,
//!   so running the command again after an interruption continues where it stopped.
//! - At the end every user is verified: the same number of records of each kind on both
//!   sides, and the same SHA-256 of their export.
//! - Users found only on TO are left alone.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use repositories::{DatabaseSettings, Db};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Users asked for at a time.
const USER_PAGE: u64 = 500;

/// What a copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyReport {
    /// Users copied by this run.
    pub copied: u64,
    /// Users already on TO as on FROM (a resumed copy), left as they were.
    pub unchanged: u64,
    /// Records written by this run.
    pub records: u64,
}

/// A user's records on one side: how many of each kind, and a digest of them all.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    counts: BTreeMap<String, u64>,
    sha256: Vec<u8>,
}

/// Copies every user of `from` into `to` and verifies them. `database` gives the pool
/// settings; the URLs replace its `url`.
pub async fn copy(database: &DatabaseSettings, from: &str, to: &str) -> anyhow::Result<CopyReport> {
    let from = open(database, from).await.context("cannot open FROM")?;
    let to = open(database, to).await.context("cannot open TO")?;
    let total = from.records().user_count().await?;

    let bar = progress(total, "copying");
    let mut report = CopyReport { copied: 0, unchanged: 0, records: 0 };
    let mut after: Option<String> = None;
    loop {
        let users = from.records().users(after.as_deref(), USER_PAGE).await?;
        for user in &users {
            if fingerprint(&from, user).await? == fingerprint(&to, user).await? {
                report.unchanged += 1;
            } else {
                report.records += copy_user(&from, &to, user)
                    .await
                    .with_context(|| format!("copying user {user:?}"))?;
                report.copied += 1;
            }
            bar.inc(1);
        }
        match users.last() {
            Some(last) if users.len() as u64 == USER_PAGE => after = Some(last.clone()),
            _ => break,
        }
    }
    bar.finish_and_clear();

    verify(&from, &to, total).await?;
    from.close().await;
    to.close().await;
    Ok(report)
}

async fn open(database: &DatabaseSettings, url: &str) -> anyhow::Result<Db> {
    let mut settings = database.clone();
    settings.url = SecretString::from(url.to_owned());
    settings.validate().map_err(anyhow::Error::msg)?;
    let db = Db::connect(&settings).await?;
    db.migrate().await.context("cannot migrate")?;
    Ok(db)
}

/// A progress bar on standard error when it is a terminal (hidden otherwise).
fn progress(total: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total).with_message(message);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>9} [{bar:40}] {pos}/{len} users ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Replaces the user's records on `to` with those on `from`, in one transaction on `to`.
async fn copy_user(from: &Db, to: &Db, user: &str) -> anyhow::Result<u64> {
    let mut exporter = from.records().exporter(user).await?;
    let mut importer = to.records().importer(user).await?;
    importer.erase_first().await?;
    let mut number = 0u64;
    while let Some(chunk) = exporter.next_chunk().await? {
        for line in chunk.lines() {
            number += 1;
            importer.apply(number, line).await?;
        }
    }
    exporter.finish().await?;
    Ok(importer.commit().await?)
}

async fn fingerprint(db: &Db, user: &str) -> anyhow::Result<Fingerprint> {
    let mut exporter = db.records().exporter(user).await?;
    let mut counts = BTreeMap::new();
    let mut digest = Sha256::new();
    while let Some(chunk) = exporter.next_chunk().await? {
        digest.update(chunk.as_bytes());
        for line in chunk.lines() {
            // Records are written with their kind first: `{"kind":"chat",...`.
            let kind = line
                .strip_prefix("{\"kind\":\"")
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("?");
            *counts.entry(kind.to_owned()).or_insert(0) += 1;
        }
    }
    exporter.finish().await?;
    Ok(Fingerprint { counts, sha256: digest.finalize().to_vec() })
}

/// Every user of `from` has the same records on `to`.
async fn verify(from: &Db, to: &Db, total: u64) -> anyhow::Result<()> {
    let bar = progress(total, "verifying");
    let mut after: Option<String> = None;
    loop {
        let users = from.records().users(after.as_deref(), USER_PAGE).await?;
        for user in &users {
            let (source, target) = (fingerprint(from, user).await?, fingerprint(to, user).await?);
            if source.counts != target.counts {
                bail!(
                    "user {user:?} differs after the copy: {:?} on FROM, {:?} on TO",
                    source.counts,
                    target.counts
                );
            }
            if source.sha256 != target.sha256 {
                bail!("user {user:?} differs after the copy: the records' digests differ");
            }
            bar.inc(1);
        }
        match users.last() {
            Some(last) if users.len() as u64 == USER_PAGE => after = Some(last.clone()),
            _ => break,
        }
    }
    bar.finish_and_clear();
    Ok(())
}
