//! The legacy API's per-user rate limit: fixed windows counted in memory.
//!
//! It is a courtesy limit of the legacy API (the `X-RateLimit-*` headers old
//! clients read), not a security control: login throttling and the reset
//! throttles live in the database behind the gRPC services. Each gateway
//! replica counts on its own (see docs/decisions.md).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Past this many tracked users, expired windows are dropped on the next hit.
const PURGE_ABOVE: usize = 10_000;

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    started: Instant,
    used: u32,
}

/// The outcome of one counted call, with what the headers report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub window_secs: u64,
    /// Until the current window ends.
    pub reset_after: Duration,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts one call of `user` now.
    pub fn hit(&self, user: &str) -> Decision {
        self.hit_at(user, Instant::now())
    }

    fn hit_at(&self, user: &str, now: Instant) -> Decision {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > PURGE_ABOVE {
            windows.retain(|_, w| now.duration_since(w.started) < self.window);
        }
        let window = windows.entry(user.to_owned()).or_insert(Window { started: now, used: 0 });
        if now.duration_since(window.started) >= self.window {
            *window = Window { started: now, used: 0 };
        }
        let allowed = window.used < self.limit;
        if allowed {
            window.used += 1;
        }
        Decision {
            allowed,
            limit: self.limit,
            remaining: self.limit - window.used,
            window_secs: self.window.as_secs(),
            reset_after: self.window.saturating_sub(now.duration_since(window.started)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_gets_the_limit_per_window() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let start = Instant::now();
        let first = limiter.hit_at("a", start);
        assert_eq!((first.allowed, first.remaining, first.limit, first.window_secs), (true, 1, 2, 60));
        assert_eq!(limiter.hit_at("a", start).remaining, 0);
        let refused = limiter.hit_at("a", start + Duration::from_secs(10));
        assert_eq!((refused.allowed, refused.remaining), (false, 0));
        assert_eq!(refused.reset_after, Duration::from_secs(50));
        assert!(limiter.hit_at("b", start).allowed, "users are counted apart");
        let next_window = limiter.hit_at("a", start + Duration::from_secs(60));
        assert_eq!((next_window.allowed, next_window.remaining), (true, 1));
    }
}
