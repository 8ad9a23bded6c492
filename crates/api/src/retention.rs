//! The background sweeper of `retention.idle_days` and `retention.inactive_days`.

use std::sync::Arc;
use std::time::Duration;

use repositories::{Db, RepoResult};

use crate::metrics::Metrics;
use crate::settings::RetentionSettings;

/// Runs the sweep now and then every `sweep_interval_secs`, forever; returns at once when
/// no rule is set.
pub(crate) async fn sweep_forever(db: Db, settings: RetentionSettings, metrics: Arc<Metrics>) {
    if !settings.enabled() {
        return;
    }
    let mut interval = tokio::time::interval(Duration::from_secs(settings.sweep_interval_secs));
    loop {
        interval.tick().await;
        if let Err(err) = sweep(&db, &settings, &metrics).await {
            tracing::warn!(error = %err, "the retention sweep failed; it runs again later");
        }
    }
}

/// What one batch deletes.
#[derive(Debug, Clone, Copy)]
enum Target {
    InactiveChats,
    IdleChats,
    IdleThreads,
}

/// One sweep: every rule that is set, batch after batch until a batch comes back short.
pub(crate) async fn sweep(
    db: &Db,
    settings: &RetentionSettings,
    metrics: &Metrics,
) -> RepoResult<()> {
    let cutoff = |days: u32| chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    if let Some(days) = settings.inactive_days {
        in_batches(db, settings.batch_size, metrics, Target::InactiveChats, cutoff(days)).await?;
    }
    if let Some(days) = settings.idle_days {
        in_batches(db, settings.batch_size, metrics, Target::IdleChats, cutoff(days)).await?;
        in_batches(db, settings.batch_size, metrics, Target::IdleThreads, cutoff(days)).await?;
    }
    Ok(())
}

/// Deletes `target`s older than `cutoff` until a batch comes back short, counting them.
/// Other tasks (and writers) go between batches.
async fn in_batches(
    db: &Db,
    batch: u64,
    metrics: &Metrics,
    target: Target,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> RepoResult<()> {
    let retention = db.retention();
    let (kind, rule) = match target {
        Target::InactiveChats => ("chat", "inactive_days"),
        Target::IdleChats => ("chat", "idle_days"),
        Target::IdleThreads => ("thread", "idle_days"),
    };
    loop {
        let deleted = match target {
            Target::InactiveChats => retention.delete_inactive_chats(cutoff, batch).await?,
            Target::IdleChats => retention.delete_idle_chats(cutoff, batch).await?,
            Target::IdleThreads => retention.delete_idle_threads(cutoff, batch).await?,
        };
        if deleted > 0 {
            metrics.count_retention(kind, rule, deleted);
            tracing::info!(kind, rule, deleted, "retention deleted conversations");
        }
        if deleted < batch {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
}
