//! Batch admin password reset (DESIGN §2.3, the legacy password_change.php
//! semantics): per-target outcomes, generated passwords, one transaction.

use sea_orm::DatabaseTransaction;

use super::{
    App, access,
    caller::{Caller, RequestContext},
    links, sessions,
};
use crate::{
    crypto::random,
    domain::{
        Error, Secret, StatusReason, UserStatus,
        link::LinkPurpose,
        login::distinct_logins,
        permissions::{Action, Decision, Denial, scope},
    },
    mail::templates,
    store::{
        BATCH_ROWS, StoreError,
        audit::{self, AuditRecord},
        entities::user,
        links as link_rows, rate, users,
    },
};

/// Why a target was not reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReset {
    UnknownUser,
    Deleted,
    Contact,
    SelfTarget,
    OutOfScope,
    Throttled,
}

impl NotReset {
    pub fn code(self) -> &'static str {
        match self {
            NotReset::UnknownUser => "UNKNOWN_USER",
            NotReset::Deleted => "DELETED",
            NotReset::Contact => "CONTACT",
            NotReset::SelfTarget => "SELF",
            NotReset::OutOfScope => "OUT_OF_SCOPE",
            NotReset::Throttled => "THROTTLED",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            NotReset::UnknownUser => "No such user in your subscription",
            NotReset::Deleted => "The user is deleted",
            NotReset::Contact => "The user is a Contact and has no login",
            NotReset::SelfTarget => "You cannot reset your own password here",
            NotReset::OutOfScope => "You may not reset this user's password",
            NotReset::Throttled => "Too many resets of this user in the last hour",
        }
    }
}

#[derive(Debug)]
pub struct ResetOutcome {
    pub user_login: String,
    /// Set when changed and not notified by email.
    pub password: Option<Secret>,
    pub not_reset: Option<NotReset>,
}

pub struct ResetInput {
    pub user_logins: Vec<String>,
    pub all: bool,
    pub notify_by_email: bool,
}

const RESET_WINDOW_MS: i64 = 3600 * 1000;

pub async fn reset_passwords(
    app: &App,
    caller: &Caller,
    input: ResetInput,
    ctx: &RequestContext,
) -> Result<Vec<ResetOutcome>, Error> {
    let actor = access::active_user(app, caller).await?;
    check_request(app, &actor, &input)?;
    let mut targets = resolve_targets(app, &actor, &input).await?;
    refuse_throttled(app, &mut targets).await?;
    let mut targets = hash_new_passwords(app, targets).await?;

    let mut batch = Batch {
        app,
        actor: &actor,
        ctx,
        now: app.clock.now_ms(),
        notify_by_email: input.notify_by_email,
        events: targets.iter().filter_map(|target| target.early_refusal(&actor, ctx)).collect(),
    };
    let txn = app.store.begin_write().await?;
    // Rows are locked user by user in one order whatever the request's, so two
    // batches over the same users wait for each other instead of deadlocking.
    let mut ready: Vec<&mut Target> = targets.iter_mut().filter(|target| target.ready_user().is_some()).collect();
    ready.sort_by(|a, b| a.ready_id().cmp(&b.ready_id()));
    batch.recheck(&txn, &mut ready).await?;
    batch.count_resets(&txn, &mut ready).await?;
    let revoked = batch.write_resets(&txn, &ready).await?;
    audit::record_all(&txn, batch.events, batch.now).await?;
    // Passwords leave only after the commit.
    txn.commit().await.map_err(StoreError::from)?;
    app.revocations.mark_all_revoked(&revoked);
    let mut outcomes = Vec::with_capacity(targets.len());
    for target in targets {
        outcomes.extend(target.outcome(input.notify_by_email)?);
    }
    Ok(outcomes)
}

/// Refuses a request that cannot reset anyone, before any look at the targets.
fn check_request(app: &App, actor: &user::Model, input: &ResetInput) -> Result<(), Error> {
    let max = app.config.reset.max_batch;
    if !input.all && input.user_logins.is_empty() {
        return Err(Error::invalid("user_logins", "must name at least one login, or set `all`"));
    }
    if input.user_logins.len() > max {
        return Err(Error::invalid("user_logins", format!("must name at most {max} logins")));
    }
    if !scope(actor.role, actor.business_unit_id.as_deref()).administers_anyone() {
        return Err(Error::PermissionDenied(
            "only Managers, Unit Managers and Administrators reset passwords".to_owned(),
        ));
    }
    Ok(())
}

/// One distinct requested target on its way through the batch.
struct Target {
    /// The login as requested (the user's own with `all`): the name its outcome carries.
    requested: String,
    state: State,
}

enum State {
    /// Not reset. `known_id` is the user's id when the user is in the caller's
    /// subscription, for the audit.
    Refused { refusal: NotReset, known_id: Option<String> },
    /// To reset, as far as the checks made outside the transaction tell.
    Eligible(user::Model),
    /// Eligible, with its new password and that password's hash. The user is
    /// the row as resolved; the transaction re-checks a fresh copy. Whoever is
    /// still ready when the transaction commits has been reset.
    Ready { user: user::Model, password: Secret, hash: String },
    /// Gone from the users table when the transaction read it (rows are never
    /// deleted today): no outcome and no audit row.
    Vanished,
}

impl Target {
    fn eligible(requested: String, user: user::Model) -> Self {
        Target { requested, state: State::Eligible(user) }
    }

    fn refused(requested: String, refusal: NotReset, known_id: Option<String>) -> Self {
        Target { requested, state: State::Refused { refusal, known_id } }
    }

    fn ready_user(&self) -> Option<&user::Model> {
        match &self.state {
            State::Ready { user, .. } => Some(user),
            _ => None,
        }
    }

    fn ready_id(&self) -> Option<&str> {
        self.ready_user().map(|user| user.id.as_str())
    }

    /// The audit row of a target refused before the transaction, under the login as requested.
    fn early_refusal(&self, actor: &user::Model, ctx: &RequestContext) -> Option<AuditRecord> {
        match &self.state {
            State::Refused { refusal, known_id } => {
                Some(refusal_event(actor, &self.requested, known_id.as_deref(), *refusal, ctx))
            }
            _ => None,
        }
    }

    /// What the caller is told about this target, once the transaction has committed.
    fn outcome(self, notify_by_email: bool) -> Result<Option<ResetOutcome>, Error> {
        let user_login = self.requested;
        match self.state {
            State::Refused { refusal, .. } => {
                Ok(Some(ResetOutcome { user_login, password: None, not_reset: Some(refusal) }))
            }
            State::Ready { password, .. } => {
                let password = (!notify_by_email).then_some(password);
                Ok(Some(ResetOutcome { user_login, password, not_reset: None }))
            }
            State::Vanished => Ok(None),
            State::Eligible(_) => Err(Error::internal("a reset without a password")),
        }
    }
}

/// Resolves the request, in request order, before any hashing.
async fn resolve_targets(app: &App, actor: &user::Model, input: &ResetInput) -> Result<Vec<Target>, Error> {
    if input.all {
        let everyone = everyone_in_scope(app, actor).await?.into_iter();
        let allowed = everyone.filter(|user| refusal(actor, user).is_none());
        return Ok(allowed.map(|user| Target::eligible(user.user_login.clone(), user)).collect());
    }
    let logins = distinct_logins(input.user_logins.iter().map(String::as_str));
    let mut found_by_login = users::find_by_logins(app.store.connection(), &logins).await?;
    let mut targets = Vec::with_capacity(logins.len());
    for login in logins {
        let found = found_by_login.remove(&login).filter(|user| user.subscription_id == actor.subscription_id);
        targets.push(match found {
            None => Target::refused(login, NotReset::UnknownUser, None),
            Some(user) => match refusal(actor, &user) {
                None => Target::eligible(login, user),
                Some(refusal) => Target::refused(login, refusal, Some(user.id)),
            },
        });
    }
    Ok(targets)
}

fn throttle_key(user_id: &str) -> String {
    format!("reset:user:{user_id}")
}

/// Refuses the targets already reset as often as the hour allows, before any
/// hashing: a read-only look, so a batch repeated in a loop costs no argon2
/// work for them. The transaction counts the others for real, and refuses
/// any that a concurrent batch took past the limit meanwhile.
async fn refuse_throttled(app: &App, targets: &mut [Target]) -> Result<(), Error> {
    let eligible_id = |target: &Target| match &target.state {
        State::Eligible(user) => Some(user.id.clone()),
        _ => None,
    };
    let keys: Vec<String> = targets.iter().filter_map(eligible_id).map(|id| throttle_key(&id)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let counts = rate::counts(app.store.connection(), &keys, RESET_WINDOW_MS, app.clock.now_ms()).await?;
    let limit = i64::from(app.config.reset.admin_resets_per_hour);
    let eligible = targets.iter_mut().filter_map(|target| Some((eligible_id(target)?, target)));
    for ((id, target), count) in eligible.zip(counts) {
        if i64::from(count) >= limit {
            target.state = State::Refused { refusal: NotReset::Throttled, known_id: Some(id) };
        }
    }
    Ok(())
}

/// Gives every eligible target a new password and its hash. Hashed before the
/// transaction begins, so that no lock waits on argon2 work, and on every
/// core, each hash through the pool's admission like a login's.
async fn hash_new_passwords(app: &App, targets: Vec<Target>) -> Result<Vec<Target>, Error> {
    let policy = &app.config.password_policy;
    let passwords: Vec<Secret> = targets
        .iter()
        .filter_map(|target| match &target.state {
            State::Eligible(user) => Some(random::password(policy, &user.user_login)),
            _ => None,
        })
        .collect();
    let hashes = app.hasher.hash_many(passwords.clone()).await?;
    let mut secrets = passwords.into_iter().zip(hashes);
    targets
        .into_iter()
        .map(|target| match target.state {
            State::Eligible(user) => {
                let (password, hash) = secrets.next().ok_or_else(|| Error::internal("fewer hashes than targets"))?;
                Ok(Target { state: State::Ready { user, password, hash }, ..target })
            }
            _ => Ok(target),
        })
        .collect()
}

/// The transaction's side of a batch. Each statement covers the whole batch
/// (a few hundred users at a time), in the users' id order: one round trip
/// per user and table made a reset of 1,000 users on PostgreSQL cost 2.4 s
/// beyond its hashing.
struct Batch<'a> {
    app: &'a App,
    actor: &'a user::Model,
    ctx: &'a RequestContext,
    now: i64,
    notify_by_email: bool,
    /// Written together at the end of the transaction, in the order decided.
    events: Vec<AuditRecord>,
}

impl Batch<'_> {
    /// Re-checks the ready targets with their rows locked until the
    /// transaction ends: the users may have changed since they were resolved.
    /// Users first, as every other writer of a user's links does, so that
    /// nothing waits on a lock this batch waits for.
    async fn recheck(&mut self, txn: &DatabaseTransaction, ready: &mut [&mut Target]) -> Result<(), Error> {
        let ids: Vec<&str> = ready.iter().filter_map(|target| target.ready_id()).collect();
        users::lock(txn, &ids).await?;
        let mut current = users::find_by_ids(txn, &ids).await?;
        for target in ready.iter_mut() {
            let Some(user) = target.ready_user() else { continue };
            match current.remove(&user.id) {
                None => target.state = State::Vanished,
                Some(current) => {
                    if let Some(refusal) = refusal(self.actor, &current) {
                        self.refuse(target, refusal, &current.user_login, &current.id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Counts one reset of each target still ready against the hour's limit,
    /// and refuses those a concurrent batch took past it since the look before
    /// hashing.
    async fn count_resets(&mut self, txn: &DatabaseTransaction, ready: &mut [&mut Target]) -> Result<(), Error> {
        let keys: Vec<String> = ready.iter().filter_map(|target| target.ready_id()).map(throttle_key).collect();
        let mut counts = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_ROWS) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            counts.extend(rate::hit_each(txn, &chunk, RESET_WINDOW_MS, self.now).await?);
        }
        let limit = i64::from(self.app.config.reset.admin_resets_per_hour);
        let still_ready = ready.iter_mut().filter(|target| target.ready_user().is_some());
        for (target, (count, _)) in still_ready.zip(counts) {
            if i64::from(count) > limit
                && let Some(user) = target.ready_user()
            {
                let (login, id) = (user.user_login.clone(), user.id.clone());
                self.refuse(target, NotReset::Throttled, &login, &id);
            }
        }
        Ok(())
    }

    /// Refuses a target inside the transaction, audited under the user's
    /// login and id as the transaction saw them.
    fn refuse(&mut self, target: &mut Target, refusal: NotReset, login: &str, user_id: &str) {
        self.events.push(refusal_event(self.actor, login, Some(user_id), refusal, self.ctx));
        target.state = State::Refused { refusal, known_id: Some(user_id.to_owned()) };
    }

    /// Resets every target still ready: stores its hash, ends every use of its
    /// old credentials, then emails it its password or, when the caller takes
    /// the passwords, activates it if pending. Returns the revoked sessions.
    async fn write_resets(&mut self, txn: &DatabaseTransaction, ready: &[&mut Target]) -> Result<Vec<String>, Error> {
        let granted: Vec<(&user::Model, &Secret, &str)> = ready
            .iter()
            .filter_map(|target| match &target.state {
                State::Ready { user, password, hash } => Some((user, password, hash.as_str())),
                _ => None,
            })
            .collect();
        let credentials: Vec<(&str, &str)> = granted.iter().map(|&(user, _, hash)| (user.id.as_str(), hash)).collect();
        users::set_password_hashes(txn, &credentials, self.now).await?;
        let ids: Vec<&str> = credentials.iter().map(|&(id, _)| id).collect();
        // Links sent before this reset (welcome, forgot-password) must not open the account.
        link_rows::supersede_all_of(txn, &ids, self.now).await?;
        let revoked = sessions::end_credential_use(self.app, txn, &ids, "PASSWORD_RESET").await?;
        if self.notify_by_email {
            let notified: Vec<_> = granted.iter().map(|&(user, password, _)| (user, password)).collect();
            notify(self.app, txn, &notified).await?;
        } else {
            for &(user, _, _) in granted.iter().filter(|(user, _, _)| user.status == UserStatus::PendingActivation) {
                activate(txn, user, self.now).await?;
            }
        }
        let detail = if self.notify_by_email { "notified by email" } else { "password returned to the caller" };
        for &(user, _, _) in &granted {
            self.events.push(
                AuditRecord::new("password.reset", self.ctx.source_ip.clone())
                    .subscription(&user.subscription_id)
                    .actor(&self.actor.id, &self.actor.user_login)
                    .target(Some(&user.id), &user.user_login)
                    .detail(detail),
            );
        }
        Ok(revoked)
    }
}

/// The caller holds the credentials now: the account is usable (legacy API rule).
async fn activate(txn: &DatabaseTransaction, user: &user::Model, now: i64) -> Result<(), Error> {
    users::change_status(
        txn,
        &user.id,
        UserStatus::PendingActivation,
        UserStatus::Active,
        StatusReason::Administrative,
        now,
    )
    .await?;
    Ok(())
}

fn refusal(actor: &user::Model, target: &user::Model) -> Option<NotReset> {
    match access::decide(actor, Action::ResetPassword, target) {
        Decision::Allow => None,
        Decision::Deny(Denial::OtherSubscription) => Some(NotReset::UnknownUser),
        Decision::Deny(Denial::SelfTarget) => Some(NotReset::SelfTarget),
        Decision::Deny(Denial::OutOfScope) => Some(NotReset::OutOfScope),
        Decision::Deny(Denial::Deleted) => Some(NotReset::Deleted),
        Decision::Deny(Denial::Contact) => Some(NotReset::Contact),
    }
}

async fn everyone_in_scope(app: &App, actor: &user::Model) -> Result<Vec<user::Model>, Error> {
    let mut query = super::users::scope_query(actor);
    let max = app.config.reset.max_batch;
    query.limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let everyone = users::list(app.store.connection(), &query).await?;
    if everyone.len() > max {
        return Err(Error::FailedPrecondition {
            reason: crate::domain::ErrorReason::BatchTooLarge,
            message: format!("`all` covers more than {max} users here: name them in batches of at most {max}"),
        });
    }
    Ok(everyone)
}

/// Emails each user a link that carries their new password.
async fn notify<C: sea_orm::ConnectionTrait>(
    app: &App,
    conn: &C,
    users: &[(&user::Model, &Secret)],
) -> Result<(), Error> {
    let sealing: Vec<_> = users.iter().map(|&(user, password)| (user.id.as_str(), Some(password))).collect();
    let links = links::issue_sealing_many(app, conn, &sealing, LinkPurpose::AdminReset).await?;
    let hours = app.config.activation.ttl_secs / 3600;
    let mails: Vec<_> = users
        .iter()
        .zip(&links)
        .map(|(&(user, _), link)| templates::password_reset(&user.user_login, link.expose(), hours))
        .collect();
    let each: Vec<_> = users.iter().map(|&(user, _)| user).zip(&mails).collect();
    super::notify::email_each(app, conn, &each).await
}

fn refusal_event(
    actor: &user::Model,
    login: &str,
    target_id: Option<&str>,
    refusal: NotReset,
    ctx: &RequestContext,
) -> AuditRecord {
    let login: String = login.chars().take(crate::domain::login::LOGIN_MAX).collect();
    AuditRecord::new("password.reset", ctx.source_ip.clone())
        .subscription(&actor.subscription_id)
        .actor(&actor.id, &actor.user_login)
        .target(target_id, &login)
        .failed(refusal.code())
}
