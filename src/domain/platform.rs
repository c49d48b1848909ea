//! Platform status rules: how each component's readings become a state, and
//! which maintenance windows matter.

/// Components a status reports and a maintenance window may name.
pub const COMPONENTS: [&str; 6] = ["database", "email", "signing_keys", "password_hashing", "logins", "housekeeping"];

/// Ordered from best to worst, so the overall state is the maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentState {
    Operational,
    Maintenance,
    Degraded,
    Outage,
}

/// The email backlog is degraded when the oldest undelivered message has
/// waited longer than `max_wait_ms`.
pub fn email_state(pending: u64, oldest_pending_age_ms: Option<i64>, max_wait_ms: i64) -> (ComponentState, String) {
    match oldest_pending_age_ms {
        Some(age) if age > max_wait_ms => {
            (ComponentState::Degraded, format!("{pending} emails waiting, the oldest for {} s", age / 1000))
        }
        _ if pending > 0 => (ComponentState::Operational, format!("{pending} emails being delivered")),
        _ => (ComponentState::Operational, "all emails delivered".to_owned()),
    }
}

/// Password hashing is degraded once callers queue for half the waiting room.
pub fn hashing_state(busy: usize, workers: usize, waiting: usize, queue: usize) -> (ComponentState, String) {
    let detail = format!("{busy} of {workers} workers busy, {waiting} waiting");
    if waiting * 2 >= queue.max(1) { (ComponentState::Degraded, detail) } else { (ComponentState::Operational, detail) }
}

/// Whether a window naming `components` (empty: everything) covers `component`.
pub fn covers(components: &[String], component: &str) -> bool {
    components.is_empty() || components.iter().any(|c| c == component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_state_wins() {
        let states = [ComponentState::Operational, ComponentState::Degraded, ComponentState::Maintenance];
        assert_eq!(states.into_iter().max(), Some(ComponentState::Degraded));
        assert!(ComponentState::Outage > ComponentState::Degraded);
    }

    #[test]
    fn an_old_backlog_degrades_email() {
        assert_eq!(email_state(0, None, 60_000).0, ComponentState::Operational);
        assert_eq!(email_state(3, Some(5_000), 60_000).0, ComponentState::Operational);
        let (state, detail) = email_state(3, Some(120_000), 60_000);
        assert_eq!(state, ComponentState::Degraded);
        assert_eq!(detail, "3 emails waiting, the oldest for 120 s");
    }

    #[test]
    fn a_long_hashing_queue_degrades() {
        assert_eq!(hashing_state(2, 2, 10, 256).0, ComponentState::Operational);
        assert_eq!(hashing_state(2, 2, 128, 256).0, ComponentState::Degraded);
    }

    #[test]
    fn empty_component_lists_cover_everything() {
        assert!(covers(&[], "logins"));
        assert!(covers(&["email".to_owned()], "email"));
        assert!(!covers(&["email".to_owned()], "logins"));
    }
}
