//! The changes of the Users section: every one a POST with the anti-forgery
//! token, and a confirmation page first where it destroys or reveals
//! something (delete, password reset, token, PIN). The page never decides
//! whether a change is allowed: a form it did not offer, forged or stale,
//! reaches the RPC, whose refusal is shown as a message.

use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use minijinja::{Value, context};
use serde::Deserialize;

use super::{
    refuse_forged, see_other,
    signin::{SignedIn, require_session},
    users::{Client, capabilities, enum_text, refused, section_page, user_actions, user_form, user_href},
};
use crate::{
    gateway::{GatewayState, client_ip::ClientIp, clients::call},
    pb,
};

/// The checks of every change: same-origin, the anti-forgery token, a session.
async fn signed_post(
    state: &GatewayState,
    headers: &HeaderMap,
    client: Client,
    csrf: &str,
) -> Result<SignedIn, Response> {
    if let Some(forged) = refuse_forged(state, headers, Some(csrf)) {
        return Err(forged);
    }
    require_session(state, headers, client).await
}

async fn signed_get(state: &GatewayState, headers: &HeaderMap, client: Client) -> Result<SignedIn, Response> {
    require_session(state, headers, client).await
}

/// A confirmation page: what will happen, to whom, and the one button that does it.
struct Confirm<'a> {
    title: String,
    question: String,
    action: &'a str,
    fields: Vec<(&'a str, String)>,
    /// The reset's choice: a one-time link by email, or the password shown once here.
    delivery: bool,
    button: String,
    cancel: String,
}

fn confirm_page(state: &GatewayState, signed: SignedIn, confirm: Confirm) -> Response {
    let fields: Vec<Value> =
        confirm.fields.iter().map(|(name, value)| context! { name => name, value => value }).collect();
    let ctx = context! {
        title => confirm.title,
        csrf_token => signed.csrf_token,
        question => confirm.question,
        action => confirm.action,
        fields,
        delivery => confirm.delivery,
        button => confirm.button,
        cancel => confirm.cancel,
    };
    section_page(state, signed, StatusCode::OK, "confirm.html", ctx)
}

// ---- details and status ------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UpdateForm {
    csrf: String,
    email: String,
    first_name: String,
    last_name: String,
    role: String,
    business_unit: String,
}

pub async fn update_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path(login): Path<String>,
    Form(form): Form<UpdateForm>,
) -> Response {
    let signed = match signed_post(&state, &headers, client, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let role = pb::Role::from_str_name(&form.role).map(|r| r as i32);
    // A subscription-wide role has no unit: sending one would be refused.
    let wide = matches!(pb::Role::from_str_name(&form.role), Some(pb::Role::Manager | pb::Role::Administrator));
    let request = pb::UpdateUserRequest {
        user_login: login.clone(),
        email: Some(form.email.trim().to_owned()),
        first_name: Some(form.first_name.trim().to_owned()),
        last_name: Some(form.last_name.trim().to_owned()),
        role,
        business_unit: (!wide && !form.business_unit.is_empty()).then(|| form.business_unit.clone()),
        ..Default::default()
    };
    match state.clients.users().update_user(call(request, client, signed.bearer())).await {
        Ok(_) => see_other(&format!("{}?m=saved", user_href(&login)), signed.cookies),
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let error = state.theme.text_with("service_refused", &[("reason", status.message())]);
            user_form(&state, client, signed, &login, StatusCode::BAD_REQUEST, None, Some(error)).await
        }
        Err(status) => refused(&state, signed, &status),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct StatusForm {
    csrf: String,
    /// `USER_STATUS_ACTIVE` or `USER_STATUS_INACTIVE`.
    status: String,
    reason: String,
}

/// Inactive → Active is the seeds' unlock of a locked account.
pub async fn status_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path(login): Path<String>,
    Form(form): Form<StatusForm>,
) -> Response {
    let signed = match signed_post(&state, &headers, client, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let wanted = pb::UserStatus::from_str_name(&form.status).unwrap_or_default();
    let request = pb::SetUserStatusRequest {
        user_login: login.clone(),
        status: wanted.into(),
        reason: form.reason.trim().to_owned(),
        ..Default::default()
    };
    match state.clients.users().set_user_status(call(request, client, signed.bearer())).await {
        Ok(_) => {
            let m = if wanted == pb::UserStatus::Active { "activated" } else { "deactivated" };
            see_other(&format!("{}?m={m}", user_href(&login)), signed.cookies)
        }
        Err(status) => refused(&state, signed, &status),
    }
}

// ---- delete, PIN, token: confirmed first --------------------------------------------

/// Which confirmed change of one user.
#[derive(Clone, Copy)]
enum Change {
    Delete,
    ResetPin,
    AssignToken,
}

impl Change {
    fn keys(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Change::Delete => ("delete_title", "delete_question", "delete_button"),
            Change::ResetPin => ("reset_pin_title", "reset_pin_question", "reset_pin_button"),
            Change::AssignToken => ("assign_token_title", "assign_token_question", "assign_token_button"),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Change::Delete => "delete",
            Change::ResetPin => "pin",
            Change::AssignToken => "token",
        }
    }
}

async fn confirm_change(
    state: GatewayState,
    client: Client,
    headers: HeaderMap,
    login: String,
    change: Change,
) -> Response {
    let signed = match signed_get(&state, &headers, client).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    // Whom it is about, as the service sees them (an unknown or unseen user is refused here).
    let (user, _) = match user_actions(&state, client, &signed, &login).await {
        Ok(found) => found,
        Err(status) => return refused(&state, signed, &status),
    };
    let (title, question, button) = change.keys();
    let href = user_href(&user.user_login);
    let action = format!("{href}/{}", change.path());
    let confirm = Confirm {
        title: state.theme.text(title),
        question: state.theme.text_with(question, &[("login", &user.user_login)]),
        action: &action,
        fields: Vec::new(),
        delivery: false,
        button: state.theme.text(button),
        cancel: href.clone(),
    };
    confirm_page(&state, signed, confirm)
}

pub async fn delete_confirm(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path(login): Path<String>,
) -> Response {
    confirm_change(state, client, headers, login, Change::Delete).await
}

pub async fn pin_confirm(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path(login): Path<String>,
) -> Response {
    confirm_change(state, client, headers, login, Change::ResetPin).await
}

pub async fn token_confirm(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path(login): Path<String>,
) -> Response {
    confirm_change(state, client, headers, login, Change::AssignToken).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn delete_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path(login): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let signed = match signed_post(&state, &headers, client, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let request = pb::DeleteUserRequest { user_login: login.clone(), ..Default::default() };
    match state.clients.users().delete_user(call(request, client, signed.bearer())).await {
        Ok(_) => {
            let ctx = context! {
                title => state.theme.text("delete_title"),
                message => state.theme.text_with("user_deleted", &[("login", &login)]),
                link => "/users",
                link_text => state.theme.text("back_to_users"),
            };
            section_page(&state, signed, StatusCode::OK, "message.html", ctx)
        }
        Err(status) => refused(&state, signed, &status),
    }
}

pub async fn pin_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path(login): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let signed = match signed_post(&state, &headers, client, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let request = pb::ResetPinRequest { user_login: login.clone(), ..Default::default() };
    match state.clients.reset().reset_pin(call(request, client, signed.bearer())).await {
        Ok(_) => see_other(&format!("{}?m=pin", user_href(&login)), signed.cookies),
        Err(status) => refused(&state, signed, &status),
    }
}

/// The new token's provisioning, shown on this one answer and never again
/// (the service keeps no way to show it twice).
pub async fn token_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path(login): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let signed = match signed_post(&state, &headers, client, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let request = pb::AssignTokenRequest { user_login: login.clone(), ..Default::default() };
    match state.clients.users().assign_token(call(request, client, signed.bearer())).await {
        Ok(response) => {
            let token = response.into_inner();
            let ctx = context! {
                title => state.theme.text("token_assigned_title"),
                user_login => login,
                href => user_href(&login),
                otpauth_uri => token.otpauth_uri,
                qr_svg => Value::from_safe_string(token.qr_code_svg),
            };
            section_page(&state, signed, StatusCode::OK, "token_assigned.html", ctx)
        }
        Err(status) => refused(&state, signed, &status),
    }
}

// ---- password resets: one user, the selected ones, or all ------------------------------

pub async fn reset_confirm(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path(login): Path<String>,
) -> Response {
    let signed = match signed_get(&state, &headers, client).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let (user, _) = match user_actions(&state, client, &signed, &login).await {
        Ok(found) => found,
        Err(status) => return refused(&state, signed, &status),
    };
    let confirm = Confirm {
        title: state.theme.text("reset_title"),
        question: state.theme.text_with("reset_question_one", &[("login", &user.user_login)]),
        action: "/users/reset",
        fields: vec![("login", user.user_login.clone()), ("step", "do".to_owned()), ("request_id", request_id())],
        delivery: true,
        button: state.theme.text("confirm_button"),
        cancel: user_href(&user.user_login),
    };
    confirm_page(&state, signed, confirm)
}

/// A fresh id for one confirmed reset (`ResetPasswords.request_id`).
fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The batch form: repeated `login` fields, which a plain `Form` cannot read.
#[derive(Default)]
struct ResetForm {
    csrf: String,
    logins: Vec<String>,
    all: bool,
    /// `do` once confirmed; anything else asks first.
    confirmed: bool,
    by_email: bool,
    request_id: String,
}

fn reset_form(body: &str) -> ResetForm {
    let mut form = ResetForm { by_email: true, ..ResetForm::default() };
    for (name, value) in url::form_urlencoded::parse(body.as_bytes()) {
        match &*name {
            "csrf" => form.csrf = value.into_owned(),
            "login" if !value.trim().is_empty() => form.logins.push(value.trim().to_owned()),
            "scope" => form.all = value == "all",
            "step" => form.confirmed = value == "do",
            "delivery" => form.by_email = value != "show",
            "request_id" => form.request_id = value.into_owned(),
            _ => {}
        }
    }
    form.logins.dedup();
    form
}

pub async fn reset_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = reset_form(&body);
    let signed = match signed_post(&state, &headers, client, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    if !form.confirmed {
        if !form.all && form.logins.is_empty() {
            let ctx = context! {
                title => state.theme.text("reset_title"),
                message => state.theme.text("reset_none_selected"),
                error => true,
                link => "/users",
                link_text => state.theme.text("back_to_users"),
            };
            return section_page(&state, signed, StatusCode::BAD_REQUEST, "message.html", ctx);
        }
        let question = if form.all {
            state.theme.text("reset_question_all")
        } else {
            state.theme.text_with("reset_question_some", &[("logins", &form.logins.join(", "))])
        };
        let mut fields: Vec<(&str, String)> = form.logins.iter().map(|l| ("login", l.clone())).collect();
        fields.push(("scope", if form.all { "all" } else { "selected" }.to_owned()));
        fields.push(("step", "do".to_owned()));
        fields.push(("request_id", request_id()));
        let confirm = Confirm {
            title: state.theme.text("reset_title"),
            question,
            action: "/users/reset",
            fields,
            delivery: true,
            button: state.theme.text("confirm_button"),
            cancel: "/users".to_owned(),
        };
        return confirm_page(&state, signed, confirm);
    }
    // The confirmation page's id: the same form posted again (a reload, the back
    // button) gets the first outcome back instead of a second reset.
    let request = pb::ResetPasswordsRequest {
        user_logins: form.logins,
        all: form.all,
        notify_by_email: form.by_email,
        request_id: form.request_id,
        ..Default::default()
    };
    let results = match state.clients.reset().reset_passwords(call(request, client, signed.bearer())).await {
        Ok(response) => response.into_inner().results,
        Err(status) => return refused(&state, signed, &status),
    };
    let not_changed = results.iter().filter(|r| !r.changed).count();
    let total = results.len().to_string();
    // The legacy API's outcome of the same batch: SUCCESS, or WARNING with what was not changed.
    let (outcome, summary) = if not_changed == 0 {
        ("SUCCESS", state.theme.text("reset_success"))
    } else {
        ("WARNING", state.theme.text_with("reset_warning", &[("n", &not_changed.to_string()), ("m", &total)]))
    };
    let rows: Vec<Value> = results
        .iter()
        .map(|r| {
            context! {
                user_login => r.user_login,
                href => user_href(&r.user_login),
                changed => r.changed,
                password => r.password,
                message => if r.changed {
                    state.theme.text(if form.by_email { "reset_emailed" } else { "reset_shown" })
                } else {
                    r.message.clone()
                },
            }
        })
        .collect();
    let ctx = context! {
        title => state.theme.text("reset_results_title"),
        wide => true,
        outcome,
        warning => not_changed > 0,
        summary,
        rows,
        shown => !form.by_email,
    };
    section_page(&state, signed, StatusCode::OK, "reset_results.html", ctx)
}

// ---- new users and business units -----------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewUserForm {
    csrf: String,
    user_login: String,
    email: String,
    first_name: String,
    last_name: String,
    role: String,
    business_unit: String,
}

pub async fn new_user_page(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> Response {
    match signed_get(&state, &headers, client).await {
        Ok(signed) => new_user_form(&state, client, signed, StatusCode::OK, &NewUserForm::default(), None).await,
        Err(response) => response,
    }
}

async fn new_user_form(
    state: &GatewayState,
    client: Client,
    signed: SignedIn,
    code: StatusCode,
    form: &NewUserForm,
    error: Option<String>,
) -> Response {
    let allowed = match capabilities(state, client, &signed).await {
        Ok(allowed) => allowed,
        Err(status) => return refused(state, signed, &status),
    };
    let selected = if form.role.is_empty() { pb::Role::Reader.as_str_name() } else { form.role.as_str() };
    let role_options: Vec<Value> = allowed
        .creatable_roles
        .iter()
        .filter_map(|r| pb::Role::try_from(*r).ok())
        .map(|r| {
            let value = r.as_str_name();
            context! { value, text => enum_text(state, value), selected => value == selected }
        })
        .collect();
    let ctx = context! {
        title => state.theme.text("new_user_title"),
        csrf_token => signed.csrf_token,
        role_options,
        units => allowed.business_units,
        form => context! {
            user_login => form.user_login,
            email => form.email,
            first_name => form.first_name,
            last_name => form.last_name,
            business_unit => form.business_unit,
        },
        error,
    };
    section_page(state, signed, code, "user_new.html", ctx)
}

pub async fn new_user_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<NewUserForm>,
) -> Response {
    let signed = match signed_post(&state, &headers, client, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let request = pb::CreateUserRequest {
        user_login: form.user_login.trim().to_owned(),
        email: form.email.trim().to_owned(),
        first_name: form.first_name.trim().to_owned(),
        last_name: form.last_name.trim().to_owned(),
        role: pb::Role::from_str_name(&form.role).unwrap_or_default().into(),
        business_unit: form.business_unit.clone(),
    };
    match state.clients.users().create_user(call(request, client, signed.bearer())).await {
        // The login (generated when left empty) is what the new person signs in with: said first.
        Ok(response) => {
            let login = response.into_inner().user.unwrap_or_default().user_login;
            let ctx = context! {
                title => state.theme.text("user_created"),
                message => state.theme.text_with("user_created_login", &[("login", &login)]),
                link => user_href(&login),
                link_text => state.theme.text_with("open_user", &[("login", &login)]),
            };
            section_page(&state, signed, StatusCode::OK, "message.html", ctx)
        }
        Err(status) if matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::AlreadyExists) => {
            let error = state.theme.text_with("service_refused", &[("reason", status.message())]);
            new_user_form(&state, client, signed, StatusCode::BAD_REQUEST, &form, Some(error)).await
        }
        Err(status) => refused(&state, signed, &status),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UnitForm {
    csrf: String,
    name: String,
}

pub async fn units_page(State(state): State<GatewayState>, ClientIp(client): ClientIp, headers: HeaderMap) -> Response {
    match signed_get(&state, &headers, client).await {
        Ok(signed) => units_form(&state, client, signed, StatusCode::OK, None, None).await,
        Err(response) => response,
    }
}

async fn units_form(
    state: &GatewayState,
    client: Client,
    signed: SignedIn,
    code: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let allowed = match capabilities(state, client, &signed).await {
        Ok(allowed) => allowed,
        Err(status) => return refused(state, signed, &status),
    };
    let ctx = context! {
        title => state.theme.text("units_title"),
        csrf_token => signed.csrf_token,
        units => allowed.business_units,
        may_create => allowed.creates_business_units,
        notice,
        error,
    };
    section_page(state, signed, code, "units.html", ctx)
}

pub async fn units_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<UnitForm>,
) -> Response {
    let signed = match signed_post(&state, &headers, client, &form.csrf).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let request = pb::CreateBusinessUnitRequest { name: form.name.trim().to_owned() };
    match state.clients.users().create_business_unit(call(request, client, signed.bearer())).await {
        Ok(response) => {
            let name = response.into_inner().business_unit.unwrap_or_default().name;
            let notice = state.theme.text_with("unit_created", &[("name", &name)]);
            units_form(&state, client, signed, StatusCode::OK, Some(notice), None).await
        }
        Err(status) if matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::AlreadyExists) => {
            let error = state.theme.text_with("service_refused", &[("reason", status.message())]);
            units_form(&state, client, signed, StatusCode::BAD_REQUEST, None, Some(error)).await
        }
        Err(status) => refused(&state, signed, &status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_form_reads_repeated_logins_and_the_choices() {
        let form =
            reset_form("csrf=t&login=a&login=b&login=b&login=+&scope=selected&step=do&delivery=show&request_id=r1");
        assert_eq!(form.csrf, "t");
        assert_eq!(form.logins, ["a", "b"]);
        assert!(form.confirmed && !form.all && !form.by_email);
        assert_eq!(form.request_id, "r1");
        let form = reset_form("csrf=t&scope=all");
        assert!(form.all && !form.confirmed && form.by_email, "email unless asked otherwise; confirm first");
    }
}
