//! Housekeeping: purges what has expired or been used, in small batches,
//! one replica at a time on PostgreSQL (an advisory lock per run), and
//! records each successful run for every replica's status.

use std::time::Duration;

use super::{App, sessions::secs_to_ms};
use crate::{
    domain::{
        Error,
        retention::{self, Expiring, LastRun, Lifetimes},
    },
    store::{
        nonces,
        purge::{self, RunRecord},
    },
    telemetry::metrics::{HOUSEKEEPING_RUNS, PURGED_ROWS},
};

/// The chore's name in `housekeeping_runs`.
pub const CHORE: &str = "purge";

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Rows deleted, per kind of data, in purge order (kinds with none left out).
    pub purged: Vec<(Expiring, u64)>,
    /// A kind reached `max_batches_per_run` with rows still due.
    pub backlog_left: bool,
    /// Another replica held the lock: this one did nothing.
    pub skipped: bool,
}

impl Report {
    pub fn total(&self) -> u64 {
        self.purged.iter().map(|(_, rows)| rows).sum()
    }
}

/// The lifetimes the configuration sets.
pub fn lifetimes(app: &App) -> Lifetimes {
    let config = &app.config.retention;
    Lifetimes {
        grace_ms: secs_to_ms(config.grace_secs),
        nonce_grace_ms: nonces::PURGE_GRACE_MS,
        // Hourly windows (admin resets, self-service requests) share the table: keep them whole.
        longest_window_ms: secs_to_ms(app.config.throttle.window_secs.max(3600)),
        audit_ms: (config.audit_days > 0).then(|| secs_to_ms(u64::from(config.audit_days) * 86_400)),
    }
}

/// One run: purges every kind of expired data, then records the run.
pub async fn run_once(app: &App) -> Result<Report, Error> {
    let Some(lock) = app.store.try_purge_lock().await? else {
        metrics::counter!(HOUSEKEEPING_RUNS, "result" => "skipped").increment(1);
        return Ok(Report { skipped: true, ..Report::default() });
    };
    let purged = purge_all(app).await;
    lock.release().await;
    let report = match purged {
        Ok(report) => report,
        Err(error) => {
            metrics::counter!(HOUSEKEEPING_RUNS, "result" => "failed").increment(1);
            return Err(error);
        }
    };
    let record = RunRecord {
        last_success_at: app.clock.now_ms(),
        backlog_left: report.backlog_left,
        rows_purged: i64::try_from(report.total()).unwrap_or(i64::MAX),
    };
    purge::record_run(app.store.connection(), CHORE, record).await?;
    let result = if report.backlog_left { "behind" } else { "done" };
    metrics::counter!(HOUSEKEEPING_RUNS, "result" => result).increment(1);
    Ok(report)
}

async fn purge_all(app: &App) -> Result<Report, Error> {
    let config = &app.config.retention;
    let lifetimes = lifetimes(app);
    let pause = Duration::from_millis(config.batch_pause_ms);
    let mut report = Report::default();
    for kind in Expiring::PURGE_ORDER {
        // Read per kind: a long run must not purge by an instant long past.
        let Some(cutoff) = retention::cutoff(kind, app.clock.now_ms(), &lifetimes) else {
            continue;
        };
        let mut rows = 0;
        for batch in 1..=config.max_batches_per_run {
            let deleted = purge::purge_batch(app.store.connection(), kind, cutoff, config.batch_rows).await?;
            rows += deleted;
            metrics::counter!(PURGED_ROWS, "table" => kind.table()).increment(deleted);
            if deleted < u64::from(config.batch_rows) {
                break;
            }
            if batch == config.max_batches_per_run {
                report.backlog_left = true;
            } else if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        if rows > 0 {
            report.purged.push((kind, rows));
        }
    }
    Ok(report)
}

/// The last successful run, as the status reads it; `None` before the first.
pub async fn last_run(app: &App) -> Result<Option<LastRun>, Error> {
    let record = purge::last_run(app.store.connection(), CHORE).await?;
    let now = app.clock.now_ms();
    Ok(record.map(|run| LastRun { age_ms: now.saturating_sub(run.last_success_at), backlog_left: run.backlog_left }))
}
