//! The Users section for Managers, Administrators and Unit Managers: the
//! list of the people they administer, one person's page, and the audit log.
//! Each page is a few `Users` calls; what it shows and offers is what the
//! service answers (`ListUsers` only lists the caller's scope,
//! `GetUserActions` says which buttons a person's page has), never a rule of
//! the page's own. The changes themselves are in `users_actions.rs`.

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use minijinja::{Value, context};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

pub(super) use super::account::enum_text;
use super::{
    Refusal, format_timestamp, page, refusal,
    signin::{SignedIn, require_session, session_ended},
    throttled, unavailable,
};
use crate::{
    gateway::{GatewayState, client_ip::ClientIp, clients::call},
    pb,
};

pub(super) type Client = Option<std::net::IpAddr>;

/// What a login keeps unescaped in an address: its own punctuation, so the
/// address reads as the login does.
const IN_PATH: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The address of a person's page.
pub(super) fn user_href(login: &str) -> String {
    format!("/users/u/{}", utf8_percent_encode(login, IN_PATH))
}

/// A page of the section, for the signed-in person, with the cookies their
/// session needs.
pub(super) fn section_page(
    state: &GatewayState,
    signed: SignedIn,
    status: StatusCode,
    name: &str,
    ctx: Value,
) -> Response {
    let chrome = signed.chrome();
    signed.respond(page(state, status, name, &chrome, ctx))
}

/// A call the service refused, shown as a message in its own words (a
/// forged or stale form for someone out of reach gets exactly this), or the
/// answers for a session that ended, throttling and an absent service.
pub(super) fn refused(state: &GatewayState, signed: SignedIn, status: &tonic::Status) -> Response {
    use tonic::Code;
    match refusal(status) {
        Refusal::SignedOut => return session_ended(state),
        Refusal::Throttled => return signed.respond(throttled(state, status)),
        _ => {}
    }
    let code = match status.code() {
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        _ => return signed.respond(unavailable(state, status)),
    };
    let ctx = context! {
        title => state.theme.text("refused_title"),
        message => state.theme.text_with("service_refused", &[("reason", status.message())]),
        error => true,
        link => "/users",
        link_text => state.theme.text("back_to_users"),
    };
    section_page(state, signed, code, "message.html", ctx)
}

/// A user as a row or a page shows them.
pub(super) fn user_context(state: &GatewayState, user: &pb::User) -> Value {
    let name = format!("{} {}", user.first_name, user.last_name).trim().to_owned();
    context! {
        user_login => user.user_login,
        href => user_href(&user.user_login),
        name,
        first_name => user.first_name,
        last_name => user.last_name,
        email => user.email,
        role => enum_text(state, user.role().as_str_name()),
        role_value => user.role().as_str_name(),
        unit => user.business_unit,
        status => enum_text(state, user.status().as_str_name()),
        status_value => user.status().as_str_name(),
        has_token => user.has_token,
        last_login => user.last_login_time.as_ref().map(format_timestamp),
    }
}

/// Choices of a `<select>`: (value, words, selected).
fn options(state: &GatewayState, values: &[&str], selected: &str) -> Vec<Value> {
    values.iter().map(|v| context! { value => v, text => enum_text(state, v), selected => *v == selected }).collect()
}

const STATUSES: [pb::UserStatus; 3] =
    [pb::UserStatus::Active, pb::UserStatus::Inactive, pb::UserStatus::PendingActivation];
/// The roles a list filters by (platform operators belong to no subscription's list).
const ROLES: [pb::Role; 8] = [
    pb::Role::Administrator,
    pb::Role::Manager,
    pb::Role::UnitManager,
    pb::Role::Scanner,
    pb::Role::Reader,
    pb::Role::Auditor,
    pb::Role::RemediationUser,
    pb::Role::Contact,
];

pub(super) async fn capabilities(
    state: &GatewayState,
    client: Client,
    signed: &SignedIn,
) -> Result<pb::GetCapabilitiesResponse, tonic::Status> {
    let request = call(pb::GetCapabilitiesRequest {}, client, signed.bearer());
    Ok(state.clients.users().get_capabilities(request).await?.into_inner())
}

// ---- the list ------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    /// Name, email or login (a substring, case-insensitive).
    q: String,
    status: String,
    role: String,
    unit: String,
    /// The service's page token of the page to show.
    page: String,
}

pub const USERS_PAGE_SIZE: i32 = 50;

/// A list's address with its filters (the empty ones left out) and a page token.
fn list_href(path: &str, filters: &[(&str, &str)], page: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in filters.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(name, value);
    }
    if let Some(token) = page {
        query.append_pair("page", token);
    }
    format!("{path}?{}", query.finish())
}

pub async fn users_page(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let signed = match require_session(&state, &headers, client).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let allowed = match capabilities(&state, client, &signed).await {
        Ok(allowed) => allowed,
        Err(status) => return refused(&state, signed, &status),
    };
    if !allowed.administers_users {
        let status = tonic::Status::permission_denied(state.theme.text("users_not_yours"));
        return refused(&state, signed, &status);
    }
    let status = pb::UserStatus::from_str_name(&query.status).unwrap_or_default();
    let role = pb::Role::from_str_name(&query.role).unwrap_or_default();
    let request = pb::ListUsersRequest {
        page_size: USERS_PAGE_SIZE,
        page_token: query.page.clone(),
        business_unit: query.unit.clone(),
        role: role.into(),
        status: status.into(),
        query: query.q.trim().to_owned(),
    };
    let listed = match state.clients.users().list_users(call(request, client, signed.bearer())).await {
        Ok(response) => response.into_inner(),
        Err(status) => return refused(&state, signed, &status),
    };
    let users: Vec<Value> = listed.users.iter().map(|u| user_context(&state, u)).collect();
    let filters = [("q", query.q.trim()), ("status", &query.status), ("role", &query.role), ("unit", &query.unit)];
    let first_href = list_href("/users", &filters, None);
    let next_href =
        (!listed.next_page_token.is_empty()).then(|| list_href("/users", &filters, Some(&listed.next_page_token)));
    let statuses: Vec<&str> = STATUSES.iter().map(|s| s.as_str_name()).collect();
    let roles: Vec<&str> = ROLES.iter().map(|r| r.as_str_name()).collect();
    let ctx = context! {
        title => state.theme.text("users_title"),
        wide => true,
        csrf_token => signed.csrf_token,
        users,
        q => query.q.trim(),
        unit => query.unit,
        units => allowed.business_units,
        status_options => options(&state, &statuses, &query.status),
        role_options => options(&state, &roles, &query.role),
        filtered => filters.iter().any(|(_, v)| !v.is_empty()),
        deeper => !query.page.is_empty(),
        first_href,
        next_href,
        may_create => !allowed.creatable_roles.is_empty(),
        may_units => allowed.creates_business_units,
    };
    section_page(&state, signed, StatusCode::OK, "users.html", ctx)
}

// ---- one person ------------------------------------------------------------------

/// What a person's page offers, from `GetUserActions`.
#[derive(Default)]
pub(super) struct Offered {
    pub update: bool,
    pub reset_password: bool,
    pub set_status: bool,
    pub delete: bool,
    pub assign_token: bool,
    pub reset_pin: bool,
}

impl Offered {
    fn from(actions: &[i32]) -> Self {
        let has = |a: pb::UserAction| actions.contains(&(a as i32));
        Self {
            update: has(pb::UserAction::Update),
            reset_password: has(pb::UserAction::ResetPassword),
            set_status: has(pb::UserAction::SetStatus),
            delete: has(pb::UserAction::Delete),
            assign_token: has(pb::UserAction::AssignToken),
            reset_pin: has(pb::UserAction::ResetPin),
        }
    }
}

/// The user and what the caller may do to them.
pub(super) async fn user_actions(
    state: &GatewayState,
    client: Client,
    signed: &SignedIn,
    login: &str,
) -> Result<(pb::User, Offered), tonic::Status> {
    let request =
        call(pb::GetUserActionsRequest { user_login: login.to_owned(), ..Default::default() }, client, signed.bearer());
    let answer = state.clients.users().get_user_actions(request).await?.into_inner();
    Ok((answer.user.unwrap_or_default(), Offered::from(&answer.actions)))
}

/// Notices a change page sends back with (`?m=`): words only.
fn done_notice(state: &GatewayState, m: &str) -> Option<String> {
    let key = match m {
        "saved" => "user_saved",
        "activated" => "user_activated",
        "deactivated" => "user_deactivated",
        "pin" => "pin_was_reset",
        "created" => "user_created",
        _ => return None,
    };
    Some(state.theme.text(key))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UserQuery {
    m: String,
}

pub async fn user_page(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path(login): Path<String>,
    Query(query): Query<UserQuery>,
) -> Response {
    let signed = match require_session(&state, &headers, client).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let notice = done_notice(&state, &query.m);
    user_form(&state, client, signed, &login, StatusCode::OK, notice, None).await
}

/// A person's page: who they are (the login first: the seeds' lookup
/// answer), the details form, the actions the caller may take, and their
/// audit trail when the caller reads the audit log.
pub(super) async fn user_form(
    state: &GatewayState,
    client: Client,
    signed: SignedIn,
    login: &str,
    code: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let (user, offered) = match user_actions(state, client, &signed, login).await {
        Ok(found) => found,
        Err(status) => return refused(state, signed, &status),
    };
    let allowed = match capabilities(state, client, &signed).await {
        Ok(allowed) => allowed,
        Err(status) => return refused(state, signed, &status),
    };
    let trail = if allowed.reads_audit_log {
        let request =
            pb::ListAuditEventsRequest { page_size: 20, target_login: login.to_owned(), ..Default::default() };
        match state.clients.users().list_audit_events(call(request, client, signed.bearer())).await {
            Ok(response) => {
                Some(response.into_inner().events.iter().map(|e| event_context(state, e)).collect::<Vec<_>>())
            }
            Err(status) => return refused(state, signed, &status),
        }
    } else {
        None
    };
    let mut roles: Vec<&str> =
        allowed.creatable_roles.iter().filter_map(|r| pb::Role::try_from(*r).ok()).map(|r| r.as_str_name()).collect();
    // The current role stays selected, even one the caller could not give.
    if !roles.contains(&user.role().as_str_name()) {
        roles.insert(0, user.role().as_str_name());
    }
    let mut units = allowed.business_units;
    if !user.business_unit.is_empty() && !units.contains(&user.business_unit) {
        units.push(user.business_unit.clone());
    }
    let ctx = context! {
        title => state.theme.text_with("user_title", &[("login", &user.user_login)]),
        csrf_token => signed.csrf_token,
        user => user_context(state, &user),
        active => user.status() == pb::UserStatus::Active,
        inactive => user.status() == pb::UserStatus::Inactive,
        role_options => options(state, &roles, user.role().as_str_name()),
        units,
        offer => context! {
            update => offered.update,
            reset_password => offered.reset_password,
            set_status => offered.set_status && matches!(user.status(), pb::UserStatus::Active | pb::UserStatus::Inactive),
            delete => offered.delete,
            assign_token => offered.assign_token,
            reset_pin => offered.reset_pin && user.has_token,
        },
        trail,
        audit_href => format!("/audit?user={}", utf8_percent_encode(&user.user_login, IN_PATH)),
        notice,
        error,
    };
    section_page(state, signed, code, "user.html", ctx)
}

// ---- the audit log ---------------------------------------------------------------

fn event_context(state: &GatewayState, event: &pb::AuditEvent) -> Value {
    let failed = event.outcome() == pb::AuditOutcome::Failure;
    context! {
        time => event.time.as_ref().map(format_timestamp),
        actor => event.actor_login,
        action => event.action,
        target => event.target_login,
        outcome => state.theme.text(if failed { "outcome_failure" } else { "outcome_success" }),
        failed,
        reason => event.reason,
        detail => event.detail,
        source_ip => event.source_ip,
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    /// The user acted upon.
    user: String,
    /// Who acted.
    actor: String,
    /// The event, e.g. `password.reset`.
    event: String,
    page: String,
}

pub async fn audit_page(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Response {
    let signed = match require_session(&state, &headers, client).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let request = pb::ListAuditEventsRequest {
        page_size: USERS_PAGE_SIZE,
        page_token: query.page.clone(),
        actor_login: query.actor.trim().to_owned(),
        target_login: query.user.trim().to_owned(),
        action: query.event.trim().to_owned(),
        ..Default::default()
    };
    let listed = match state.clients.users().list_audit_events(call(request, client, signed.bearer())).await {
        Ok(response) => response.into_inner(),
        Err(status) => return refused(&state, signed, &status),
    };
    let filters = [("user", query.user.trim()), ("actor", query.actor.trim()), ("event", query.event.trim())];
    let first_href = list_href("/audit", &filters, None);
    let next_href =
        (!listed.next_page_token.is_empty()).then(|| list_href("/audit", &filters, Some(&listed.next_page_token)));
    let events: Vec<Value> = listed.events.iter().map(|e| event_context(&state, e)).collect();
    let ctx = context! {
        title => state.theme.text("audit_title"),
        wide => true,
        events,
        user => query.user.trim(),
        actor => query.actor.trim(),
        event => query.event.trim(),
        deeper => !query.page.is_empty(),
        first_href,
        next_href,
    };
    section_page(&state, signed, StatusCode::OK, "audit.html", ctx)
}
