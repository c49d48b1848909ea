//! The audit log: one row per security-relevant event, written in the same
//! transaction as the change it records.

use sea_orm::{ConnectionTrait, EntityTrait, Set};

use super::{StoreResult, Writes, entities::audit_event, new_id};

/// Who did what to whom, with what outcome, from where.
#[derive(Debug, Default, Clone)]
pub struct AuditRecord {
    pub subscription_id: Option<String>,
    pub actor_user_id: Option<String>,
    pub actor_login: Option<String>,
    pub action: &'static str,
    pub target_user_id: Option<String>,
    pub target_login: Option<String>,
    pub success: bool,
    pub reason: Option<&'static str>,
    pub source_ip: Option<String>,
    pub detail: Option<String>,
}

impl AuditRecord {
    pub fn new(action: &'static str, source_ip: Option<String>) -> Self {
        Self { action, source_ip, success: true, ..Self::default() }
    }

    pub fn subscription(mut self, id: &str) -> Self {
        self.subscription_id = Some(id.to_owned());
        self
    }

    pub fn actor(mut self, user_id: &str, login: &str) -> Self {
        self.actor_user_id = Some(user_id.to_owned());
        self.actor_login = Some(login.to_owned());
        self
    }

    /// An actor that is no account (the command line's break-glass rescue).
    pub fn actor_named(mut self, name: &str) -> Self {
        self.actor_login = Some(name.to_owned());
        self
    }

    pub fn target(mut self, user_id: Option<&str>, login: &str) -> Self {
        self.target_user_id = user_id.map(str::to_owned);
        self.target_login = Some(login.to_owned());
        self
    }

    pub fn failed(mut self, reason: &'static str) -> Self {
        self.success = false;
        self.reason = Some(reason);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

pub async fn record<C: ConnectionTrait>(conn: &C, event: AuditRecord, now_ms: i64) -> StoreResult<()> {
    let mut writes = Writes::default();
    record_with(&mut writes, event, now_ms);
    writes.run(conn).await
}

/// [`record`], among other writes sent together.
pub fn record_with(writes: &mut Writes, event: AuditRecord, now_ms: i64) {
    let statement = super::sql::insert_statement(
        "audit_events",
        &[
            "id",
            "occurred_at",
            "subscription_id",
            "actor_user_id",
            "actor_login",
            "action",
            "target_user_id",
            "target_login",
            "outcome",
            "reason",
            "source_ip",
            "detail",
        ],
    );
    writes.push(
        statement,
        vec![
            new_id().into(),
            now_ms.into(),
            event.subscription_id.into(),
            event.actor_user_id.into(),
            event.actor_login.into(),
            event.action.into(),
            event.target_user_id.into(),
            event.target_login.into(),
            outcome(event.success).into(),
            event.reason.map(str::to_owned).into(),
            event.source_ip.into(),
            event.detail.into(),
        ],
    );
}

fn outcome(success: bool) -> &'static str {
    if success { "SUCCESS" } else { "FAILURE" }
}

/// Records many events, a few hundred per statement.
pub async fn record_all<C: ConnectionTrait>(conn: &C, events: Vec<AuditRecord>, now_ms: i64) -> StoreResult<()> {
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let chunk = events.by_ref().take(super::sql::BATCH_ROWS).map(|event| row(event, now_ms));
        audit_event::Entity::insert_many(chunk).exec_without_returning(conn).await?;
    }
    Ok(())
}

fn row(event: AuditRecord, now_ms: i64) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        id: Set(new_id()),
        occurred_at: Set(now_ms),
        subscription_id: Set(event.subscription_id),
        actor_user_id: Set(event.actor_user_id),
        actor_login: Set(event.actor_login),
        action: Set(event.action.to_owned()),
        target_user_id: Set(event.target_user_id),
        target_login: Set(event.target_login),
        outcome: Set(outcome(event.success).to_owned()),
        reason: Set(event.reason.map(str::to_owned)),
        source_ip: Set(event.source_ip),
        detail: Set(event.detail),
    }
}

/// Filters of an audit listing, newest first.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery<'a> {
    pub subscription_id: &'a str,
    pub actor_login: Option<&'a str>,
    pub target_login: Option<&'a str>,
    pub actor_id: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub action: Option<&'a str>,
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Keyset cursor: ids strictly before this one (ids are UUIDv7, ordered by time).
    pub before_id: Option<&'a str>,
    pub limit: u64,
}

pub async fn list<C: ConnectionTrait>(conn: &C, query: &AuditQuery<'_>) -> StoreResult<Vec<audit_event::Model>> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    let mut select = audit_event::Entity::find().filter(audit_event::Column::SubscriptionId.eq(query.subscription_id));
    if let Some(actor) = query.actor_login {
        select = select.filter(audit_event::Column::ActorLogin.eq(actor));
    }
    if let Some(target) = query.target_login {
        select = select.filter(audit_event::Column::TargetLogin.eq(target));
    }
    if let Some(actor) = query.actor_id {
        select = select.filter(audit_event::Column::ActorUserId.eq(actor));
    }
    if let Some(target) = query.target_id {
        select = select.filter(audit_event::Column::TargetUserId.eq(target));
    }
    if let Some(action) = query.action {
        select = select.filter(audit_event::Column::Action.eq(action));
    }
    if let Some(from) = query.from_ms {
        select = select.filter(audit_event::Column::OccurredAt.gte(from));
    }
    if let Some(until) = query.until_ms {
        select = select.filter(audit_event::Column::OccurredAt.lt(until));
    }
    if let Some(before) = query.before_id {
        select = select.filter(audit_event::Column::Id.lt(before));
    }
    Ok(select.order_by_desc(audit_event::Column::Id).limit(query.limit).all(conn).await?)
}
