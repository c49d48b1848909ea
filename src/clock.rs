//! The service's idea of now, injectable so that expiry rules can be tested
//! without sleeping.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// Milliseconds since the Unix epoch, the unit every stored instant uses.
    fn now_ms(&self) -> i64 {
        to_ms(self.now())
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// The system clock moved ahead by a jump that only grows: stories and
/// benchmarks live through a simulated month in seconds, while everything
/// that waits in real time (leases, polls) still sees time pass.
#[derive(Debug, Default)]
pub struct AdvancingClock {
    ahead_ms: AtomicI64,
}

impl AdvancingClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Moves the clock ahead by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.ahead_ms.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for AdvancingClock {
    fn now(&self) -> OffsetDateTime {
        SystemClock.now() + time::Duration::milliseconds(self.ahead_ms.load(Ordering::SeqCst))
    }
}

pub fn to_ms(instant: OffsetDateTime) -> i64 {
    i64::try_from(instant.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip() {
        let now = SystemClock.now_ms();
        assert_eq!(to_ms(from_ms(now)), now);
        assert_eq!(from_ms(0), OffsetDateTime::UNIX_EPOCH);
    }

    #[test]
    fn an_advancing_clock_runs_ahead_of_the_system_one() {
        let clock = AdvancingClock::new();
        clock.advance(Duration::from_secs(30 * 86_400));
        let ahead = clock.now_ms() - SystemClock.now_ms();
        assert!((30 * 86_400_000 - 1_000..=30 * 86_400_000).contains(&ahead), "{ahead}");
    }
}
