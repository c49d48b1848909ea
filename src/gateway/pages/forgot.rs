//! Forgot password: username, email and a captcha; the same confirmation
//! whatever the outcome (only the email differs).

use axum::{
    Form,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;

use super::{Chrome, Refusal, captcha, captcha_solution, page, refusal, refuse_forged, throttled, unavailable};
use crate::{
    gateway::{GatewayState, client_ip::ClientIp, clients::call},
    pb,
};

async fn forgot_form(
    state: &GatewayState,
    client: Option<std::net::IpAddr>,
    status: StatusCode,
    user_login: &str,
    email: &str,
    error: Option<String>,
) -> Response {
    let (challenge, bits) = match captcha(state, client).await {
        Ok(pair) => pair,
        Err(status) => return unavailable(state, &status),
    };
    let ctx = context! {
        title => state.theme.text("forgot_title"),
        state => "form",
        challenge,
        bits,
        user_login,
        email,
        error,
    };
    page(state, status, "forgot.html", &Chrome::default(), ctx)
}

pub async fn forgot_page(State(state): State<GatewayState>, ClientIp(client): ClientIp) -> Response {
    forgot_form(&state, client, StatusCode::OK, "", "", None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ForgotForm {
    user_login: String,
    email: String,
    challenge: String,
    nonce: String,
    nonce_typed: String,
}

pub async fn forgot_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<ForgotForm>,
) -> Response {
    // No session backs this form and it reveals nothing: the origin check is its protection.
    if let Some(refused) = refuse_forged(&state, &headers, None) {
        return refused;
    }
    let request = pb::RequestPasswordResetRequest {
        user_login: form.user_login.trim().to_owned(),
        email: form.email.trim().to_owned(),
        captcha: Some(captcha_solution(form.challenge, &form.nonce, &form.nonce_typed)),
    };
    match state.clients.reset().request_password_reset(call(request, client, None)).await {
        Ok(response) => {
            let ctx = context! {
                title => state.theme.text("forgot_done_title"),
                state => "done",
                message => response.into_inner().message,
            };
            page(&state, StatusCode::OK, "forgot.html", &Chrome::default(), ctx)
        }
        Err(status) => match refusal(&status) {
            Refusal::BadInput => {
                let error = match super::refused_field(&status).as_deref() {
                    Some("captcha") => state.theme.text("captcha_refused"),
                    _ => super::refused_text(&state, &status),
                };
                forgot_form(&state, client, StatusCode::BAD_REQUEST, &form.user_login, &form.email, Some(error)).await
            }
            Refusal::Throttled => throttled(&state, &status),
            Refusal::InvalidLink | Refusal::SignedOut | Refusal::Unavailable => unavailable(&state, &status),
        },
    }
}
