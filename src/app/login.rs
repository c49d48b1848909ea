//! Password login (DESIGN §2.1–2.2, §1 lockout): one message for unknown
//! login and wrong password, in the same time; consecutive failures counted
//! atomically in the database; throttling ahead of the password check.

use super::{
    App,
    caller::RequestContext,
    second_factor,
    sessions::{self, IssuedSession},
    throttle,
};
use crate::{
    crypto::password::Verification,
    domain::{Error, Role, Secret, StatusReason, UserStatus, error::AccountProblem},
    mail::templates,
    store::{
        StoreError, Writes,
        audit::{self, AuditRecord},
        entities::user,
        tenancy, users,
    },
};

/// Longest accepted password: longer ones cannot be valid (policy max 128)
/// and must not cost hashing time.
pub const PASSWORD_INPUT_MAX: usize = 1024;
pub const LOGIN_INPUT_MAX: usize = 256;

/// An id no row has: the paths of unknown logins run the same statements as
/// those of real accounts, on this id, and find or change nothing.
const NO_ROW: &str = "";

pub enum LoginOutcome {
    Session(IssuedSession),
    /// The user holds a token: a passcode comes next.
    Challenge(second_factor::ChallengeView),
}

pub async fn login(app: &App, user_login: &str, password: Secret, ctx: &RequestContext) -> Result<LoginOutcome, Error> {
    if user_login.is_empty() || user_login.len() > LOGIN_INPUT_MAX {
        return Err(Error::invalid("user_login", format!("must be 1 to {LOGIN_INPUT_MAX} characters")));
    }
    if password.expose().len() > PASSWORD_INPUT_MAX {
        return Err(Error::invalid("password", format!("must be at most {PASSWORD_INPUT_MAX} bytes")));
    }
    let reservation = match throttle::reserve_login(app, user_login, ctx).await? {
        throttle::Admission::Admitted(reservation) => reservation,
        throttle::Admission::Refused(refusal) => {
            if let Some(limit) = refusal.first_of_window {
                let account = users::find_by_login(app.store.connection(), user_login).await?;
                let event = attempt_event(account.as_ref(), user_login, ctx).failed("THROTTLED").detail(format!(
                    "first refusal by {limit} in this window; the window's later refusals are counted in \
                     identity_login_outcomes_total{{outcome=\"THROTTLED\"}}, not audited"
                ));
                audit::record(app.store.connection(), event, app.clock.now_ms()).await?;
            }
            return Err(refusal.error());
        }
    };
    let candidate = users::find_for_login(app.store.connection(), user_login).await?;
    // A locked account answers as a wrong password does, whatever the password:
    // checked against the dummy hash, it takes the same time and never matches.
    let locked = candidate.as_ref().is_some_and(|c| standing(&c.user) == Standing::Locked);
    // Accounts that cannot hold a password never use one found for them.
    let stored_hash =
        candidate.as_ref().filter(|c| may_hold_password(&c.user) && !locked).and_then(|c| c.password_hash.clone());
    // Unknown logins are checked against a dummy hash: same work, same time.
    let verification = match app.hasher.verify(password.clone(), stored_hash.clone()).await {
        Ok(verification) => verification,
        Err(error) => {
            reservation.release(app).await;
            return Err(error);
        }
    };
    match (candidate, stored_hash, verification) {
        (Some(candidate), Some(verified), Verification::Match { needs_rehash }) => {
            let checked = Checked { verified, set_at: candidate.password_set_at, needs_rehash, new_hash: None };
            succeed(app, candidate, password, checked, reservation, ctx).await
        }
        (candidate, _, _) => {
            reservation.keep();
            // The audit row may tell the truth; the caller may not learn it.
            let reason = if locked { LOCKED } else { "INVALID_CREDENTIALS" };
            fail(app, candidate.map(|c| c.user).as_ref(), user_login, ctx, reason).await?;
            Err(Error::InvalidCredentials)
        }
    }
}

fn may_hold_password(user: &user::Model) -> bool {
    user.role != Role::Contact && user.status != UserStatus::Deleted
}

/// The password check that passed: the hash it passed against, when that
/// password was set, and whether the hash was made with other parameters
/// than today's.
struct Checked {
    verified: String,
    set_at: Option<i64>,
    needs_rehash: bool,
    /// The password hashed again with today's parameters, when it needed that
    /// and the hashing pool had room.
    new_hash: Option<String>,
}

async fn succeed(
    app: &App,
    candidate: users::LoginCandidate,
    password: Secret,
    mut checked: Checked,
    reservation: throttle::Reservation,
    ctx: &RequestContext,
) -> Result<LoginOutcome, Error> {
    let user = candidate.user;
    if let Standing::Unavailable(problem) = standing(&user) {
        reservation.release(app).await;
        record_attempt(app, Some(&user), &user.user_login, ctx, Some(problem_reason(problem))).await?;
        return Err(Error::AccountUnavailable(problem));
    }
    // Parameters changed since this hash was made: replace it while we hold the
    // password, hashing before the write transaction begins. A busy pool just
    // postpones that to a later login.
    if checked.needs_rehash {
        checked.new_hash = app.hasher.hash(password).await.ok();
    }
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    // The password was checked outside any transaction. With the row locked (on
    // SQLite the write transaction alone is), a password change, reset, link
    // redemption or deactivation either committed before this point, and the
    // re-check below sees it, or waits for this commit and then revokes the
    // session opened here: the changers take the same lock before revoking.
    users::lock(&txn, &[&user.id]).await?;
    // The usual login, with no new hash to store and no passcode to ask for,
    // checks and records in one statement; the others read the row again.
    let recorded = if checked.new_hash.is_some() || candidate.has_second_factor {
        None
    } else {
        users::record_login_with_password_unchanged(&txn, &user.id, &checked.verified, checked.set_at, now).await?
    };
    let mut writes = Writes::default();
    let outcome = match recorded {
        Some(user) => LoginOutcome::Session(open_session(app, &mut writes, &user, ctx, now)?),
        None => match recheck_and_record(app, &txn, &mut writes, &user.id, &checked, ctx, now).await? {
            Ok(outcome) => outcome,
            Err(reason) => {
                audit::record(&txn, login_event(&user, &user.user_login, ctx).failed(reason), now).await?;
                txn.commit().await.map_err(StoreError::from)?;
                reservation.keep();
                return Err(Error::InvalidCredentials);
            }
        },
    };
    // Last, so the per-IP counter row, which every login from that address
    // updates, stays locked only for the commit.
    reservation.release_with(&mut writes);
    writes.run(&txn).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(outcome)
}

/// Reads the locked row again and, if the account is still ACTIVE with the
/// password that was verified, stores the new hash of that password if one
/// was made, then asks for a passcode or records the login; otherwise the
/// reason for the audit row.
async fn recheck_and_record(
    app: &App,
    txn: &sea_orm::DatabaseTransaction,
    writes: &mut Writes,
    user_id: &str,
    checked: &Checked,
    ctx: &RequestContext,
    now: i64,
) -> Result<Result<LoginOutcome, &'static str>, Error> {
    let current = users::find_for_login_by_id(txn, user_id).await?;
    let current = match current.ok_or("ACCOUNT_DELETED").and_then(|c| unchanged(c, checked)) {
        Ok(current) => current,
        Err(reason) => return Ok(Err(reason)),
    };
    let user = current.user;
    if let Some(hash) = &checked.new_hash {
        // Conditional as well: only the hash that was verified is ever replaced.
        users::replace_password_hash(txn, &user.id, &checked.verified, hash).await?;
    }
    if current.has_second_factor
        && let Some(challenge) =
            second_factor::challenge_if_enrolled(app, txn, &user, &password_event(&user, ctx)).await?
    {
        return Ok(Ok(LoginOutcome::Challenge(challenge)));
    }
    let user = users::record_successful_login(txn, &user.id, now)
        .await?
        .ok_or_else(|| Error::internal("an ACTIVE user locked for the login is no longer ACTIVE"))?;
    Ok(Ok(LoginOutcome::Session(open_session(app, writes, &user, ctx, now)?)))
}

/// The session of a login whose success is recorded, and its audit row,
/// among the login's writes.
fn open_session(
    app: &App,
    writes: &mut Writes,
    user: &user::Model,
    ctx: &RequestContext,
    now: i64,
) -> Result<IssuedSession, Error> {
    let session = sessions::open(app, writes, user)?;
    audit::record_with(writes, login_event(user, &user.user_login, ctx), now);
    Ok(session)
}

/// The account as it is now, if it is still ACTIVE with the password that
/// was verified; otherwise the reason for the audit row. The hash itself may
/// have changed in between without the password changing: another login
/// rehashed it (a replica with other argon2 parameters, say), which keeps the
/// time the password was set, while every change of password moves it on.
fn unchanged(current: users::LoginCandidate, checked: &Checked) -> Result<users::LoginCandidate, &'static str> {
    let same_hash = current.password_hash.as_deref() == Some(checked.verified.as_str());
    let rehashed = current.password_hash.is_some() && current.password_set_at == checked.set_at;
    if !same_hash && !rehashed {
        return Err("PASSWORD_CHANGED");
    }
    match standing(&current.user) {
        Standing::Active => Ok(current),
        Standing::Locked => Err(LOCKED),
        Standing::Unavailable(problem) => Err(problem_reason(problem)),
    }
}

/// The audit reason of an attempt on a locked account; never an answer.
const LOCKED: &str = "ACCOUNT_LOCKED";

/// Where an account stands for a login whose secret was right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Standing {
    Active,
    /// Locked after failed attempts: answered exactly like a wrong password,
    /// so that the lock ends online guessing instead of pacing it (the owner
    /// learns of the lock from the email sent when it happened).
    Locked,
    /// Pending activation or deactivated by an administrator: a correct
    /// password learns that (DESIGN §1).
    Unavailable(AccountProblem),
}

pub(super) fn standing(user: &user::Model) -> Standing {
    match (user.status, user.status_reason) {
        (UserStatus::Active, _) => Standing::Active,
        (UserStatus::PendingActivation, _) => Standing::Unavailable(AccountProblem::PendingActivation),
        (UserStatus::Inactive, Some(StatusReason::Locked)) => Standing::Locked,
        (UserStatus::Inactive | UserStatus::Deleted, _) => Standing::Unavailable(AccountProblem::Inactive),
    }
}

fn problem_reason(problem: AccountProblem) -> &'static str {
    Error::AccountUnavailable(problem).reason().as_str()
}

fn password_event(user: &user::Model, ctx: &RequestContext) -> AuditRecord {
    login_event(user, &user.user_login, ctx).detail("password verified; passcode challenge issued")
}

/// A wrong password or passcode (or unknown login): counts towards lockout
/// when the account is ACTIVE; the attempt that reaches the threshold locks
/// it, once.
pub(super) async fn fail(
    app: &App,
    account: Option<&user::Model>,
    attempted: &str,
    ctx: &RequestContext,
    reason: &'static str,
) -> Result<(), Error> {
    // Only ACTIVE accounts that can hold a password count: Contacts never lock.
    let counting = account.filter(|u| u.status == UserStatus::Active && may_hold_password(u));
    // Failures that count nothing (unknown login, inactive account) still run every
    // statement of one that counts, on no row: the time of "Invalid credentials"
    // must not tell whether the account exists (a transaction costs round trips).
    let subscription_id = counting.map_or(NO_ROW, |user| user.subscription_id.as_str());
    let threshold = match tenancy::find_subscription(app.store.connection(), subscription_id).await? {
        Some(subscription) => subscription.lockout_threshold,
        None => super::bootstrap::DEFAULT_LOCKOUT_THRESHOLD,
    };
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    let counted =
        users::record_failed_login(&txn, counting.map_or(NO_ROW, |user| user.id.as_str()), threshold, now).await?;
    audit::record(&txn, attempt_event(account, attempted, ctx).failed(reason), now).await?;
    let mut revoked = Vec::new();
    if let Some((user, failure)) = counting.zip(counted.filter(|f| f.locked)) {
        let event = AuditRecord::new("user.lockout", ctx.source_ip.clone())
            .subscription(&user.subscription_id)
            .target(Some(&user.id), &user.user_login)
            .detail(format!("{} consecutive failed attempts", failure.failed_logins));
        audit::record(&txn, event, now).await?;
        // Open challenges end too: a lock leaves nothing to complete. Live
        // links go as well, so a re-activation does not bring them back.
        revoked = sessions::end_credential_use(app, &txn, &[&user.id], "LOCKED").await?;
        crate::store::links::supersede_all(&txn, &user.id, now).await?;
        let mail = templates::account_locked(&user.user_login, failure.failed_logins);
        super::notify::email(app, &txn, user, &mail).await?;
        tracing::warn!(user_id = %user.id, "account locked after consecutive failed logins");
        metrics::counter!(crate::telemetry::metrics::LOCKOUTS).increment(1);
    }
    txn.commit().await.map_err(StoreError::from)?;
    app.revocations.mark_all_revoked(&revoked);
    Ok(())
}

pub(super) fn login_event(user: &user::Model, attempted: &str, ctx: &RequestContext) -> AuditRecord {
    AuditRecord::new("auth.login", ctx.source_ip.clone())
        .subscription(&user.subscription_id)
        .target(Some(&user.id), attempted)
}

/// One audit row for an attempt that changes nothing.
async fn record_attempt(
    app: &App,
    account: Option<&user::Model>,
    attempted: &str,
    ctx: &RequestContext,
    reason: Option<&'static str>,
) -> Result<(), Error> {
    let mut event = attempt_event(account, attempted, ctx);
    if let Some(reason) = reason {
        event = event.failed(reason);
    }
    audit::record(app.store.connection(), event, app.clock.now_ms()).await?;
    Ok(())
}

/// The audit row of a login attempt, on an account or on a login that names none.
fn attempt_event(account: Option<&user::Model>, attempted: &str, ctx: &RequestContext) -> AuditRecord {
    match account {
        Some(user) => login_event(user, attempted, ctx),
        None => AuditRecord::new("auth.login", ctx.source_ip.clone()).target(None, truncate(attempted)),
    }
}

/// Unknown logins are recorded as typed, cut to the column's width.
fn truncate(value: &str) -> &str {
    match value.char_indices().nth(crate::domain::login::LOGIN_MAX) {
        Some((at, _)) => &value[..at],
        None => value,
    }
}
