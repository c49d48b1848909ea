//! Reading the audit log: Managers, Administrators and Auditors, their own
//! subscription only, newest first.

use super::{App, access, caller::Caller};
use crate::{
    domain::{Error, page_token, permissions::may_read_audit},
    store::{
        audit::{self, AuditQuery},
        entities::audit_event,
    },
};

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub page_size: i32,
    pub page_token: String,
    pub actor_login: String,
    pub target_login: String,
    pub actor_id: String,
    pub target_id: String,
    pub action: String,
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

pub async fn list(app: &App, caller: &Caller, filter: AuditFilter) -> Result<(Vec<audit_event::Model>, String), Error> {
    let actor = access::active_user(app, caller).await?;
    if !may_read_audit(actor.role) {
        return Err(Error::PermissionDenied(
            "only Managers, Administrators and Auditors read the audit log".to_owned(),
        ));
    }
    if let (Some(from), Some(until)) = (filter.from_ms, filter.until_ms)
        && from >= until
    {
        return Err(Error::invalid("start_time", "must be before end_time"));
    }
    for (field, value) in [
        ("actor_login", &filter.actor_login),
        ("target_login", &filter.target_login),
        ("actor_id", &filter.actor_id),
        ("target_id", &filter.target_id),
        ("action", &filter.action),
    ] {
        if value.len() > 64 {
            return Err(Error::invalid(field, "must be at most 64 characters"));
        }
    }
    let limit = page_token::page_size(filter.page_size, super::users::PAGE_DEFAULT, super::users::PAGE_MAX)?;
    let from = filter.from_ms.map(|v| v.to_string()).unwrap_or_default();
    let until = filter.until_ms.map(|v| v.to_string()).unwrap_or_default();
    let fingerprint = page_token::fingerprint(&[
        &filter.actor_login,
        &filter.target_login,
        &filter.action,
        &from,
        &until,
        &filter.actor_id,
        &filter.target_id,
    ]);
    let before = page_token::decode(&filter.page_token, &fingerprint)?;
    let non_empty = |value: &str| (!value.is_empty()).then_some(value.to_owned());
    let (actor_login, target_login, action) =
        (non_empty(&filter.actor_login), non_empty(&filter.target_login), non_empty(&filter.action));
    let (actor_id, target_id) = (non_empty(&filter.actor_id), non_empty(&filter.target_id));
    let query = AuditQuery {
        subscription_id: &actor.subscription_id,
        actor_id: actor_id.as_deref(),
        target_id: target_id.as_deref(),
        actor_login: actor_login.as_deref(),
        target_login: target_login.as_deref(),
        action: action.as_deref(),
        from_ms: filter.from_ms,
        until_ms: filter.until_ms,
        before_id: before.as_deref(),
        limit: limit + 1,
    };
    let mut rows = audit::list(app.store.connection(), &query).await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        rows.last().map(|last| page_token::encode(&last.id, &fingerprint)).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((rows, next))
}
