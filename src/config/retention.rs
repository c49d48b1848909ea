//! `retention`: how long data is kept and how housekeeping purges the rest.

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// Housekeeping (DESIGN §8): what has expired or been used is purged in
/// small batches; the audit log is kept for `audit_days`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days the audit log, and the metadata of sent emails, are kept; 0 keeps them forever.
    pub audit_days: u32,
    /// How long sessions, refresh tokens, challenges and one-time links stay
    /// after they expired or were used, in seconds (default 24 h).
    pub grace_secs: u64,
    /// Seconds between housekeeping runs on each replica.
    pub interval_secs: u64,
    /// Rows one delete statement removes at most.
    pub batch_rows: u32,
    /// Batches a run makes per kind of data at most; rows left beyond wait
    /// for the next run, which then starts at once.
    pub max_batches_per_run: u32,
    /// Pause between two batches, in milliseconds, so that writers queued
    /// behind a batch (SQLite has one writer) get their turn.
    pub batch_pause_ms: u64,
    /// The status shows housekeeping degraded when no run has succeeded for this long, in seconds.
    pub stale_after_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            audit_days: 400,
            grace_secs: 24 * 3600,
            interval_secs: 300,
            batch_rows: 500,
            max_batches_per_run: 200,
            batch_pause_ms: 5,
            stale_after_secs: 3600,
        }
    }
}

impl RetentionConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=86_400).contains(&self.interval_secs) {
            return Err(bad("retention.interval_secs", "must be 1 to 86400"));
        }
        if !(1..=10_000).contains(&self.batch_rows) {
            return Err(bad("retention.batch_rows", "must be 1 to 10000"));
        }
        if self.max_batches_per_run == 0 {
            return Err(bad("retention.max_batches_per_run", "must be at least 1"));
        }
        if self.batch_pause_ms > 10_000 {
            return Err(bad("retention.batch_pause_ms", "must be at most 10000"));
        }
        if self.stale_after_secs <= self.interval_secs {
            return Err(bad("retention.stale_after_secs", "must be longer than `retention.interval_secs`"));
        }
        if self.grace_secs > 365 * 86_400 {
            return Err(bad("retention.grace_secs", "must be at most a year"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_keep_the_audit_log_400_days() {
        let config = RetentionConfig::default();
        config.validate().unwrap();
        assert_eq!(config.audit_days, 400);
        let forever = RetentionConfig { audit_days: 0, ..config.clone() };
        assert!(forever.validate().is_ok(), "0 keeps the audit log forever");
        let stale = RetentionConfig { stale_after_secs: config.interval_secs, ..config.clone() };
        assert!(stale.validate().unwrap_err().to_string().contains("`retention.stale_after_secs`"));
        let zero = RetentionConfig { batch_rows: 0, ..config };
        assert!(zero.validate().unwrap_err().to_string().contains("`retention.batch_rows`"));
    }
}
