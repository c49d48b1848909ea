//! Batch admin password reset (DESIGN §2.3, the legacy password_change.php
//! semantics): per-target outcomes, generated passwords, one transaction.

use sea_orm::DatabaseTransaction;

use super::{
    App, access,
    caller::{Caller, RequestContext},
    links, sessions,
};
use crate::{
    crypto::{random, seal},
    domain::{
        Error, ErrorReason, Secret, StatusReason, UserStatus,
        link::LinkPurpose,
        login::distinct_logins,
        permissions::{Action, Decision, Denial, scope},
        request_id,
    },
    mail::templates,
    store::{
        BATCH_ROWS, StoreError,
        audit::{self, AuditRecord},
        entities::user,
        links as link_rows, rate, reset_requests, users,
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

    pub fn from_code(code: &str) -> Option<Self> {
        [
            NotReset::UnknownUser,
            NotReset::Deleted,
            NotReset::Contact,
            NotReset::SelfTarget,
            NotReset::OutOfScope,
            NotReset::Throttled,
        ]
        .into_iter()
        .find(|reason| reason.code() == code)
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
    /// The login as requested, or the user's when named by id or by `all`;
    /// empty for an id that names nobody in the caller's subscription.
    pub user_login: String,
    /// The user's id; empty for a login that names nobody in the caller's subscription.
    pub user_id: String,
    /// Set when changed and not notified by email.
    pub password: Option<Secret>,
    pub not_reset: Option<NotReset>,
}

#[derive(Debug, Default)]
pub struct ResetInput {
    pub user_logins: Vec<String>,
    pub user_ids: Vec<String>,
    pub all: bool,
    pub notify_by_email: bool,
    /// Empty: no retry safety. Otherwise a client-chosen id (domain::request_id).
    pub request_id: String,
}

/// A retry-safe request: where its outcome is kept, and what it asked for.
struct Replayable {
    request_id: Secret,
    key: String,
    fingerprint: String,
}

impl Replayable {
    fn new(actor: &user::Model, input: &ResetInput) -> Result<Option<Self>, Error> {
        let Some(request_id) = request_id::parse(&input.request_id)? else { return Ok(None) };
        let logins = distinct_logins(input.user_logins.iter().map(String::as_str));
        let ids = distinct_logins(input.user_ids.iter().map(String::as_str));
        let fingerprint = request_id::fingerprint(input.all, input.notify_by_email, &logins, &ids);
        // Keyed by caller: another caller's id never collides with, nor reveals, this one.
        let key = random::token_hash(&format!("{}\n{request_id}", actor.id));
        Ok(Some(Replayable { request_id: Secret::new(request_id), key, fingerprint }))
    }

    /// The first outcome of this request, if it was made within the retention window.
    async fn replay(&self, app: &App) -> Result<Option<Vec<ResetOutcome>>, Error> {
        let since = app.clock.now_ms() - request_id::RETENTION_MS;
        let Some(seen) = reset_requests::find(app.store.connection(), &self.key, since).await? else {
            return Ok(None);
        };
        if seen.fingerprint != self.fingerprint {
            return Err(Error::FailedPrecondition {
                reason: ErrorReason::RequestIdReused,
                message: "this request_id was used within the last 24 hours for a different request: \
                          repeat that request unchanged, or use a new request_id"
                    .to_owned(),
            });
        }
        let plain = seal::open(&self.request_id, &seen.sealed_outcome)
            .ok_or_else(|| Error::internal("a stored reset outcome does not open with its request id"))?;
        let stored: Vec<StoredOutcome> =
            serde_json::from_str(plain.expose()).map_err(|e| Error::internal(format!("stored reset outcome: {e}")))?;
        stored.into_iter().map(StoredOutcome::into_outcome).collect::<Result<_, _>>().map(Some)
    }

    /// The outcome as kept for a replay: sealed whole under the request id,
    /// which the database never holds, so that generated passwords are not
    /// readable from it.
    fn seal(&self, outcomes: &[ResetOutcome]) -> Result<Vec<u8>, Error> {
        let stored: Vec<StoredOutcome> = outcomes.iter().map(StoredOutcome::from).collect();
        let json = serde_json::to_string(&stored).map_err(|e| Error::internal(format!("reset outcome: {e}")))?;
        Ok(seal::seal(&self.request_id, &Secret::new(json)))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredOutcome {
    login: String,
    id: String,
    password: Option<String>,
    not_reset: Option<String>,
}

impl From<&ResetOutcome> for StoredOutcome {
    fn from(outcome: &ResetOutcome) -> Self {
        StoredOutcome {
            login: outcome.user_login.clone(),
            id: outcome.user_id.clone(),
            password: outcome.password.as_ref().map(|p| p.expose().to_owned()),
            not_reset: outcome.not_reset.map(|reason| reason.code().to_owned()),
        }
    }
}

impl StoredOutcome {
    fn into_outcome(self) -> Result<ResetOutcome, Error> {
        let not_reset = match self.not_reset {
            Some(code) => {
                Some(NotReset::from_code(&code).ok_or_else(|| Error::internal(format!("stored reason `{code}`")))?)
            }
            None => None,
        };
        Ok(ResetOutcome {
            user_login: self.login,
            user_id: self.id,
            password: self.password.map(Secret::new),
            not_reset,
        })
    }
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
    let replayable = Replayable::new(&actor, &input)?;
    if let Some(replayable) = &replayable
        && let Some(outcomes) = replayable.replay(app).await?
    {
        return Ok(outcomes);
    }
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
    // The claim comes first: a concurrent duplicate waits here for this
    // transaction, then answers with its outcome, before locking any user.
    if let Some(replayable) = &replayable {
        let since = batch.now - request_id::RETENTION_MS;
        if !reset_requests::claim(&txn, &replayable.key, &actor.id, &replayable.fingerprint, since, batch.now).await? {
            txn.rollback().await.map_err(StoreError::from)?;
            return replayable.replay(app).await?.ok_or_else(|| Error::internal("a claimed reset request vanished"));
        }
    }
    // Rows are locked user by user in one order whatever the request's, so two
    // batches over the same users wait for each other instead of deadlocking.
    let mut ready: Vec<&mut Target> = targets.iter_mut().filter(|target| target.ready_user().is_some()).collect();
    ready.sort_by(|a, b| a.ready_id().cmp(&b.ready_id()));
    batch.recheck(&txn, &mut ready).await?;
    batch.count_resets(&txn, &mut ready).await?;
    let revoked = batch.write_resets(&txn, &ready).await?;
    audit::record_all(&txn, batch.events, batch.now).await?;
    let mut outcomes = Vec::with_capacity(targets.len());
    for target in targets {
        outcomes.extend(target.outcome(input.notify_by_email)?);
    }
    if let Some(replayable) = &replayable {
        reset_requests::complete(&txn, &replayable.key, replayable.seal(&outcomes)?).await?;
    }
    // Passwords leave only after the commit.
    txn.commit().await.map_err(StoreError::from)?;
    app.revocations.mark_all_revoked(&revoked);
    Ok(outcomes)
}

/// Refuses a request that cannot reset anyone, before any look at the targets.
fn check_request(app: &App, actor: &user::Model, input: &ResetInput) -> Result<(), Error> {
    let max = app.config.reset.max_batch;
    if !input.all && input.user_logins.is_empty() && input.user_ids.is_empty() {
        return Err(Error::invalid("user_logins", "must name at least one login or id, or set `all`"));
    }
    if input.user_logins.len().saturating_add(input.user_ids.len()) > max {
        return Err(Error::invalid("user_logins", format!("must name at most {max} logins and ids together")));
    }
    if let Some(long) = input.user_ids.iter().find(|id| id.len() > crate::domain::user_ref::ID_MAX) {
        return Err(Error::invalid("user_ids", format!("`{long}` is not a user id")));
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
    /// The login as requested, else the user's (named by id, or by `all`):
    /// the name its outcome carries. Empty for an id naming nobody here.
    login: String,
    /// The user's id, as requested or as found; empty for a login naming nobody here.
    id: String,
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
    fn eligible(login: String, user: user::Model) -> Self {
        Target { login, id: user.id.clone(), state: State::Eligible(user) }
    }

    fn refused(login: String, id: String, refusal: NotReset, known_id: Option<String>) -> Self {
        Target { login, id, state: State::Refused { refusal, known_id } }
    }

    /// The user this target resolved to, if any: one user named twice (by
    /// login and by id) is one target.
    fn known_user_id(&self) -> Option<&str> {
        match &self.state {
            State::Refused { known_id, .. } => known_id.as_deref(),
            State::Eligible(user) | State::Ready { user, .. } => Some(&user.id),
            State::Vanished => None,
        }
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

    /// The audit row of a target refused before the transaction, under the
    /// login as requested (an id naming nobody is kept in the detail).
    fn early_refusal(&self, actor: &user::Model, ctx: &RequestContext) -> Option<AuditRecord> {
        match &self.state {
            State::Refused { refusal, known_id } => {
                let event = refusal_event(actor, &self.login, known_id.as_deref(), *refusal, ctx);
                Some(if known_id.is_none() && self.login.is_empty() {
                    let id: String = self.id.chars().take(crate::domain::user_ref::ID_MAX).collect();
                    event.detail(format!("user id `{id}`"))
                } else {
                    event
                })
            }
            _ => None,
        }
    }

    /// What the caller is told about this target, once the transaction has committed.
    fn outcome(self, notify_by_email: bool) -> Result<Option<ResetOutcome>, Error> {
        let (user_login, user_id) = (self.login, self.id);
        match self.state {
            State::Refused { refusal, .. } => {
                Ok(Some(ResetOutcome { user_login, user_id, password: None, not_reset: Some(refusal) }))
            }
            State::Ready { password, .. } => {
                let password = (!notify_by_email).then_some(password);
                Ok(Some(ResetOutcome { user_login, user_id, password, not_reset: None }))
            }
            State::Vanished => Ok(None),
            State::Eligible(_) => Err(Error::internal("a reset without a password")),
        }
    }
}

/// Resolves the request, in request order (logins, then ids), before any hashing.
async fn resolve_targets(app: &App, actor: &user::Model, input: &ResetInput) -> Result<Vec<Target>, Error> {
    if input.all {
        let everyone = everyone_in_scope(app, actor).await?.into_iter();
        let allowed = everyone.filter(|user| refusal(actor, user).is_none());
        return Ok(allowed.map(|user| Target::eligible(user.user_login.clone(), user)).collect());
    }
    let conn = app.store.connection();
    let logins = distinct_logins(input.user_logins.iter().map(String::as_str));
    let ids = distinct_logins(input.user_ids.iter().map(String::as_str));
    let mut found_by_login = users::find_by_logins(conn, &logins).await?;
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut found_by_id = users::find_by_ids(conn, &id_refs).await?;
    let here = |user: &user::Model| user.subscription_id == actor.subscription_id;
    let resolve = |login: String, id: String, found: Option<user::Model>| match found.filter(here) {
        None => Target::refused(login, id, NotReset::UnknownUser, None),
        Some(user) => match refusal(actor, &user) {
            None => Target::eligible(login, user),
            Some(refusal) => Target::refused(login, user.id.clone(), refusal, Some(user.id)),
        },
    };
    let mut targets = Vec::with_capacity(logins.len() + ids.len());
    for login in logins {
        let found = found_by_login.remove(&login);
        targets.push(resolve(login, String::new(), found));
    }
    for id in ids {
        let found = found_by_id.remove(&id);
        let login = found.as_ref().filter(|user| here(user)).map(|user| user.user_login.clone()).unwrap_or_default();
        targets.push(resolve(login, id, found));
    }
    let mut seen = std::collections::HashSet::new();
    targets.retain(|target| target.known_user_id().is_none_or(|id| seen.insert(id.to_owned())));
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
/// transaction begins, so that no lock waits on argon2 work; a batch of more
/// than one in the hasher's background lane, beside logins rather than
/// before them.
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
