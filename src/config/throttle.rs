//! `throttle`: how fast anyone may guess, counted in the database so replicas agree.

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// Login throttling ahead of lockout (see docs/decisions.md). Counted per
/// fixed window in the database, so every replica shares the counts. A
/// login attempt holds a slot until it is known to have failed; successes
/// give theirs back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failed or in-flight attempts allowed per login per window; below the
    /// lockout threshold, so an attacker needs several windows to lock an account.
    pub login_per_user: u32,
    /// Failed or in-flight attempts allowed per source IP per window.
    pub login_per_ip: u32,
    pub window_secs: u64,
    /// "That login is taken" answers per caller per hour (CreateUser and
    /// ChangeUserLogin with a login of the caller's choosing): logins are
    /// global, so each answer says whether some other tenant holds it.
    pub taken_login_answers_per_hour: u32,
    /// The same answers per subscription per hour, all its callers together:
    /// a tenant cannot multiply its budget by creating accounts.
    pub taken_login_answers_per_subscription_per_hour: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            login_per_user: 4,
            login_per_ip: 50,
            window_secs: 60,
            taken_login_answers_per_hour: 20,
            taken_login_answers_per_subscription_per_hour: 100,
        }
    }
}

impl ThrottleConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.login_per_user == 0 || self.login_per_ip == 0 {
            return Err(bad("throttle.login_per_user", "and `throttle.login_per_ip` must be at least 1"));
        }
        if self.taken_login_answers_per_hour == 0 || self.taken_login_answers_per_subscription_per_hour == 0 {
            return Err(bad(
                "throttle.taken_login_answers_per_hour",
                "and `throttle.taken_login_answers_per_subscription_per_hour` must be at least 1",
            ));
        }
        if !(1..=86_400).contains(&self.window_secs) {
            return Err(bad("throttle.window_secs", "must be 1 to 86400"));
        }
        Ok(())
    }
}
