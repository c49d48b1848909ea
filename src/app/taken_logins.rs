//! Logins are global (DESIGN §1), so creating or renaming a user must say when
//! a login is taken — by anybody, in any subscription. That answer is an
//! oracle: each caller, and each subscription as a whole, gets a few per
//! hour, and every one is audited, so no tenant can enumerate other tenants'
//! logins at speed.

use std::time::Duration;

use super::{App, caller::RequestContext};
use crate::{
    domain::Error,
    store::{
        audit::{self, AuditRecord},
        entities::user,
        rate,
    },
};

const WINDOW_MS: i64 = 3600 * 1000;

/// One attempt at a login the caller chose: counted until it is known to
/// have been free.
#[must_use = "a free login must give its count back"]
pub struct Probe {
    /// The caller's count and the subscription's: a tenant with many
    /// accounts gets no more answers than its subscription's budget.
    slots: Vec<(String, i64)>,
}

impl Probe {
    /// Counts the attempt; refuses while the caller, or the caller's
    /// subscription, has had too many "taken" answers this hour, before
    /// anything about the login is looked at.
    pub async fn begin(app: &App, caller: &user::Model) -> Result<Probe, Error> {
        let limits = &app.config.throttle;
        let keys = [
            (format!("taken-login:user:{}", caller.id), limits.taken_login_answers_per_hour),
            (
                format!("taken-login:subscription:{}", caller.subscription_id),
                limits.taken_login_answers_per_subscription_per_hour,
            ),
        ];
        let now = app.clock.now_ms();
        let names: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
        let counted = rate::hit_each(app.store.connection(), &names, WINDOW_MS, now).await?;
        let mut retry_after_ms = 0;
        let mut slots = Vec::with_capacity(keys.len());
        for ((key, limit), (count, window_start)) in keys.into_iter().zip(counted) {
            if i64::from(count) > i64::from(limit) {
                retry_after_ms = retry_after_ms.max(window_start + WINDOW_MS - now);
            }
            slots.push((key, window_start));
        }
        let probe = Probe { slots };
        if retry_after_ms > 0 {
            probe.free(app).await;
            let seconds = u64::try_from((retry_after_ms + 999) / 1000).unwrap_or(1).max(1);
            return Err(Error::Throttled { retry_after: Duration::from_secs(seconds) });
        }
        Ok(probe)
    }

    /// The attempt failed before the login was looked at: it revealed
    /// nothing and costs nothing. Never inside an open write transaction
    /// (SQLite would wait on itself): use [`Probe::free_within`] there.
    pub async fn free(self, app: &App) {
        if let Err(error) = self.free_within(app.store.connection()).await {
            tracing::warn!(%error, "could not refund a taken-login count");
        }
    }

    /// The login was free: the count goes back within the transaction that
    /// takes the login.
    pub async fn free_within<C: sea_orm::ConnectionTrait>(self, conn: &C) -> Result<(), Error> {
        Ok(rate::refund_each(conn, &self.slots).await?)
    }

    /// The login is taken: the count stays, the answer is audited, and the
    /// caller gets ALREADY_EXISTS. Call it after the failed transaction has
    /// been rolled back.
    pub async fn taken(self, app: &App, caller: &user::Model, login: &str, ctx: &RequestContext) -> Error {
        let login: String = login.chars().take(crate::domain::login::LOGIN_MAX).collect();
        let event = AuditRecord::new("user.login.taken", ctx.source_ip.clone())
            .subscription(&caller.subscription_id)
            .actor(&caller.id, &caller.user_login)
            .target(None, &login)
            .failed("ALREADY_EXISTS");
        if let Err(error) = audit::record(app.store.connection(), event, app.clock.now_ms()).await {
            return error.into();
        }
        Error::AlreadyExists(format!("the login `{login}` is taken"))
    }
}
