//! The Users use cases (DESIGN §1, §2.8–2.9): who may create, see and change
//! whom, the status machine, and one audit row per change.

use sea_orm::ConnectionTrait;

use super::{
    App, access,
    caller::{Caller, RequestContext},
    links, sessions, taken_logins,
};
use crate::{
    domain::{
        Error, Role, UserLogin, UserRef, UserStatus,
        governance::{Standing, removes_last_active_manager},
        link::LinkPurpose,
        login::parse_email,
        page_token,
        permissions::{self, Action, Capabilities, Scope, may_create, scope},
        status::{StatusEvent, transition},
    },
    mail::templates,
    store::{
        StoreError,
        audit::{self, AuditRecord},
        entities::{business_unit, user},
        tenancy::{self, DEFAULT_UNIT},
        users::{self, NewUser, UserQuery, UserUpdate},
    },
};

pub const NAME_MAX: usize = 100;
pub const PAGE_DEFAULT: u64 = 50;
pub const PAGE_MAX: u64 = 500;

/// A user as the API shows it.
#[derive(Debug, Clone)]
pub struct UserView {
    pub user: user::Model,
    pub business_unit: Option<String>,
    pub has_token: bool,
}

#[derive(Debug, Clone, Default)]
pub struct NewUserInput {
    pub user_login: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: Option<Role>,
    pub business_unit: String,
}

pub async fn create_user(
    app: &App,
    caller: &Caller,
    input: NewUserInput,
    ctx: &RequestContext,
) -> Result<UserView, Error> {
    let actor = access::active_user(app, caller).await?;
    let role = input.role.ok_or_else(|| Error::invalid("role", "is required"))?;
    let email = parse_email(&input.email)?;
    let first_name = person_name("first_name", &input.first_name)?;
    let last_name = person_name("last_name", &input.last_name)?;
    let unit = unit_for(app, &actor.subscription_id, role, &input.business_unit).await?;
    let actor_role = actor.role;
    if !may_create(actor_role, actor.business_unit_id.as_deref(), role, unit.as_ref().map(|u| u.id.as_str())) {
        return Err(Error::PermissionDenied(format!("a {actor_role} may not create a {role} here")));
    }
    let subscription = tenancy::find_subscription(app.store.connection(), &actor.subscription_id)
        .await?
        .ok_or_else(|| Error::internal("actor without subscription"))?;
    // A login the caller names may be anybody's: that answer is throttled.
    let (login, probe) = if input.user_login.is_empty() {
        (super::bootstrap::generate_login(app, &subscription.login_prefix).await?, None)
    } else {
        let login = UserLogin::parse(&input.user_login)?;
        (login, Some(taken_logins::Probe::begin(app, &actor).await?))
    };
    // Contacts have no login at all: nothing to activate, no credentials sent.
    let status = if role == Role::Contact { UserStatus::Active } else { UserStatus::PendingActivation };

    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    let user = users::insert_user(
        &txn,
        NewUser {
            subscription_id: &actor.subscription_id,
            business_unit_id: unit.as_ref().map(|u| u.id.as_str()),
            user_login: &login,
            email: &email,
            first_name: &first_name,
            last_name: &last_name,
            role,
            status,
        },
        now,
    )
    .await;
    let user = match (user, probe) {
        (Err(StoreError::Duplicate(_)), Some(probe)) => {
            txn.rollback().await.map_err(StoreError::from)?;
            return Err(probe.taken(app, &actor, login.as_str(), ctx).await);
        }
        (Ok(user), Some(probe)) => {
            probe.free_within(&txn).await?;
            user
        }
        (user, _) => user.map_err(|e| taken(e, &login))?,
    };
    if role != Role::Contact {
        send_welcome(app, &txn, &user).await?;
    }
    let event = AuditRecord::new("user.create", ctx.source_ip.clone())
        .subscription(&user.subscription_id)
        .actor(&actor.id, &actor.user_login)
        .target(Some(&user.id), &user.user_login)
        .detail(format!("role {}", role.as_str()));
    audit::record(&txn, event, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(UserView { user, business_unit: unit.map(|u| u.name), has_token: false })
}

/// Queues the welcome email: login, login URL, and a one-time activation link.
pub async fn send_welcome<C: ConnectionTrait>(app: &App, conn: &C, user: &user::Model) -> Result<(), Error> {
    let link = links::issue(app, conn, &user.id, LinkPurpose::Welcome).await?;
    let login_url = &app.config.platform.current_entry().login_url;
    let mail = templates::welcome(&user.user_login, login_url, link.expose(), app.config.activation.ttl_secs / 3600);
    super::notify::email(app, conn, user, &mail).await?;
    Ok(())
}

pub async fn get_user(app: &App, caller: &Caller, target: &UserRef) -> Result<UserView, Error> {
    let actor = access::active_user(app, caller).await?;
    let target = access::find_target(app, &actor, target).await?;
    access::authorize(&actor, Action::View, &target)?;
    Ok(views(app, vec![target]).await?.remove(0))
}

#[derive(Debug, Clone, Default)]
pub struct ListInput {
    pub page_size: i32,
    pub page_token: String,
    pub business_unit: String,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    pub query: String,
}

pub async fn list_users(app: &App, caller: &Caller, input: ListInput) -> Result<(Vec<UserView>, String), Error> {
    let actor = access::active_user(app, caller).await?;
    let limit = page_token::page_size(input.page_size, PAGE_DEFAULT, PAGE_MAX)?;
    let text = input.query.trim();
    if text.chars().count() > NAME_MAX {
        return Err(Error::invalid("query", format!("must be at most {NAME_MAX} characters")));
    }
    let fingerprint = page_token::fingerprint(&[
        &input.business_unit,
        input.role.map_or("", Role::as_str),
        input.status.map_or("", UserStatus::as_str),
        text,
    ]);
    let after = page_token::decode(&input.page_token, &fingerprint)?;
    let unit_filter = match input.business_unit.as_str() {
        "" => None,
        name => Some(
            tenancy::find_business_unit_by_name(app.store.connection(), &actor.subscription_id, name)
                .await?
                .ok_or_else(|| Error::invalid("business_unit", format!("no business unit named `{name}`")))?,
        ),
    };
    let mut query = scope_query(&actor);
    if let Some(unit) = &unit_filter {
        match query.business_unit_id {
            Some(own) if own != unit.id => return Ok((Vec::new(), String::new())),
            _ => query.business_unit_id = Some(&unit.id),
        }
    }
    query.role = input.role;
    query.status = input.status;
    query.text = (!text.is_empty()).then_some(text);
    query.after_login = after.as_deref();
    query.limit = limit + 1;
    let mut rows = users::list(app.store.connection(), &query).await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        rows.last().map(|last| page_token::encode(&last.user_login, &fingerprint)).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((views(app, rows).await?, next))
}

/// Whom the actor may list: the subscription, the own unit, or oneself.
pub(super) fn scope_query(actor: &user::Model) -> UserQuery<'_> {
    let mut query = UserQuery { subscription_id: &actor.subscription_id, ..UserQuery::default() };
    match scope(actor.role, actor.business_unit_id.as_deref()) {
        Scope::Subscription => {}
        // A Unit Manager without a unit sees nobody: no unit has the empty id.
        Scope::Unit(unit) => query.business_unit_id = Some(unit.unwrap_or("")),
        Scope::Themself => query.only_user_id = Some(&actor.id),
    }
    query
}

/// "Find my username": a Manager or Unit Manager looks users up by email or name.
pub async fn lookup_username(app: &App, caller: &Caller, email: &str, name: &str) -> Result<Vec<UserView>, Error> {
    let actor = access::active_user(app, caller).await?;
    if !scope(actor.role, actor.business_unit_id.as_deref()).administers_anyone() {
        return Err(Error::PermissionDenied("only Managers and Unit Managers look up usernames".to_owned()));
    }
    let (email, name) = (email.trim(), name.trim());
    if email.is_empty() && name.is_empty() {
        return Err(Error::invalid("email", "or name is required"));
    }
    if email.len() > 254 || name.chars().count() > 2 * NAME_MAX + 1 {
        return Err(Error::invalid("name", "is too long"));
    }
    let mut scope = scope_query(&actor);
    scope.limit = PAGE_DEFAULT;
    let found = users::lookup(
        app.store.connection(),
        &scope,
        (!email.is_empty()).then_some(email),
        (!name.is_empty()).then_some(name),
    )
    .await?;
    views(app, found).await
}

#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: Option<Role>,
    pub business_unit: Option<String>,
}

pub async fn update_user(
    app: &App,
    caller: &Caller,
    target: &UserRef,
    changes: UserChanges,
    ctx: &RequestContext,
) -> Result<UserView, Error> {
    let actor = access::active_user(app, caller).await?;
    let target = access::find_target(app, &actor, target).await?;
    access::authorize(&actor, Action::Update, &target)?;
    let old_role = target.role;
    let role = changes.role.unwrap_or(old_role);
    let current_unit = match &target.business_unit_id {
        Some(id) => tenancy::find_business_unit(app.store.connection(), id).await?,
        None => None,
    };
    let unit = match (&changes.business_unit, &current_unit) {
        (Some(name), _) => unit_for(app, &target.subscription_id, role, name).await?,
        // A role change alone keeps the user in their unit.
        (None, Some(unit)) if !role.is_subscription_wide() => Some(unit.clone()),
        (None, _) => unit_for(app, &target.subscription_id, role, "").await?,
    };
    let update = UserUpdate {
        email: changes.email.as_deref().map(parse_email).transpose()?.unwrap_or_else(|| target.email.clone()),
        first_name: changes
            .first_name
            .as_deref()
            .map(|n| person_name("first_name", n))
            .transpose()?
            .unwrap_or_else(|| target.first_name.clone()),
        last_name: changes
            .last_name
            .as_deref()
            .map(|n| person_name("last_name", n))
            .transpose()?
            .unwrap_or_else(|| target.last_name.clone()),
        role,
        business_unit_id: unit.as_ref().map(|u| u.id.clone()),
    };
    let placement_changed = role != old_role || update.business_unit_id != target.business_unit_id;
    let actor_role = actor.role;
    if placement_changed
        && !may_create(actor_role, actor.business_unit_id.as_deref(), role, update.business_unit_id.as_deref())
    {
        return Err(Error::PermissionDenied(format!(
            "a {actor_role} may not make `{}` a {role} there",
            target.user_login
        )));
    }
    let mut changed = Vec::new();
    for (field, differs) in [
        ("email", update.email != target.email),
        ("first_name", update.first_name != target.first_name),
        ("last_name", update.last_name != target.last_name),
        ("role", role != old_role),
        ("business_unit", update.business_unit_id != target.business_unit_id),
    ] {
        if differs {
            changed.push(field);
        }
    }
    if changed.is_empty() {
        return Ok(views(app, vec![target]).await?.remove(0));
    }
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    lock_unchanged(&txn, &target).await?;
    keep_an_active_manager(&txn, &target, |before| Standing { role, ..before }).await?;
    users::update_profile(&txn, &target.id, &update, now).await?;
    if update.email != target.email {
        // Links already mailed to the old address must not open the account.
        crate::store::links::supersede_all(&txn, &target.id, now).await?;
    }
    let mut revoked = Vec::new();
    if placement_changed {
        // Access tokens carry the role: make their holders log in again.
        revoked = sessions::revoke_all(app, &txn, &target.id, "ROLE_CHANGED").await?;
        if role == Role::Contact {
            users::drop_credentials(&txn, &target.id, now).await?;
        }
    }
    let event = AuditRecord::new("user.update", ctx.source_ip.clone())
        .subscription(&target.subscription_id)
        .actor(&actor.id, &actor.user_login)
        .target(Some(&target.id), &target.user_login)
        .detail(format!("changed: {}", changed.join(", ")));
    audit::record(&txn, event, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    app.revocations.mark_all_revoked(&revoked);
    let fresh = users::find_by_id(app.store.connection(), &target.id)
        .await?
        .ok_or_else(|| access::not_found(&target.user_login))?;
    Ok(views(app, vec![fresh]).await?.remove(0))
}

/// Activates or deactivates an account (DESIGN §1 status machine).
pub async fn set_user_status(
    app: &App,
    caller: &Caller,
    target: &UserRef,
    wanted: Option<UserStatus>,
    reason: &str,
    ctx: &RequestContext,
) -> Result<UserView, Error> {
    let event = match wanted {
        Some(UserStatus::Active) => StatusEvent::Reactivate,
        Some(UserStatus::Inactive) => StatusEvent::Deactivate,
        _ => {
            return Err(Error::invalid(
                "status",
                "must be USER_STATUS_ACTIVE or USER_STATUS_INACTIVE (use DeleteUser to delete)",
            ));
        }
    };
    if reason.chars().count() > 500 {
        return Err(Error::invalid("reason", "must be at most 500 characters"));
    }
    let actor = access::active_user(app, caller).await?;
    let target = access::find_target(app, &actor, target).await?;
    access::authorize(&actor, Action::SetStatus, &target)?;
    let detail = if reason.trim().is_empty() { String::new() } else { format!(": {}", reason.trim()) };
    change_status(app, &actor, target, event, "user.status.change", &detail, ctx).await
}

/// Soft delete: the row stays for the audit trail, the login is never reused,
/// every credential is dropped.
pub async fn delete_user(
    app: &App,
    caller: &Caller,
    target: &UserRef,
    ctx: &RequestContext,
) -> Result<UserView, Error> {
    let actor = access::active_user(app, caller).await?;
    let target = access::find_target(app, &actor, target).await?;
    access::authorize(&actor, Action::Delete, &target)?;
    change_status(app, &actor, target, StatusEvent::Delete, "user.delete", "", ctx).await
}

async fn change_status(
    app: &App,
    actor: &user::Model,
    target: user::Model,
    event: StatusEvent,
    action: &'static str,
    detail: &str,
    ctx: &RequestContext,
) -> Result<UserView, Error> {
    let from = target.status;
    let (to, reason) = transition(from, event)?;
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    lock_unchanged(&txn, &target).await?;
    keep_an_active_manager(&txn, &target, |before| Standing { status: to, ..before }).await?;
    if !users::change_status(&txn, &target.id, from, to, reason, now).await? {
        return Err(access::changed_meanwhile(&target.user_login));
    }
    let mut revoked = Vec::new();
    if to != UserStatus::Active {
        revoked = sessions::revoke_all(app, &txn, &target.id, "STATUS_CHANGED").await?;
        // A link mailed before must not open the account once it is active again.
        crate::store::links::supersede_all(&txn, &target.id, now).await?;
    }
    if to == UserStatus::Deleted {
        users::drop_credentials(&txn, &target.id, now).await?;
    }
    let record = AuditRecord::new(action, ctx.source_ip.clone())
        .subscription(&target.subscription_id)
        .actor(&actor.id, &actor.user_login)
        .target(Some(&target.id), &target.user_login)
        .detail(format!("{from} -> {to}{detail}"));
    audit::record(&txn, record, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    app.revocations.mark_all_revoked(&revoked);
    let fresh = users::find_by_id(app.store.connection(), &target.id)
        .await?
        .ok_or_else(|| access::not_found(&target.user_login))?;
    Ok(views(app, vec![fresh]).await?.remove(0))
}

/// Locks the target's subscription governance, then the target, and checks
/// the target is still as it was read before the transaction: an admin
/// change is decided on the row as it is, or not at all. Governance first,
/// users second: every writer that takes both takes them in this order.
async fn lock_unchanged<C: ConnectionTrait>(conn: &C, target: &user::Model) -> Result<(), Error> {
    tenancy::lock_governance(conn, &target.subscription_id).await?;
    users::lock(conn, &[target.id.as_str()]).await?;
    let current = users::find_by_id(conn, &target.id).await?.ok_or_else(|| access::not_found(&target.user_login))?;
    if access::still_as_read(&current, target) { Ok(()) } else { Err(access::changed_meanwhile(&target.user_login)) }
}

/// Refuses a change that would leave the target's subscription without an
/// ACTIVE Manager (DESIGN §1). Runs inside the change's write transaction,
/// after [`lock_unchanged`]: the target is as read, and the other Managers
/// are counted with the subscription's governance locked.
async fn keep_an_active_manager<C: ConnectionTrait>(
    conn: &C,
    target: &user::Model,
    after: impl FnOnce(Standing) -> Standing,
) -> Result<(), Error> {
    let before = Standing { role: target.role, status: target.status };
    if before.role != Role::Manager {
        return Ok(());
    }
    let others = tenancy::active_with_role(conn, &target.subscription_id, Role::Manager).await?;
    let others = others.iter().filter(|manager| manager.id != target.id).count();
    if removes_last_active_manager(before, after(before), u64::try_from(others).unwrap_or(u64::MAX)) {
        return Err(Error::FailedPrecondition {
            reason: crate::domain::ErrorReason::LastManager,
            message: format!(
                "`{}` is the subscription's last active Manager: make another user an active Manager first",
                target.user_login
            ),
        });
    }
    Ok(())
}

pub async fn create_business_unit(
    app: &App,
    caller: &Caller,
    name: &str,
    ctx: &RequestContext,
) -> Result<business_unit::Model, Error> {
    let actor = access::active_user(app, caller).await?;
    if !matches!(actor.role, Role::Administrator | Role::Manager) {
        return Err(Error::PermissionDenied("only Managers and Administrators create business units".to_owned()));
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(Error::invalid("name", format!("must be 1 to {NAME_MAX} printable characters")));
    }
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    let unit = tenancy::insert_business_unit(&txn, &actor.subscription_id, name, now).await.map_err(|e| match e {
        StoreError::Duplicate(_) => Error::AlreadyExists(format!("a business unit named `{name}` already exists")),
        other => other.into(),
    })?;
    let event = AuditRecord::new("business_unit.create", ctx.source_ip.clone())
        .subscription(&actor.subscription_id)
        .actor(&actor.id, &actor.user_login)
        .detail(format!("business unit `{name}`"));
    audit::record(&txn, event, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(unit)
}

/// What the caller may do beyond its own account, with the business units it
/// may place users in (every unit for Managers, its own for a Unit Manager).
pub async fn capabilities(app: &App, caller: &Caller) -> Result<(Capabilities, Vec<String>), Error> {
    let actor = access::active_user(app, caller).await?;
    let unit = actor.business_unit_id.as_deref();
    let allowed = permissions::capabilities(actor.role, unit);
    let units = match scope(actor.role, unit) {
        Scope::Subscription => tenancy::list_business_units(app.store.connection(), &actor.subscription_id)
            .await?
            .into_iter()
            .map(|u| u.name)
            .collect(),
        Scope::Unit(Some(id)) => {
            tenancy::find_business_unit(app.store.connection(), id).await?.into_iter().map(|u| u.name).collect()
        }
        Scope::Unit(None) | Scope::Themself => Vec::new(),
    };
    Ok((allowed, units))
}

/// A user the caller may see, and every action the permission table allows
/// the caller on them.
pub async fn user_actions(app: &App, caller: &Caller, target: &UserRef) -> Result<(UserView, Vec<Action>), Error> {
    let actor = access::active_user(app, caller).await?;
    let target = access::find_target(app, &actor, target).await?;
    // Out of scope reads as unknown, exactly as GetUser answers it.
    access::authorize(&actor, Action::View, &target)?;
    let actions = access::allowed(&actor, &target);
    Ok((views(app, vec![target]).await?.remove(0), actions))
}

/// The unit a user of `role` belongs to: none for subscription-wide roles,
/// `Unassigned` when no name is given.
async fn unit_for(
    app: &App,
    subscription_id: &str,
    role: Role,
    name: &str,
) -> Result<Option<business_unit::Model>, Error> {
    if role.is_subscription_wide() {
        return Ok(None);
    }
    let name = if name.trim().is_empty() { DEFAULT_UNIT } else { name.trim() };
    tenancy::find_business_unit_by_name(app.store.connection(), subscription_id, name)
        .await?
        .map(Some)
        .ok_or_else(|| Error::invalid("business_unit", format!("no business unit named `{name}`")))
}

fn person_name(field: &'static str, value: &str) -> Result<String, Error> {
    let value = value.trim();
    if value.chars().count() > NAME_MAX || value.chars().any(char::is_control) {
        return Err(Error::invalid(field, format!("must be at most {NAME_MAX} printable characters")));
    }
    Ok(value.to_owned())
}

fn taken(error: StoreError, login: &UserLogin) -> Error {
    match error {
        StoreError::Duplicate(_) => Error::AlreadyExists(format!("the login `{login}` is taken")),
        other => other.into(),
    }
}

/// Adds what the API shows beside the row: the unit's name and token presence.
pub async fn views(app: &App, rows: Vec<user::Model>) -> Result<Vec<UserView>, Error> {
    let ids: Vec<String> = rows.iter().map(|u| u.id.clone()).collect();
    let tokens = users::with_tokens(app.store.connection(), &ids).await?;
    let mut units = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for user in rows {
        let business_unit = match &user.business_unit_id {
            Some(id) => {
                if !units.contains_key(id) {
                    let unit = tenancy::find_business_unit(app.store.connection(), id).await?;
                    units.insert(id.clone(), unit.map(|u| u.name));
                }
                units.get(id).cloned().flatten()
            }
            None => None,
        };
        let has_token = tokens.contains(&user.id);
        out.push(UserView { user, business_unit, has_token });
    }
    Ok(out)
}
