//! Batch admin password reset (DESIGN §2.3, the legacy password_change.php
//! semantics): per-target outcomes, generated passwords, one transaction.

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
    let items = refuse_throttled(app, resolve_targets(app, &actor, &input).await?).await?;

    // Generate and hash outside the transaction, on every core.
    let policy = &app.config.password_policy;
    let to_reset: Vec<&user::Model> = items.iter().filter_map(|item| item.target.as_ref()).collect();
    let passwords: Vec<Secret> = to_reset.iter().map(|t| random::password(policy, &t.user_login)).collect();
    let mut hashes = app.hasher.hash_many(passwords.clone()).await?.into_iter();
    let mut passwords = passwords.into_iter();
    let mut work = Vec::with_capacity(items.len());
    for item in items {
        let secrets = if item.target.is_some() {
            match (passwords.next(), hashes.next()) {
                (Some(password), Some(hash)) => Some((password, hash)),
                _ => return Err(Error::internal("fewer hashes than targets")),
            }
        } else {
            None
        };
        work.push((item, secrets));
    }
    // Rows are locked user by user in one order whatever the request's, so two
    // batches over the same users wait for each other instead of deadlocking.
    let mut order: Vec<usize> = (0..work.len()).collect();
    order.sort_by_key(|&i| work[i].0.target.as_ref().map(|t| t.id.clone()));

    let now = app.clock.now_ms();
    let limit = i64::from(app.config.reset.admin_resets_per_hour);
    let txn = app.store.begin_write().await?;
    // Re-checked inside the transaction, with the rows locked until it ends: the
    // users may have changed since. Users first, as every other writer of a
    // user's links does, so that nothing waits on a lock this batch waits for.
    let target_ids: Vec<&str> =
        work.iter().filter_map(|(item, _)| item.target.as_ref()).map(|t| t.id.as_str()).collect();
    users::lock(&txn, &target_ids).await?;
    let mut current = users::find_by_ids(&txn, &target_ids).await?;
    let mut outcomes: Vec<Option<ResetOutcome>> = work.iter().map(|_| None).collect();
    let mut events = Vec::new();
    let mut refuse = |index: usize, login: &str, target_id: Option<&str>, refusal: NotReset| {
        events.push(refusal_event(&actor, login, target_id, refusal, ctx));
        let requested = work[index].0.requested.clone();
        outcomes[index] = Some(ResetOutcome { user_login: requested, password: None, not_reset: Some(refusal) });
    };
    let mut allowed = Vec::new();
    for index in order {
        let (item, secrets) = &work[index];
        let (Some(target), Some(_)) = (&item.target, secrets) else {
            refuse(index, &item.requested, item.known_id.as_deref(), item.refusal.unwrap_or(NotReset::UnknownUser));
            continue;
        };
        let Some(current) = current.remove(&target.id) else { continue };
        match refusal(&actor, &current) {
            Some(refusal) => refuse(index, &current.user_login, Some(&current.id), refusal),
            None => allowed.push((index, target)),
        }
    }
    // Each statement below covers the whole batch (a few hundred users at a
    // time), in the users' id order: one round trip per user and table made a
    // reset of 1,000 users on PostgreSQL cost 2.4 s beyond its hashing.
    let keys: Vec<String> = allowed.iter().map(|(_, target)| throttle_key(&target.id)).collect();
    let mut counts = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH_ROWS) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        counts.extend(rate::hit_each(&txn, &chunk, RESET_WINDOW_MS, now).await?);
    }
    let mut granted = Vec::with_capacity(allowed.len());
    for ((index, target), (count, _)) in allowed.into_iter().zip(counts) {
        if i64::from(count) > limit {
            refuse(index, &target.user_login, Some(&target.id), NotReset::Throttled);
        } else {
            granted.push((index, target));
        }
    }
    let secrets_of = |index: usize| work[index].1.as_ref().ok_or_else(|| Error::internal("a reset without a password"));
    let mut credentials = Vec::with_capacity(granted.len());
    for &(index, target) in &granted {
        credentials.push((target.id.as_str(), secrets_of(index)?.1.as_str()));
    }
    users::set_password_hashes(&txn, &credentials, now).await?;
    let granted_ids: Vec<&str> = credentials.iter().map(|&(id, _)| id).collect();
    // Links sent before this reset (welcome, forgot-password) must not open the account.
    link_rows::supersede_all_of(&txn, &granted_ids, now).await?;
    let revoked = sessions::end_credential_use(app, &txn, &granted_ids, "PASSWORD_RESET").await?;
    let mut to_notify = Vec::new();
    for (index, target) in granted {
        let password = &secrets_of(index)?.0;
        if input.notify_by_email {
            to_notify.push((target, password));
        } else if target.status == UserStatus::PendingActivation {
            // The caller holds the credentials now: the account is usable (legacy API rule).
            users::change_status(
                &txn,
                &target.id,
                UserStatus::PendingActivation,
                UserStatus::Active,
                StatusReason::Administrative,
                now,
            )
            .await?;
        }
        events.push(
            AuditRecord::new("password.reset", ctx.source_ip.clone())
                .subscription(&target.subscription_id)
                .actor(&actor.id, &actor.user_login)
                .target(Some(&target.id), &target.user_login)
                .detail(if input.notify_by_email { "notified by email" } else { "password returned to the caller" }),
        );
        let password = (!input.notify_by_email).then(|| password.clone());
        outcomes[index] = Some(ResetOutcome { user_login: work[index].0.requested.clone(), password, not_reset: None });
    }
    notify(app, &txn, &to_notify).await?;
    audit::record_all(&txn, events, now).await?;
    // Passwords leave only after the commit.
    txn.commit().await.map_err(StoreError::from)?;
    app.revocations.mark_all_revoked(&revoked);
    Ok(outcomes.into_iter().flatten().collect())
}

/// One distinct requested target: the user to reset, or why not.
struct Item {
    requested: String,
    target: Option<user::Model>,
    refusal: Option<NotReset>,
    /// The refused user's id, when it is in the caller's subscription.
    known_id: Option<String>,
}

/// Resolves the request, in request order, before any hashing.
async fn resolve_targets(app: &App, actor: &user::Model, input: &ResetInput) -> Result<Vec<Item>, Error> {
    if input.all {
        let mut items = Vec::new();
        for user in everyone_in_scope(app, actor).await? {
            if refusal(actor, &user).is_none() {
                items.push(Item {
                    requested: user.user_login.clone(),
                    target: Some(user),
                    refusal: None,
                    known_id: None,
                });
            }
        }
        return Ok(items);
    }
    let logins = distinct_logins(input.user_logins.iter().map(String::as_str));
    let mut found_by_login = users::find_by_logins(app.store.connection(), &logins).await?;
    let mut items = Vec::new();
    for login in logins {
        let found = found_by_login.remove(&login).filter(|user| user.subscription_id == actor.subscription_id);
        let item = match found {
            None => Item { requested: login, target: None, refusal: Some(NotReset::UnknownUser), known_id: None },
            Some(user) => match refusal(actor, &user) {
                None => Item { requested: login, target: Some(user), refusal: None, known_id: None },
                Some(refusal) => {
                    Item { requested: login, known_id: Some(user.id), target: None, refusal: Some(refusal) }
                }
            },
        };
        items.push(item);
    }
    Ok(items)
}

fn throttle_key(user_id: &str) -> String {
    format!("reset:user:{user_id}")
}

/// Refuses the targets already reset as often as the hour allows, before any
/// hashing: a read-only look, so a batch repeated in a loop costs no argon2
/// work for them. The transaction counts the others for real, and refuses
/// any that a concurrent batch took past the limit meanwhile.
async fn refuse_throttled(app: &App, mut items: Vec<Item>) -> Result<Vec<Item>, Error> {
    let keys: Vec<String> = items.iter().filter_map(|item| item.target.as_ref()).map(|t| throttle_key(&t.id)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let counts = rate::counts(app.store.connection(), &keys, RESET_WINDOW_MS, app.clock.now_ms()).await?;
    let limit = i64::from(app.config.reset.admin_resets_per_hour);
    let mut counts = counts.into_iter();
    for item in &mut items {
        if item.target.is_some()
            && counts.next().is_some_and(|count| i64::from(count) >= limit)
            && let Some(target) = item.target.take()
        {
            item.known_id = Some(target.id);
            item.refusal = Some(NotReset::Throttled);
        }
    }
    Ok(items)
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
