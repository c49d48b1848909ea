//! The signed-in person's own account: who they are, changing their password
//! and their user login. Both changes end with "Change and Logout": the
//! service revokes every session of the user, and the browser forgets its own.

use axum::{
    Form,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;

use super::{
    Refusal, captcha, captcha_solution, format_timestamp, page, refusal, refuse_forged, refused_field,
    signin::{SignedIn, forget_browser, require_session, session_ended, signed_out},
    throttled, unavailable,
};
use crate::{
    gateway::{GatewayState, client_ip::ClientIp, clients::call},
    pb,
};

/// The catalogue's name of a proto enum value (`ROLE_UNIT_MANAGER` → `role_unit_manager`).
pub(super) fn enum_text(state: &GatewayState, name: &str) -> String {
    state.theme.text(&name.to_ascii_lowercase())
}

/// The answer to a call that failed for a signed-in person: their session
/// ended, too many attempts, or the service is away.
fn failed(state: &GatewayState, status: &tonic::Status) -> Response {
    match refusal(status) {
        Refusal::SignedOut => session_ended(state),
        Refusal::Throttled => throttled(state, status),
        _ => unavailable(state, status),
    }
}

pub async fn account_page(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&state, &headers, client).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let request = pb::GetUserRequest { user_login: signed.session.user_login.clone(), ..Default::default() };
    let user = match state.clients.users().get_user(call(request, client, signed.bearer())).await {
        Ok(response) => response.into_inner().user.unwrap_or_default(),
        Err(status) => return signed.respond(failed(&state, &status)),
    };
    let name = format!("{} {}", user.first_name, user.last_name).trim().to_owned();
    let ctx = context! {
        title => state.theme.text("account_title"),
        user => context! {
            user_login => user.user_login,
            name,
            email => user.email,
            role => enum_text(&state, user.role().as_str_name()),
            unit => user.business_unit,
            status => enum_text(&state, user.status().as_str_name()),
            has_token => user.has_token,
            last_login => user.last_login_time.as_ref().map(|t| format!("{} UTC", format_timestamp(t))),
        },
    };
    let chrome = signed.chrome();
    signed.respond(page(&state, StatusCode::OK, "account.html", &chrome, ctx))
}

/// A refused field in the catalogue's words where it has them (the service's
/// own sentence otherwise: password rules and login syntax are its to word).
fn field_error(state: &GatewayState, status: &tonic::Status) -> String {
    let key = match refused_field(status).as_deref() {
        Some("current_password") => "wrong_current_password",
        Some("captcha") => "captcha_refused",
        _ => return super::refused_text(state, status),
    };
    state.theme.text(key)
}

// ---- change password ------------------------------------------------------------

async fn password_form(
    state: &GatewayState,
    client: Option<std::net::IpAddr>,
    signed: SignedIn,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let policy = match state
        .clients
        .auth()
        .get_password_policy(call(pb::GetPasswordPolicyRequest {}, client, signed.bearer()))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return signed.respond(failed(state, &status)),
    };
    let (challenge, bits) = match captcha(state, client).await {
        Ok(pair) => pair,
        Err(status) => return signed.respond(unavailable(state, &status)),
    };
    let ctx = context! {
        title => state.theme.text("change_password_title"),
        csrf_token => signed.csrf_token,
        user_login => signed.session.user_login,
        user_chooses => policy.user_chooses,
        rules => policy.rules,
        challenge,
        bits,
        error,
    };
    let chrome = signed.chrome();
    signed.respond(page(state, status, "change_password.html", &chrome, ctx))
}

pub async fn change_password_page(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> Response {
    match require_session(&state, &headers, client).await {
        Ok(signed) => password_form(&state, client, signed, StatusCode::OK, None).await,
        Err(response) => response,
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ChangePasswordForm {
    csrf: String,
    current_password: String,
    new_password: String,
    confirm_password: String,
    challenge: String,
    nonce: String,
    nonce_typed: String,
}

pub async fn change_password_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<ChangePasswordForm>,
) -> Response {
    if let Some(refused) = refuse_forged(&state, &headers, Some(&form.csrf)) {
        return refused;
    }
    let signed = match require_session(&state, &headers, client).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    if form.new_password != form.confirm_password {
        let error = state.theme.text("passwords_differ");
        return password_form(&state, client, signed, StatusCode::BAD_REQUEST, Some(error)).await;
    }
    let request = pb::ChangePasswordRequest {
        current_password: form.current_password,
        new_password: form.new_password,
        captcha: Some(captcha_solution(form.challenge, &form.nonce, &form.nonce_typed)),
    };
    match state.clients.auth().change_password(call(request, client, signed.bearer())).await {
        Ok(response) => {
            let generated = response.into_inner().generated_password;
            if generated.is_empty() {
                return signed_out(&state, &state.theme.text("password_changed"));
            }
            // Shown once, on the page that also signs the browser out.
            let ctx = context! { title => state.theme.text("password_changed_title"), generated_password => generated };
            forget_browser(&state, page(&state, StatusCode::OK, "change_password.html", &Default::default(), ctx))
        }
        Err(status) => match refusal(&status) {
            Refusal::BadInput => {
                let error = field_error(&state, &status);
                password_form(&state, client, signed, StatusCode::BAD_REQUEST, Some(error)).await
            }
            _ => signed.respond(failed(&state, &status)),
        },
    }
}

// ---- change user login ------------------------------------------------------------

fn login_form(
    state: &GatewayState,
    signed: SignedIn,
    status: StatusCode,
    new_login: &str,
    error: Option<String>,
) -> Response {
    let ctx = context! {
        title => state.theme.text("change_login_title"),
        csrf_token => signed.csrf_token,
        user_login => signed.session.user_login,
        new_login,
        error,
    };
    let chrome = signed.chrome();
    signed.respond(page(state, status, "change_login.html", &chrome, ctx))
}

pub async fn change_login_page(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> Response {
    match require_session(&state, &headers, client).await {
        Ok(signed) => login_form(&state, signed, StatusCode::OK, "", None),
        Err(response) => response,
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ChangeLoginForm {
    csrf: String,
    current_password: String,
    new_login: String,
    confirm_login: String,
}

pub async fn change_login_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<ChangeLoginForm>,
) -> Response {
    if let Some(refused) = refuse_forged(&state, &headers, Some(&form.csrf)) {
        return refused;
    }
    let signed = match require_session(&state, &headers, client).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let new_login = form.new_login.trim();
    if new_login != form.confirm_login.trim() {
        let error = state.theme.text("logins_differ");
        return login_form(&state, signed, StatusCode::BAD_REQUEST, new_login, Some(error));
    }
    let request = pb::ChangeUserLoginRequest {
        user_login: String::new(),
        new_user_login: new_login.to_owned(),
        current_password: form.current_password,
        ..Default::default()
    };
    match state.clients.auth().change_user_login(call(request, client, signed.bearer())).await {
        Ok(response) => {
            let login = response.into_inner().user_login;
            signed_out(&state, &state.theme.text_with("login_changed", &[("login", &login)]))
        }
        Err(status) => match refusal(&status) {
            Refusal::BadInput => {
                let error = field_error(&state, &status);
                login_form(&state, signed, StatusCode::BAD_REQUEST, new_login, Some(error))
            }
            _ => signed.respond(failed(&state, &status)),
        },
    }
}
