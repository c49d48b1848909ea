//! Delivers the email outbox, on every replica at once. Each due row is claimed
//! with one conditional UPDATE, sent, then marked sent, retried with exponential
//! backoff, or failed. Delivery is at least once: a crash between sending and
//! marking sends the row again, with the same Message-ID.

use std::{sync::Arc, time::Duration};

use lettre::message::Mailbox;
use tokio::{sync::watch, time::Instant};

use super::transport::{self, FailureKind, Transport};
use crate::{
    app::App,
    store::{StoreResult, entities::email_outbox, outbox},
    telemetry::metrics::EMAIL_DELIVERIES,
};

/// Rows read per query.
const BATCH: u64 = 50;
/// Batches per pass at most, so a pass always ends and polling stays regular.
const MAX_BATCHES: usize = 20;
/// How long a claim keeps other replicas off a row: longer than any delivery can take.
const LEASE: Duration = Duration::from_secs(60);
const _: () = assert!(transport::DELIVERY_TIMEOUT.as_secs() * 2 <= LEASE.as_secs());
/// Time left to deliver once stop is asked, in-flight message and final pass together.
pub const FINAL_PASS: Duration = Duration::from_secs(4);
/// Longest `last_error` kept, in characters.
const ERROR_CHARS: usize = 500;

/// Delivers due emails every `mail.poll_interval_ms` until `stop` turns true
/// (or its sender is dropped), then makes one final pass bounded by
/// [`FINAL_PASS`] and returns.
pub async fn run(app: Arc<App>, transport: Transport, stop: watch::Receiver<bool>) {
    let from = match app.config.mail.sender(&app.config.public_url) {
        Ok(from) => from,
        Err(error) => {
            // Config::validate refuses this at start; reaching here is a bug, not input.
            tracing::error!(%error, "email dispatcher not started: no sender address");
            return;
        }
    };
    let dispatcher = Dispatcher { app, transport, from };
    let deadline = dispatcher.poll_until_stopped(stop).await;
    if tokio::time::timeout_at(deadline, dispatcher.pass(None)).await.is_err() {
        tracing::info!("email dispatcher stopped before the outbox was empty; the rest goes out after restart");
    }
}

/// Wait before the attempt after `failures` failed ones (at least 1): the base,
/// doubled per failure, capped.
pub fn backoff_ms(base_ms: u64, max_ms: u64, failures: u32) -> u64 {
    base_ms.saturating_mul(2u64.saturating_pow(failures.saturating_sub(1))).min(max_ms)
}

struct Dispatcher {
    app: Arc<App>,
    transport: Transport,
    from: Mailbox,
}

/// What the rest of a pass should do after one row.
enum Next {
    Continue,
    /// The relay cannot be reached: the other rows would fail the same way, so
    /// they wait for the next poll rather than each paying a timeout.
    EndPass,
}

impl Dispatcher {
    /// Passes until stop; returns the deadline of the final pass.
    async fn poll_until_stopped(&self, mut stop: watch::Receiver<bool>) -> Instant {
        let poll = Duration::from_millis(self.app.config.mail.poll_interval_ms);
        let watcher = stop.clone();
        loop {
            let pass = self.pass(Some(&watcher));
            tokio::pin!(pass);
            tokio::select! {
                () = &mut pass => {}
                () = stopped(&mut stop) => {
                    // The pass stops between rows; a message being sent gets the final
                    // pass's time to finish. Cut off, its row keeps the claim and goes
                    // again once the lease ends, with the same Message-ID.
                    let deadline = Instant::now() + FINAL_PASS;
                    let _ = tokio::time::timeout_at(deadline, &mut pass).await;
                    return deadline;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = stopped(&mut stop) => return Instant::now() + FINAL_PASS,
            }
        }
    }

    /// Delivers what is due, oldest first, until nothing is, the relay is down,
    /// or `stop` (when given) turns true.
    async fn pass(&self, stop: Option<&watch::Receiver<bool>>) {
        for _ in 0..MAX_BATCHES {
            let now = self.app.clock.now_ms();
            let due = match outbox::due(self.app.store.connection(), now, BATCH).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the email outbox");
                    return;
                }
            };
            let full = due.len() as u64 == BATCH;
            for email in due {
                if stop.is_some_and(|stop| *stop.borrow()) {
                    return;
                }
                match self.deliver(email).await {
                    Ok(Next::Continue) => {}
                    Ok(Next::EndPass) => return,
                    Err(error) => {
                        tracing::warn!(%error, "cannot update the email outbox");
                        return;
                    }
                }
            }
            if !full {
                return;
            }
        }
    }

    /// Claims, sends and marks one row.
    async fn deliver(&self, email: email_outbox::Model) -> StoreResult<Next> {
        let conn = self.app.store.connection();
        let lease_end = self.app.clock.now_ms().saturating_add(millis(LEASE));
        if !outbox::claim(conn, &email.id, email.next_attempt_at, lease_end).await? {
            return Ok(Next::Continue); // another replica took it
        }
        let email = match outbox::opened(&self.app.data_keys, &email) {
            Ok(opened) => opened,
            Err(error) => {
                // Sealed under a key this replica lacks (a rotation not rolled out here
                // yet): the row waits for a replica that has it.
                let next = self.app.clock.now_ms().saturating_add(millis(LEASE));
                outbox::mark_retry(conn, &email.id, next, &error.to_string()).await?;
                tracing::warn!(message_id = %email.message_id, %error, "cannot open an email's body");
                return Ok(Next::Continue);
            }
        };
        let attempt = email.attempts.saturating_add(1);
        let result = self.transport.deliver(&self.from, &email).await;
        let now = self.app.clock.now_ms();
        let (message_id, kind) = (email.message_id.as_str(), email.kind.as_str());
        let failure = match result {
            Ok(()) => {
                outbox::mark_sent(conn, &email.id, now).await?;
                metrics::counter!(EMAIL_DELIVERIES, "result" => "sent").increment(1);
                tracing::info!(message_id, kind, attempt, "email delivered");
                tracing::debug!(message_id, recipient = %email.recipient, "email recipient");
                return Ok(Next::Continue);
            }
            Err(failure) => failure,
        };
        let mail = &self.app.config.mail;
        let detail = truncate(&failure.detail, ERROR_CHARS);
        let reason = failure.summary.as_str();
        if failure.is_permanent() || i64::from(attempt) >= i64::from(mail.max_attempts) {
            outbox::mark_failed(conn, &email.id, now, &detail).await?;
            metrics::counter!(EMAIL_DELIVERIES, "result" => "failed").increment(1);
            tracing::warn!(message_id, kind, attempt, reason, "email undeliverable, given up");
        } else {
            let failures = u32::try_from(attempt).unwrap_or(u32::MAX);
            let wait_ms = backoff_ms(mail.retry_base_ms, mail.retry_max_ms, failures);
            let next = now.saturating_add(i64::try_from(wait_ms).unwrap_or(i64::MAX));
            outbox::mark_retry(conn, &email.id, next, &detail).await?;
            metrics::counter!(EMAIL_DELIVERIES, "result" => "retry").increment(1);
            tracing::warn!(message_id, kind, attempt, reason, retry_in_ms = wait_ms, "email not delivered, will retry");
        }
        tracing::debug!(message_id, recipient = %email.recipient, detail = %detail, "email failure");
        Ok(if failure.kind == FailureKind::Unreachable { Next::EndPass } else { Next::Continue })
    }
}

/// Completes when stop is asked, or when nobody can ask any more.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let waits: Vec<u64> = (1..=6).map(|failures| backoff_ms(2000, 20_000, failures)).collect();
        assert_eq!(waits, [2000, 4000, 8000, 16_000, 20_000, 20_000]);
        assert_eq!(backoff_ms(2000, 900_000, 0), 2000);
        assert_eq!(backoff_ms(2000, 900_000, u32::MAX), 900_000, "no overflow");
    }

    #[test]
    fn errors_are_cut_on_character_boundaries() {
        assert_eq!(truncate("é".repeat(600).as_str(), 500).chars().count(), 500);
    }
}
