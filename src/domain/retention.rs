//! How long each kind of stored data lives (DESIGN §8): what housekeeping
//! purges, from which instant on, and when housekeeping counts as behind.

use super::platform::ComponentState;

/// A kind of row housekeeping purges, in the order it purges them: a
/// session's refresh tokens go before the session, so deleting a session
/// never cascades to thousands of rows in one statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expiring {
    /// Refresh tokens past their expiry (a session's tokens share its expiry).
    RefreshTokens,
    /// Refresh tokens of sessions revoked before the cutoff.
    RevokedSessionTokens,
    /// Sessions expired or revoked.
    Sessions,
    /// Password-then-passcode and new-PIN challenges past their expiry.
    LoginChallenges,
    /// One-time links expired, used or superseded.
    Links,
    /// Spent captcha solutions past their expiry.
    SpentNonces,
    /// Throttle and quota counters whose window has ended.
    RateCounters,
    /// Audit events older than the configured retention.
    AuditEvents,
    /// Sent or abandoned emails (bodies already gone) older than the audit retention.
    SentEmails,
    /// Outcomes of retry-safe batch resets past their replay window.
    ResetRequests,
}

impl Expiring {
    pub const PURGE_ORDER: [Expiring; 10] = [
        Expiring::RefreshTokens,
        Expiring::RevokedSessionTokens,
        Expiring::Sessions,
        Expiring::LoginChallenges,
        Expiring::Links,
        Expiring::SpentNonces,
        Expiring::RateCounters,
        Expiring::AuditEvents,
        Expiring::SentEmails,
        Expiring::ResetRequests,
    ];

    /// The table the rows live in: the label of the purge metrics.
    pub fn table(self) -> &'static str {
        match self {
            Expiring::RefreshTokens | Expiring::RevokedSessionTokens => "refresh_tokens",
            Expiring::Sessions => "sessions",
            Expiring::LoginChallenges => "login_challenges",
            Expiring::Links => "activation_tokens",
            Expiring::SpentNonces => "spent_nonces",
            Expiring::RateCounters => "rate_counters",
            Expiring::AuditEvents => "audit_events",
            Expiring::SentEmails => "email_outbox",
            Expiring::ResetRequests => "reset_requests",
        }
    }
}

/// The lifetimes housekeeping applies, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// How long a spent credential (session, refresh token, challenge, link)
    /// stays after it expired or was used: a person re-opening yesterday's
    /// link still hears "already used" rather than "unknown".
    pub grace_ms: i64,
    /// How long spent captcha solutions stay past their own expiry, for
    /// replicas whose clocks lag.
    pub nonce_grace_ms: i64,
    /// The longest window any rate counter counts in.
    pub longest_window_ms: i64,
    /// Audit retention; `None` keeps the audit log (and email metadata) forever.
    pub audit_ms: Option<i64>,
}

/// Rows of `kind` whose deciding instant is before the answer are purged;
/// `None`: none are.
pub fn cutoff(kind: Expiring, now_ms: i64, lifetimes: &Lifetimes) -> Option<i64> {
    let before = |age_ms: i64| now_ms.saturating_sub(age_ms.max(0));
    match kind {
        Expiring::RefreshTokens
        | Expiring::RevokedSessionTokens
        | Expiring::Sessions
        | Expiring::LoginChallenges
        | Expiring::Links => Some(before(lifetimes.grace_ms)),
        Expiring::SpentNonces => Some(before(lifetimes.nonce_grace_ms)),
        Expiring::RateCounters => Some(before(lifetimes.longest_window_ms)),
        Expiring::AuditEvents | Expiring::SentEmails => lifetimes.audit_ms.map(before),
        Expiring::ResetRequests => Some(before(super::request_id::RETENTION_MS)),
    }
}

/// What the last successful housekeeping run left, as the status reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastRun {
    pub age_ms: i64,
    /// Rows still due when it stopped at its batch limit.
    pub backlog_left: bool,
}

/// Housekeeping is degraded when its last success is older than
/// `stale_after_ms` (it fails, or no replica runs it) or when it left rows
/// behind (it purges more slowly than the service creates them).
pub fn housekeeping_state(last: Option<LastRun>, stale_after_ms: i64) -> (ComponentState, String) {
    match last {
        None => (ComponentState::Operational, "first run pending".to_owned()),
        Some(run) if run.age_ms > stale_after_ms => {
            (ComponentState::Degraded, format!("no successful purge for {} min", run.age_ms / 60_000))
        }
        Some(run) if run.backlog_left => {
            (ComponentState::Degraded, "catching up: the last purge left expired rows behind".to_owned())
        }
        Some(run) => (ComponentState::Operational, format!("expired data purged {} s ago", run.age_ms / 1000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIMES: Lifetimes =
        Lifetimes { grace_ms: 1_000, nonce_grace_ms: 100, longest_window_ms: 3_600_000, audit_ms: Some(50_000) };

    #[test]
    fn each_kind_is_cut_off_by_its_own_lifetime() {
        let now = 10_000_000;
        for kind in Expiring::PURGE_ORDER {
            let expected = match kind {
                Expiring::SpentNonces => now - 100,
                Expiring::RateCounters => now - 3_600_000,
                Expiring::AuditEvents | Expiring::SentEmails => now - 50_000,
                Expiring::ResetRequests => now - super::super::request_id::RETENTION_MS,
                _ => now - 1_000,
            };
            assert_eq!(cutoff(kind, now, &LIFETIMES), Some(expected), "{kind:?}");
        }
    }

    #[test]
    fn an_audit_retention_of_none_keeps_the_log_and_email_metadata() {
        let forever = Lifetimes { audit_ms: None, ..LIFETIMES };
        assert_eq!(cutoff(Expiring::AuditEvents, 10, &forever), None);
        assert_eq!(cutoff(Expiring::SentEmails, 10, &forever), None);
        assert!(cutoff(Expiring::Sessions, 10, &forever).is_some());
        assert_eq!(cutoff(Expiring::Sessions, i64::MIN, &forever), Some(i64::MIN), "no overflow");
    }

    #[test]
    fn tokens_go_before_their_sessions() {
        let order = Expiring::PURGE_ORDER;
        let at = |kind| order.iter().position(|k| *k == kind).unwrap();
        assert!(at(Expiring::RefreshTokens) < at(Expiring::Sessions));
        assert!(at(Expiring::RevokedSessionTokens) < at(Expiring::Sessions));
    }

    #[test]
    fn housekeeping_is_degraded_when_stale_or_behind() {
        assert_eq!(housekeeping_state(None, 60_000).0, ComponentState::Operational);
        let fresh = LastRun { age_ms: 5_000, backlog_left: false };
        assert_eq!(
            housekeeping_state(Some(fresh), 60_000),
            (ComponentState::Operational, "expired data purged 5 s ago".to_owned())
        );
        let behind = LastRun { backlog_left: true, ..fresh };
        assert_eq!(housekeeping_state(Some(behind), 60_000).0, ComponentState::Degraded);
        let stale = LastRun { age_ms: 180_000, backlog_left: false };
        assert_eq!(
            housekeeping_state(Some(stale), 60_000),
            (ComponentState::Degraded, "no successful purge for 3 min".to_owned())
        );
    }
}
