//! Rescue by platform operators (DESIGN §1): the support desk the seeds send
//! people to ("If you are the only user in the subscription … contact
//! Support") resets a password, re-activates an account, resets a PIN or
//! replaces a token, for any subscription. Every rescue states a reason, is
//! audited in the target's subscription under the rescuer's identity, and is
//! announced by email to that subscription's Managers. The command line does
//! the same with no account at all, for break-glass use.

use super::{
    App, access,
    caller::{Caller, RequestContext},
    links, sessions,
    users::{self, UserView},
};
use crate::{
    crypto::{random, totp},
    domain::{
        Error, ErrorReason, Role, Secret, StatusReason, UserRef, UserStatus,
        link::LinkPurpose,
        permissions::{Rescue, RescueDenial, Rescuer, Target, may_rescue},
    },
    mail::templates,
    store::{
        StoreError,
        audit::{self, AuditRecord},
        entities::user,
        links as link_rows, rate, second_factors, tenancy, users as user_rows,
    },
};

pub const REASON_MAX: usize = 500;

const HOUR_MS: i64 = 3600 * 1000;

/// Who asks for a rescue, as established by the edge that received it.
pub enum RescuedBy<'a> {
    /// An operator's session over gRPC.
    Operator(&'a Caller),
    /// `identity support …` on the service's host; `who` names the person at
    /// the keyboard (the OS user) for the audit trail.
    CommandLine { who: &'a str },
}

#[derive(Debug)]
pub struct Rescued {
    pub user: UserView,
    /// Set when a fresh link was emailed to the user (password reset, token
    /// enrolment, or the re-sent welcome of a PENDING_ACTIVATION account).
    pub link_emailed: bool,
    /// How many ACTIVE Managers of the subscription were told.
    pub managers_notified: usize,
}

/// The rescuer as the audit trail names it.
struct Identity {
    user_id: Option<String>,
    login: String,
}

pub async fn rescue(
    app: &App,
    by: RescuedBy<'_>,
    named: &UserRef,
    rescue: Rescue,
    reason: &str,
    ctx: &RequestContext,
) -> Result<Rescued, Error> {
    // Who asks is settled before anything about the target is looked at:
    // a non-operator learns nothing about other tenants' logins.
    let (identity, operator) = match by {
        RescuedBy::Operator(caller) => {
            let operator = access::active_user(app, caller).await?;
            let role = operator.role;
            if role != Role::PlatformOperator {
                return Err(denial_error(RescueDenial::NotAnOperator, &named.to_string()));
            }
            (Identity { user_id: Some(operator.id.clone()), login: operator.user_login.clone() }, Some(operator))
        }
        RescuedBy::CommandLine { who } => (Identity { user_id: None, login: format!("command line ({who})") }, None),
    };
    let reason = checked_reason(reason)?;
    let target = access::find_anywhere(app, named).await?;
    let user_login = target.user_login.clone();
    let user_login = user_login.as_str();
    let rescuer = match &operator {
        Some(operator) => Rescuer::Account { user_id: &operator.id, role: operator.role },
        None => Rescuer::CommandLine,
    };
    let as_target = Target {
        user_id: &target.id,
        subscription_id: &target.subscription_id,
        role: target.role,
        business_unit_id: target.business_unit_id.as_deref(),
        status: target.status,
    };
    may_rescue(rescuer, rescue, &as_target).map_err(|denial| denial_error(denial, user_login))?;

    // The password is made and hashed before the transaction, like every reset.
    let new_password = match rescue {
        Rescue::ResetPassword => {
            let password = random::password(&app.config.password_policy, &target.user_login);
            let hash = app.hasher.hash(password.clone()).await?;
            Some((password, hash))
        }
        _ => None,
    };
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    user_rows::lock(&txn, &[target.id.as_str()]).await?;
    // The rescue was allowed on the row read before the transaction: it goes
    // ahead only on that same row (a Manager may have made it a Contact since).
    let current = user_rows::find_by_id(&txn, &target.id).await?.ok_or_else(|| access::not_found(user_login))?;
    if !access::still_as_read(&current, &target) {
        return Err(access::changed_meanwhile(user_login));
    }
    let mut revoked = Vec::new();
    let mut link_emailed = false;
    match rescue {
        Rescue::ResetPassword => {
            // Support's resets count with the admins' against the per-user
            // hourly limit: nobody floods a mailbox with reset links.
            let (count, _) = rate::hit(&txn, &format!("reset:user:{}", target.id), HOUR_MS, now).await?;
            if i64::from(count) > i64::from(app.config.reset.admin_resets_per_hour) {
                return Err(Error::Throttled { retry_after: std::time::Duration::from_secs(3600) });
            }
            let (password, hash) = new_password.as_ref().ok_or_else(|| Error::internal("no password made"))?;
            user_rows::set_password_hash(&txn, &target.id, hash, now).await?;
            link_rows::supersede_all(&txn, &target.id, now).await?;
            revoked = sessions::end_credential_use(app, &txn, &[target.id.as_str()], "PASSWORD_RESET").await?;
            let link = links::issue_sealing(app, &txn, &target.id, LinkPurpose::AdminReset, Some(password)).await?;
            let hours = app.config.activation.ttl_secs / 3600;
            let mail = templates::password_reset_by(&target.user_login, link.expose(), hours, "platform support");
            super::notify::email(app, &txn, &target, &mail).await?;
            link_emailed = true;
        }
        Rescue::Reactivate if current.status == UserStatus::PendingActivation => {
            // Nothing to switch on yet: the user never chose a password. A
            // fresh welcome link (superseding the old one) lets them.
            users::send_welcome(app, &txn, &target).await?;
            link_emailed = true;
        }
        Rescue::Reactivate => {
            let changed = user_rows::change_status(
                &txn,
                &target.id,
                UserStatus::Inactive,
                UserStatus::Active,
                StatusReason::Administrative,
                now,
            )
            .await?;
            if !changed {
                return Err(Error::internal("a locked row changed its status"));
            }
            let mail = templates::account_rescued(&target.user_login, rescue.describe(), &reason);
            super::notify::email(app, &txn, &target, &mail).await?;
        }
        Rescue::ResetPin => {
            if !second_factors::reset_pin(&txn, &target.id, now).await? {
                return Err(no_token(user_login));
            }
            revoked = sessions::end_credential_use(app, &txn, &[target.id.as_str()], "PIN_RESET").await?;
            super::notify::email(app, &txn, &target, &templates::pin_reset_by(&target.user_login, "platform support"))
                .await?;
        }
        Rescue::ReplaceToken => {
            // A lost token replaces one that existed; a first token is the
            // Managers' to assign (AssignToken), not support's.
            if second_factors::find(&txn, &target.id).await?.is_none() {
                return Err(no_token(user_login));
            }
            let secret = totp::new_secret();
            let uri = totp::provisioning_uri(&secret, &app.config.second_factor.issuer, &target.user_login)?;
            second_factors::assign(&txn, &app.data_keys, &target.id, &secret, now).await?;
            revoked = sessions::end_credential_use(app, &txn, &[target.id.as_str()], "TOKEN_REPLACED").await?;
            // The new token goes to the user alone, sealed in a one-time link
            // like a generated password: the operator never holds it.
            let uri = Secret::new(uri);
            let link = links::issue_sealing(app, &txn, &target.id, LinkPurpose::TokenEnrollment, Some(&uri)).await?;
            let hours = app.config.activation.ttl_secs / 3600;
            let mail = templates::token_enrollment(&target.user_login, link.expose(), hours, &reason);
            super::notify::email(app, &txn, &target, &mail).await?;
            link_emailed = true;
        }
    }
    let event = AuditRecord::new(rescue.audit_action(), ctx.source_ip.clone())
        .subscription(&target.subscription_id)
        .target(Some(&target.id), &target.user_login)
        .detail(format!("{}; reason: {reason}", rescue.describe()));
    let event = match &identity.user_id {
        Some(operator_id) => event.actor(operator_id, &identity.login),
        None => event.actor_named(&identity.login),
    };
    audit::record(&txn, event, now).await?;
    // The subscription's Managers hear of it; an operator's rescue is told to
    // the other operators, since the operators' subscription has no Managers.
    let managers = if target.role == Role::PlatformOperator {
        let operators = tenancy::active_with_role(&txn, &target.subscription_id, Role::PlatformOperator).await?;
        operators.into_iter().filter(|o| Some(&o.id) != identity.user_id.as_ref() && o.id != target.id).collect()
    } else {
        tenancy::active_with_role(&txn, &target.subscription_id, Role::Manager).await?
    };
    let notice = templates::rescue_notice(&target.user_login, rescue.describe(), &identity.login, &reason);
    let mails: Vec<(&user::Model, &templates::Rendered)> = managers.iter().map(|m| (m, &notice)).collect();
    super::notify::email_each(app, &txn, &mails).await?;
    txn.commit().await.map_err(StoreError::from)?;
    app.revocations.mark_all_revoked(&revoked);
    tracing::warn!(target_user = %target.id, action = rescue.audit_action(), rescuer = %identity.login, "account rescued by support");
    let fresh = user_rows::find_by_id(app.store.connection(), &target.id)
        .await?
        .ok_or_else(|| access::not_found(user_login))?;
    Ok(Rescued {
        user: users::views(app, vec![fresh]).await?.remove(0),
        link_emailed,
        managers_notified: managers.len(),
    })
}

/// A rescue always says why: a ticket id, a name, a call.
fn checked_reason(reason: &str) -> Result<String, Error> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::invalid("reason", "is required: say why, e.g. the support ticket id"));
    }
    if reason.chars().count() > REASON_MAX || reason.chars().any(char::is_control) {
        return Err(Error::invalid("reason", format!("must be at most {REASON_MAX} printable characters")));
    }
    Ok(reason.to_owned())
}

fn no_token(login: &str) -> Error {
    Error::FailedPrecondition {
        reason: ErrorReason::NoToken,
        message: format!("`{login}` has no token: a Manager assigns a first one"),
    }
}

fn denial_error(denial: RescueDenial, login: &str) -> Error {
    match denial {
        RescueDenial::NotAnOperator => Error::PermissionDenied("only platform operators rescue accounts".to_owned()),
        RescueDenial::SelfTarget => Error::PermissionDenied(
            "operators do not rescue their own account: ask another operator, or use `identity support` on the service's host"
                .to_owned(),
        ),
        RescueDenial::Deleted => {
            Error::FailedPrecondition { reason: ErrorReason::UserDeleted, message: format!("`{login}` is deleted") }
        }
        RescueDenial::Contact => Error::FailedPrecondition {
            reason: ErrorReason::UserIsContact,
            message: format!("`{login}` is a Contact and has no login"),
        },
        RescueDenial::AlreadyActive => {
            Error::FailedPrecondition { reason: ErrorReason::AlreadyActive, message: format!("`{login}` is already active") }
        }
    }
}
