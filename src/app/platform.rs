//! Which platform serves a username, the live status of this one, and its
//! maintenance windows (DESIGN §2.10–2.11, §6).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{
    App, access,
    caller::{Caller, RequestContext},
    sessions::secs_to_ms,
};
use crate::{
    config::PlatformEntry,
    domain::{
        Error,
        permissions::is_platform_operator,
        platform::{COMPONENTS, ComponentState, covers, email_state, hashing_state},
        retention::housekeeping_state,
    },
    store::{
        StoreError,
        audit::{self, AuditRecord},
        entities::maintenance_window,
        maintenance::{self, NewWindow},
        outbox,
    },
};

/// A platform and whether this deployment serves it.
pub struct Located {
    pub platform: PlatformEntry,
    pub current: bool,
}

/// Reads the platform code inside a username. Says nothing about whether
/// the account exists: only the configured rule and platforms are consulted.
pub fn locate(app: &App, user_login: &str) -> Result<Located, Error> {
    let config = &app.config.platform;
    let rule = config.login_rule();
    if user_login.is_empty() || user_login.len() > 256 {
        return Err(Error::invalid("user_login", "must be 1 to 256 characters"));
    }
    let code = rule.platform_code(user_login).ok_or_else(|| {
        Error::invalid(
            "user_login",
            format!(
                "holds no platform code: generated usernames look like <prefix>{}<platform code><{} characters>, e.g. acme{}us2k7q4ab",
                rule.separator, rule.tail_length, rule.separator
            ),
        )
    })?;
    let platform = config
        .platforms
        .iter()
        .find(|p| p.code == code)
        .ok_or_else(|| Error::NotFound(format!("no platform has the code `{code}`")))?;
    Ok(Located { current: platform.id == config.current, platform: platform.clone() })
}

#[derive(Debug, Clone)]
pub struct ComponentStatus {
    pub name: &'static str,
    pub state: ComponentState,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub overall: ComponentState,
    pub components: Vec<ComponentStatus>,
    pub windows: Vec<maintenance_window::Model>,
    pub checked_at_ms: i64,
}

/// Reuses a snapshot for `platform.status_cache_ms`, so status can be polled
/// every second by many clients.
#[derive(Default)]
pub struct StatusCache {
    last: Mutex<Option<(Instant, Arc<Snapshot>)>>,
}

const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);
const DATABASE_SLOW: Duration = Duration::from_millis(500);

pub async fn status(app: &App) -> Arc<Snapshot> {
    let ttl = Duration::from_millis(app.config.platform.status_cache_ms);
    if let Some((at, snapshot)) = app.status_cache.last.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
        && at.elapsed() < ttl
    {
        return Arc::clone(snapshot);
    }
    let snapshot = Arc::new(measure(app).await);
    *app.status_cache.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), Arc::clone(&snapshot)));
    snapshot
}

async fn measure(app: &App) -> Snapshot {
    let now = app.clock.now_ms();
    let started = Instant::now();
    let database = match tokio::time::timeout(DATABASE_TIMEOUT, app.store.ping()).await {
        Ok(Ok(())) if started.elapsed() > DATABASE_SLOW => {
            (ComponentState::Degraded, format!("answering slowly ({} ms)", started.elapsed().as_millis()))
        }
        Ok(Ok(())) => (ComponentState::Operational, format!("answering in {} ms", started.elapsed().as_millis())),
        Ok(Err(_)) => (ComponentState::Outage, "unreachable".to_owned()),
        Err(_) => (ComponentState::Outage, format!("no answer within {} s", DATABASE_TIMEOUT.as_secs())),
    };
    let database_up = database.0 != ComponentState::Outage;
    let email = if database_up {
        match outbox::backlog_stats(app.store.connection()).await {
            Ok(stats) => {
                let (state, mut detail) = email_state(
                    stats.pending,
                    stats.oldest_pending_at.map(|at| now - at),
                    secs_to_ms(app.config.platform.email_backlog_max_wait_secs),
                );
                // The error text can quote recipients: the public status only says that delivery fails.
                if state != ComponentState::Operational && stats.last_error.is_some() {
                    detail.push_str("; delivery attempts are failing (details in the service log)");
                }
                (state, detail)
            }
            Err(_) => (ComponentState::Degraded, "backlog unknown".to_owned()),
        }
    } else {
        (ComponentState::Degraded, "backlog unknown while the database is unreachable".to_owned())
    };
    let ring = app.keys.ring();
    let signing = (ComponentState::Operational, format!("signing with key {}", ring.signing_kid()));
    let hasher = &app.hasher;
    let hashing =
        hashing_state(hasher.busy_workers(), hasher.worker_count(), hasher.queue_depth(), app.config.hashing.queue);
    let windows = if database_up {
        maintenance::current_and_upcoming(app.store.connection(), now).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let housekeeping = if database_up {
        match super::housekeeping::last_run(app).await {
            Ok(last) => housekeeping_state(last, secs_to_ms(app.config.retention.stale_after_secs)),
            Err(_) => (ComponentState::Degraded, "last run unknown".to_owned()),
        }
    } else {
        (ComponentState::Degraded, "purges need the database".to_owned())
    };
    let logins = if database_up {
        (ComponentState::Operational, "accepting logins".to_owned())
    } else {
        (ComponentState::Outage, "logins need the database".to_owned())
    };
    let mut components: Vec<ComponentStatus> = [
        ("database", database),
        ("email", email),
        ("signing_keys", signing),
        ("password_hashing", hashing),
        ("logins", logins),
        ("housekeeping", housekeeping),
    ]
    .into_iter()
    .map(|(name, (state, detail))| ComponentStatus { name, state, detail })
    .collect();
    for window in windows.iter().filter(|w| w.starts_at <= now) {
        let covered = components_of(window);
        for component in components.iter_mut().filter(|c| covers(&covered, c.name)) {
            if component.state < ComponentState::Maintenance {
                component.state = ComponentState::Maintenance;
                component.detail = format!("maintenance: {}", window.title);
            }
        }
    }
    let overall = components.iter().map(|c| c.state).max().unwrap_or(ComponentState::Operational);
    Snapshot { overall, components, windows, checked_at_ms: now }
}

pub fn components_of(window: &maintenance_window::Model) -> Vec<String> {
    window.components.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect()
}

/// Whether an active window covers logins (for health, when so configured).
pub async fn logins_in_maintenance(app: &App) -> bool {
    let now = app.clock.now_ms();
    maintenance::current_and_upcoming(app.store.connection(), now)
        .await
        .unwrap_or_default()
        .iter()
        .any(|w| w.starts_at <= now && covers(&components_of(w), "logins"))
}

pub struct WindowInput {
    pub title: String,
    pub starts_at_ms: Option<i64>,
    pub ends_at_ms: Option<i64>,
    pub components: Vec<String>,
}

pub async fn schedule(
    app: &App,
    caller: &Caller,
    input: WindowInput,
    ctx: &RequestContext,
) -> Result<maintenance_window::Model, Error> {
    let operator = operator(app, caller).await?;
    let title = input.title.trim();
    if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
        return Err(Error::invalid("title", "must be 1 to 200 printable characters"));
    }
    let start = input.starts_at_ms.ok_or_else(|| Error::invalid("start_time", "is required"))?;
    let end = input.ends_at_ms.ok_or_else(|| Error::invalid("end_time", "is required"))?;
    if end <= start {
        return Err(Error::invalid("end_time", "must be after start_time"));
    }
    let now = app.clock.now_ms();
    if start < now - 60_000 {
        return Err(Error::invalid("start_time", "is in the past: windows are scheduled ahead"));
    }
    let mut components = input.components.clone();
    components.sort();
    components.dedup();
    if let Some(unknown) = components.iter().find(|c| !COMPONENTS.contains(&c.as_str())) {
        return Err(Error::invalid("components", format!("`{unknown}` is not one of {}", COMPONENTS.join(", "))));
    }
    let txn = app.store.begin_write().await?;
    if let Some(other) = maintenance::overlapping(&txn, start, end).await? {
        return Err(Error::FailedPrecondition {
            reason: crate::domain::ErrorReason::MaintenanceOverlap,
            message: format!("overlaps the window `{}` ({})", other.title, other.id),
        });
    }
    let window = maintenance::insert(
        &txn,
        NewWindow {
            title,
            starts_at_ms: start,
            ends_at_ms: end,
            components: &components,
            created_by: &operator.user_login,
        },
        now,
    )
    .await?;
    audit_and_commit(app, txn, &operator, "maintenance.schedule", &window, ctx, now).await?;
    Ok(window)
}

pub async fn cancel(app: &App, caller: &Caller, id: &str, ctx: &RequestContext) -> Result<(), Error> {
    let operator = operator(app, caller).await?;
    if id.is_empty() || id.len() > 64 {
        return Err(Error::invalid("id", "is required"));
    }
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    let window =
        maintenance::find(&txn, id).await?.ok_or_else(|| Error::NotFound(format!("no maintenance window `{id}`")))?;
    if !maintenance::cancel(&txn, id, now).await? {
        return Err(Error::FailedPrecondition {
            reason: crate::domain::ErrorReason::MaintenanceOver,
            message: format!("the window `{}` is already cancelled or over", window.title),
        });
    }
    audit_and_commit(app, txn, &operator, "maintenance.cancel", &window, ctx, now).await
}

/// Records what the operator did to `window`, commits, and drops the cached status.
async fn audit_and_commit(
    app: &App,
    txn: sea_orm::DatabaseTransaction,
    operator: &crate::store::entities::user::Model,
    action: &'static str,
    window: &maintenance_window::Model,
    ctx: &RequestContext,
    now: i64,
) -> Result<(), Error> {
    let event = AuditRecord::new(action, ctx.source_ip.clone())
        .subscription(&operator.subscription_id)
        .actor(&operator.id, &operator.user_login)
        .detail(format!("{} `{}`", window.id, window.title));
    audit::record(&txn, event, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    app.status_cache.forget();
    Ok(())
}

async fn operator(app: &App, caller: &Caller) -> Result<crate::store::entities::user::Model, Error> {
    let user = access::active_user(app, caller).await?;
    if !is_platform_operator(user.role) {
        return Err(Error::PermissionDenied("only platform operators schedule maintenance".to_owned()));
    }
    Ok(user)
}

impl StatusCache {
    fn forget(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
