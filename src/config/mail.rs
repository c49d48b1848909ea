//! `mail`: delivery of the email outbox.

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// Delivery of the email outbox: sender, polling and retries (see `mail::dispatcher`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// Sender, `address` or `Name <address>`; empty: `identity@<public_url host>`.
    pub from: String,
    /// How often each replica looks for emails due, in milliseconds.
    pub poll_interval_ms: u64,
    /// Wait before the first retry after a transient failure, in milliseconds; doubles each attempt.
    pub retry_base_ms: u64,
    /// Longest wait between two attempts, in milliseconds.
    pub retry_max_ms: u64,
    /// Delivery attempts before an email is marked failed.
    pub max_attempts: u32,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            from: String::new(),
            poll_interval_ms: 1000,
            retry_base_ms: 2000,
            retry_max_ms: 900_000,
            max_attempts: 25,
        }
    }
}

impl MailConfig {
    /// The From mailbox: `from`, or `identity@` the host of `public_url`.
    pub fn sender(&self, public_url: &str) -> Result<lettre::message::Mailbox, String> {
        let text = match self.from.trim() {
            "" => {
                let url = url::Url::parse(public_url).map_err(|e| format!("cannot default from `public_url`: {e}"))?;
                let host = url.host_str().ok_or("cannot default: `public_url` has no host")?;
                format!("identity@{host}")
            }
            from => from.to_owned(),
        };
        text.parse().map_err(|e| format!("`{text}` is not an email address: {e}"))
    }
}

impl MailConfig {
    pub(super) fn validate(&self, public_url: &str) -> Result<(), ConfigError> {
        self.sender(public_url).map_err(|e| bad("mail.from", e))?;
        if !(10..=3_600_000).contains(&self.poll_interval_ms) {
            return Err(bad("mail.poll_interval_ms", "must be 10 to 3600000"));
        }
        if self.retry_base_ms < 10 {
            return Err(bad("mail.retry_base_ms", "must be at least 10"));
        }
        if self.retry_max_ms < self.retry_base_ms {
            return Err(bad("mail.retry_max_ms", "must be at least `mail.retry_base_ms`"));
        }
        if self.max_attempts == 0 {
            return Err(bad("mail.max_attempts", "must be at least 1"));
        }
        Ok(())
    }
}
