//! `argon2` and `hashing`: the parameters of new password hashes and the pool that computes them.

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// argon2id parameters for new hashes, and the ceilings above which a stored
/// hash is refused before any memory is allocated.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Argon2Config {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_memory_kib: u32,
    pub max_iterations: u32,
    pub max_parallelism: u32,
}

impl Default for Argon2Config {
    /// OWASP's recommendation: m = 19 MiB, t = 2, p = 1.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_memory_kib: 256 * 1024,
            max_iterations: 16,
            max_parallelism: 8,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HashingConfig {
    /// Hashes computed at once; 0 means one per CPU core.
    pub workers: usize,
    /// Requests allowed to wait for a worker; beyond that, RESOURCE_EXHAUSTED.
    pub queue: usize,
    /// While the threads serving calls are busy (a quarter of their time or
    /// more), the share of its time (percent) each batch hashing thread may
    /// work; 100 lets batches hash flat out beside them.
    pub batch_share_percent: u32,
}

impl Default for HashingConfig {
    fn default() -> Self {
        Self { workers: 0, queue: 256, batch_share_percent: 10 }
    }
}

impl HashingConfig {
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 { self.workers } else { std::thread::available_parallelism().map_or(1, usize::from) }
    }
}

impl Argon2Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.parallelism == 0 || self.parallelism > self.max_parallelism {
            return Err(bad("argon2.parallelism", format!("must be 1 to {}", self.max_parallelism)));
        }
        if self.memory_kib < 8 * self.parallelism || self.memory_kib > self.max_memory_kib {
            return Err(bad(
                "argon2.memory_kib",
                format!("must be {} to {}", 8 * self.parallelism, self.max_memory_kib),
            ));
        }
        if self.iterations == 0 || self.iterations > self.max_iterations {
            return Err(bad("argon2.iterations", format!("must be 1 to {}", self.max_iterations)));
        }
        Ok(())
    }
}

impl HashingConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.queue == 0 {
            return Err(bad("hashing.queue", "must be at least 1"));
        }
        if !(1..=100).contains(&self.batch_share_percent) {
            return Err(bad("hashing.batch_share_percent", "must be 1 to 100"));
        }
        Ok(())
    }
}
