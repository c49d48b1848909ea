//! Login throttling ahead of lockout: per login and per source IP, counted in
//! the database (fixed windows). An attempt holds its slots until it is known
//! to have failed; a success hands them back, so only failures (and attempts
//! in flight) add up. Throttled attempts never reach the password check, and
//! only the first of each window and limit is audited.

use std::time::Duration;

use super::{App, caller::RequestContext};
use crate::{
    crypto::random::token_hash,
    domain::Error,
    store::{Writes, rate},
};

/// The slots one attempt holds.
#[must_use = "a successful attempt must give its slots back"]
pub struct Reservation {
    slots: Vec<(String, i64)>,
}

/// What the throttle made of one login attempt.
pub enum Admission {
    /// Go on to the password check, holding these slots.
    Admitted(Reservation),
    Refused(Refusal),
}

/// A throttled attempt.
#[derive(Debug)]
pub struct Refusal {
    retry_after: Duration,
    /// Set on the first refusal of a window by a limit (per login, per
    /// address): that one refusal is audited, the rest of the window's only
    /// counted, so a flood of throttled calls cannot grow the audit log.
    pub first_of_window: Option<&'static str>,
}

impl Refusal {
    pub fn error(&self) -> Error {
        Error::Throttled { retry_after: self.retry_after }
    }
}

const LOGIN_KEY: &str = "login:user:";

pub async fn reserve_login(app: &App, login: &str, ctx: &RequestContext) -> Result<Admission, Error> {
    let policy = &app.config.throttle;
    let window_ms = i64::try_from(policy.window_secs).unwrap_or(60) * 1000;
    // The login is hashed: keys stay short, and attacker-chosen text stays out of them.
    let mut keys = vec![(format!("{LOGIN_KEY}{}", &token_hash(login)[..32]), policy.login_per_user)];
    if let Some(ip) = &ctx.source_ip {
        keys.push((format!("login:ip:{ip}"), policy.login_per_ip));
    }
    let now = app.clock.now_ms();
    let names: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
    // One statement for all the slots: it runs on every login.
    let counted = rate::hit_each(app.store.connection(), &names, window_ms, now).await?;
    let mut reservation = Reservation { slots: Vec::with_capacity(keys.len()) };
    let mut retry_after_ms = 0;
    let mut exceeded = Vec::new();
    for ((key, limit), (count, window_start)) in keys.into_iter().zip(counted) {
        if i64::from(count) > i64::from(limit) {
            retry_after_ms = retry_after_ms.max(window_start + window_ms - now);
            exceeded.push(format!("{key}:refused:{window_start}"));
        }
        reservation.slots.push((key, window_start));
    }
    if retry_after_ms == 0 {
        return Ok(Admission::Admitted(reservation));
    }
    // A throttled attempt takes nothing: it must not prolong anyone's wait.
    reservation.release(app).await;
    // Refusals are counted per limit and window (the window's start is in the
    // key, so the count starts afresh with each window and housekeeping purges
    // it like any counter); the one that counts 1 is the window's first.
    let exceeded: Vec<&str> = exceeded.iter().map(String::as_str).collect();
    let refusals = rate::hit_each(app.store.connection(), &exceeded, window_ms, now).await?;
    let first_of_window = exceeded
        .iter()
        .zip(refusals)
        .find(|(_, (count, _))| *count == 1)
        .map(|(key, _)| if key.starts_with(LOGIN_KEY) { "the per-login limit" } else { "the per-address limit" });
    let seconds = u64::try_from((retry_after_ms + 999) / 1000).unwrap_or(1).max(1);
    Ok(Admission::Refused(Refusal { retry_after: Duration::from_secs(seconds), first_of_window }))
}

impl Reservation {
    /// Gives the slots back (the attempt succeeded, or never got checked).
    pub async fn release(self, app: &App) {
        if let Err(e) = rate::refund_each(app.store.connection(), &self.slots).await {
            tracing::warn!(error = %e, "could not release a throttle slot");
        }
    }

    /// Gives the slots back among the writes of the transaction that records
    /// the success, which saves a commit on every login; in one statement,
    /// taking the rows in the order the reservation took them.
    pub fn release_with(self, writes: &mut Writes) {
        rate::refund_each_with(writes, &self.slots);
    }

    /// Keeps the slots: the attempt failed.
    pub fn keep(self) {}
}
