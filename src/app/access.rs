//! Who the caller is in the database, and the one way to ask the permission
//! table about another user.

use super::{App, caller::Caller};
use crate::{
    domain::{
        Error, UserRef, UserStatus,
        permissions::{Action, Actor, Decision, Denial, Target, allowed_actions, may},
    },
    store::{entities::user, users},
};

/// The caller's own row; the session's user must still exist and be ACTIVE.
pub async fn active_user(app: &App, caller: &Caller) -> Result<user::Model, Error> {
    let user = users::find_by_id(app.store.connection(), &caller.user_id)
        .await?
        .ok_or_else(|| Error::Unauthenticated("the session's user no longer exists".to_owned()))?;
    if user.status != UserStatus::Active {
        return Err(Error::Unauthenticated("the session's user is no longer active".to_owned()));
    }
    Ok(user)
}

/// A user by login or id, as the caller may see it: users of other
/// subscriptions do not exist for the caller.
pub async fn find_target(app: &App, actor: &user::Model, target: &UserRef) -> Result<user::Model, Error> {
    match lookup(app, target).await? {
        Some(user) if user.subscription_id == actor.subscription_id => {
            target.agrees_with(&user.id, &user.user_login)?;
            Ok(user)
        }
        _ => Err(not_found_ref(target)),
    }
}

/// A user by login or id in any subscription (platform operators' rescues);
/// when both are given, they must name the same user.
pub async fn find_anywhere(app: &App, target: &UserRef) -> Result<user::Model, Error> {
    let user = lookup(app, target).await?.ok_or_else(|| not_found_ref(target))?;
    target.agrees_with(&user.id, &user.user_login)?;
    Ok(user)
}

/// By id when one is given (the login is then only checked), else by login.
async fn lookup(app: &App, target: &UserRef) -> Result<Option<user::Model>, Error> {
    target.check()?;
    let conn = app.store.connection();
    Ok(match target.by_id() {
        Some(id) => users::find_by_id(conn, id).await?,
        None => users::find_by_login(conn, &target.login).await?,
    })
}

pub fn not_found(login: &str) -> Error {
    Error::NotFound(format!("no user with login `{login}`"))
}

pub fn not_found_ref(target: &UserRef) -> Error {
    Error::NotFound(format!("no user with {}", target.describe()))
}

/// Asks the permission table; maps a refusal to the error a caller sees.
pub fn authorize(actor: &user::Model, action: Action, target: &user::Model) -> Result<(), Error> {
    match decide(actor, action, target) {
        Decision::Allow => Ok(()),
        Decision::Deny(denial) => Err(denial_error(denial, &target.user_login)),
    }
}

pub fn decide(actor: &user::Model, action: Action, target: &user::Model) -> Decision {
    may(&as_actor(actor), action, &as_target(target))
}

/// Every action the permission table allows `actor` on `target`.
pub fn allowed(actor: &user::Model, target: &user::Model) -> Vec<Action> {
    allowed_actions(&as_actor(actor), &as_target(target))
}

fn as_actor(actor: &user::Model) -> Actor<'_> {
    Actor {
        user_id: &actor.id,
        subscription_id: &actor.subscription_id,
        role: actor.role,
        business_unit_id: actor.business_unit_id.as_deref(),
    }
}

fn as_target(target: &user::Model) -> Target<'_> {
    Target {
        user_id: &target.id,
        subscription_id: &target.subscription_id,
        role: target.role,
        business_unit_id: target.business_unit_id.as_deref(),
        status: target.status,
    }
}

pub fn denial_error(denial: Denial, login: &str) -> Error {
    match denial {
        Denial::OtherSubscription => not_found(login),
        Denial::SelfTarget => Error::PermissionDenied("administrative paths cannot act on your own account".to_owned()),
        Denial::OutOfScope => Error::PermissionDenied(format!("you may not administer `{login}`")),
        Denial::Deleted => Error::FailedPrecondition {
            reason: crate::domain::ErrorReason::UserDeleted,
            message: format!("`{login}` is deleted"),
        },
        Denial::Contact => Error::FailedPrecondition {
            reason: crate::domain::ErrorReason::UserIsContact,
            message: format!("`{login}` is a Contact and has no login"),
        },
    }
}

/// Whether `current`, read again under the row lock, is still the user a
/// decision was made on before the transaction (role, unit, status, login).
pub fn still_as_read(current: &user::Model, read: &user::Model) -> bool {
    current.role == read.role
        && current.status == read.status
        && current.business_unit_id == read.business_unit_id
        && current.user_login == read.user_login
}

/// The answer when [`still_as_read`] is false: nothing was done.
pub fn changed_meanwhile(login: &str) -> Error {
    Error::FailedPrecondition {
        reason: crate::domain::ErrorReason::ConcurrentChange,
        message: format!("`{login}` changed meanwhile: read it again and retry"),
    }
}
