//! `activation` and `reset`: one-time links and password resets, admin and self-service.

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ActivationConfig {
    /// Lifetime of one-time links, in seconds (default 24 h).
    pub ttl_secs: u64,
}

impl Default for ActivationConfig {
    fn default() -> Self {
        Self { ttl_secs: 24 * 3600 }
    }
}

/// Admin password resets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ResetConfig {
    /// Admin resets allowed per target user per hour; beyond, the target is `THROTTLED`.
    pub admin_resets_per_hour: u32,
    /// Most targets one ResetPasswords call may name.
    pub max_batch: usize,
    /// Self-service reset requests allowed per login per hour.
    pub forgot_per_login_per_hour: u32,
    /// Self-service reset requests allowed per source address per hour.
    pub forgot_per_ip_per_hour: u32,
}

impl Default for ResetConfig {
    fn default() -> Self {
        Self { admin_resets_per_hour: 3, max_batch: 1000, forgot_per_login_per_hour: 3, forgot_per_ip_per_hour: 30 }
    }
}

impl ActivationConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl_secs < 60 {
            return Err(bad("activation.ttl_secs", "must be at least 60"));
        }
        Ok(())
    }
}

impl ResetConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.admin_resets_per_hour == 0 {
            return Err(bad("reset.admin_resets_per_hour", "must be at least 1"));
        }
        if self.forgot_per_login_per_hour == 0 || self.forgot_per_ip_per_hour == 0 {
            return Err(bad(
                "reset.forgot_per_login_per_hour",
                "and `reset.forgot_per_ip_per_hour` must be at least 1",
            ));
        }
        if !(1..=100_000).contains(&self.max_batch) {
            return Err(bad("reset.max_batch", "must be 1 to 100000"));
        }
        Ok(())
    }
}
