//! The one-time links of emails: GET says what the link does and offers one
//! button (mail scanners and second looks spend nothing); POST redeems it,
//! or asks for a new password twice with a captcha first.

use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;

use super::{
    Chrome, Refusal, captcha, captcha_solution, format_timestamp, page, refusal, refuse_forged, throttled, unavailable,
};
use crate::{
    domain::Secret,
    gateway::{GatewayState, client_ip::ClientIp, clients::call},
    pb,
};

/// Longer tokens are not ours; they are not sent on to the service.
const MAX_TOKEN_LEN: usize = 256;

type Client = Option<std::net::IpAddr>;

/// Why a link cannot be used, as far as the page words it.
#[derive(Clone, Copy)]
enum Invalid {
    /// Forgot Password can help: the account may well be active.
    Spent,
    /// A newer email holds the live link.
    Superseded,
    /// The account cannot use links now: only its Manager can help.
    AccountUnavailable,
}

fn invalid_link(state: &GatewayState, why: Invalid) -> Response {
    let ctx = context! {
        title => state.theme.text("link_invalid_title"),
        state => "invalid",
        superseded => matches!(why, Invalid::Superseded),
        offer_forgot => !matches!(why, Invalid::AccountUnavailable),
    };
    page(state, StatusCode::NOT_FOUND, "activate.html", &Chrome::default(), ctx)
}

fn invalid_from_inspection(reason: pb::ActivationInvalidReason) -> Invalid {
    match reason {
        pb::ActivationInvalidReason::Superseded => Invalid::Superseded,
        pb::ActivationInvalidReason::AccountUnavailable => Invalid::AccountUnavailable,
        _ => Invalid::Spent,
    }
}

fn invalid_from_refusal(status: &tonic::Status) -> Invalid {
    match crate::grpc::status::error_reason(status) {
        Some(pb::ErrorReason::ActivationKeySuperseded) => Invalid::Superseded,
        Some(pb::ErrorReason::ActivationAccountUnavailable) => Invalid::AccountUnavailable,
        _ => Invalid::Spent,
    }
}

async fn inspect(
    state: &GatewayState,
    client: Client,
    token: &str,
) -> Result<pb::InspectActivationResponse, tonic::Status> {
    let request = pb::InspectActivationRequest { token: token.to_owned() };
    Ok(state.clients.reset().inspect_activation(call(request, client, None)).await?.into_inner())
}

/// The catalogue keys of what the link does and of its button.
fn describe(purpose: pb::ActivationPurpose, requires_new_password: bool) -> (&'static str, &'static str) {
    match (purpose, requires_new_password) {
        (pb::ActivationPurpose::TokenEnrollment, _) => ("link_purpose_token", "link_button_token"),
        (pb::ActivationPurpose::AdminReset, _) => ("link_purpose_admin_reset", "link_button_password"),
        (pb::ActivationPurpose::ForgotPassword, true) => ("link_purpose_forgot_choose", "link_button_choose"),
        (pb::ActivationPurpose::ForgotPassword, false) => ("link_purpose_forgot_generated", "link_button_password"),
        (_, true) => ("link_purpose_welcome_choose", "link_button_welcome_choose"),
        (_, false) => ("link_purpose_welcome_generated", "link_button_welcome_generated"),
    }
}

fn confirm(state: &GatewayState, info: &pb::InspectActivationResponse, token: &str, error: Option<String>) -> Response {
    let (purpose, button) = describe(info.purpose(), info.requires_new_password);
    let expires =
        info.expires_at.as_ref().map(|t| state.theme.text_with("link_expires", &[("time", &format_timestamp(t))]));
    let ctx = context! {
        title => state.theme.text("link_title"),
        state => "confirm",
        purpose => state.theme.text(purpose),
        button => state.theme.text(button),
        account => state.theme.text_with("link_account", &[("login", &info.user_login)]),
        expires,
        token,
        error,
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    page(state, status, "activate.html", &Chrome::default(), ctx)
}

/// GET (and HEAD): what the link is for, and one button.
pub async fn activation_page(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    Path(token): Path<String>,
) -> Response {
    if token.len() > MAX_TOKEN_LEN {
        return invalid_link(&state, Invalid::Spent);
    }
    match inspect(&state, client, &token).await {
        Ok(info) if info.valid => confirm(&state, &info, &token, None),
        Ok(info) => invalid_link(&state, invalid_from_inspection(info.invalid_reason())),
        Err(status) => unavailable(&state, &status),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ActivationForm {
    new_password: Option<String>,
    confirm_password: Option<String>,
    challenge: String,
    nonce: String,
    nonce_typed: String,
}

/// POST: the button (redeem, or ask for the new password), or the new-password form.
pub async fn activation_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActivationForm>,
) -> Response {
    // The link's token in the path is the secret a forger lacks; the origin check stays.
    if let Some(refused) = refuse_forged(&state, &headers, None) {
        return refused;
    }
    if token.len() > MAX_TOKEN_LEN {
        return invalid_link(&state, Invalid::Spent);
    }
    if let Some(new_password) = form.new_password.map(Secret::new) {
        if form.confirm_password.map(Secret::new).as_ref() != Some(&new_password) {
            return choose_form(&state, client, &token, Some(state.theme.text("passwords_differ"))).await;
        }
        let solution = captcha_solution(form.challenge, &form.nonce, &form.nonce_typed);
        return redeem(&state, client, &token, new_password, Some(solution)).await;
    }
    match inspect(&state, client, &token).await {
        Ok(info) if !info.valid => invalid_link(&state, invalid_from_inspection(info.invalid_reason())),
        Ok(info) if info.requires_new_password => choose_form(&state, client, &token, None).await,
        Ok(_) => redeem(&state, client, &token, Secret::default(), None).await,
        Err(status) => unavailable(&state, &status),
    }
}

async fn choose_form(state: &GatewayState, client: Client, token: &str, error: Option<String>) -> Response {
    let info = match inspect(state, client, token).await {
        Ok(info) if info.valid => info,
        Ok(info) => return invalid_link(state, invalid_from_inspection(info.invalid_reason())),
        Err(status) => return unavailable(state, &status),
    };
    if !info.requires_new_password {
        // The service generates this link's password: offer the button that shows it.
        // A refusal here can only be a password posted to it: say so in a person's words.
        return confirm(state, &info, token, error.map(|_| state.theme.text("link_no_password")));
    }
    let (challenge, bits) = match captcha(state, client).await {
        Ok(pair) => pair,
        Err(status) => return unavailable(state, &status),
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let ctx = context! {
        title => state.theme.text("choose_title"),
        state => "choose",
        intro => state.theme.text_with("choose_intro", &[("login", &info.user_login)]),
        user_login => info.user_login,
        token,
        error,
        rules => info.password_rules,
        challenge,
        bits,
    };
    page(state, status, "activate.html", &Chrome::default(), ctx)
}

async fn redeem(
    state: &GatewayState,
    client: Client,
    token: &str,
    new_password: Secret,
    captcha: Option<pb::CaptchaSolution>,
) -> Response {
    let request =
        pb::RedeemActivationRequest { token: token.to_owned(), new_password: new_password.into_exposed(), captcha };
    let redeemed = match state.clients.reset().redeem_activation(call(request, client, None)).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            return match refusal(&status) {
                Refusal::InvalidLink => invalid_link(state, invalid_from_refusal(&status)),
                Refusal::BadInput => {
                    let error = match super::refused_field(&status).as_deref() {
                        Some("captcha") => state.theme.text("captcha_refused"),
                        _ => super::refused_text(state, &status),
                    };
                    choose_form(state, client, token, Some(error)).await
                }
                Refusal::Throttled => throttled(state, &status),
                Refusal::SignedOut | Refusal::Unavailable => unavailable(state, &status),
            };
        }
    };
    let login = [("login", redeemed.user_login.as_str())];
    let text = |key: &str| state.theme.text_with(key, &login);
    // A generated password or token is shown whenever one comes back: it exists nowhere else.
    let ctx = if !redeemed.otpauth_uri.is_empty() {
        // The QR code is the service's own SVG (from the RPC), not user input.
        context! {
            title => state.theme.text("token_title"),
            state => "token",
            intro => text("token_intro"),
            otpauth_uri => redeemed.otpauth_uri,
            qr_svg => minijinja::Value::from_safe_string(redeemed.qr_code_svg),
        }
    } else if redeemed.generated_password.is_empty() {
        context! { title => state.theme.text("password_set_title"), state => "done", intro => text("password_set") }
    } else {
        context! {
            title => state.theme.text("revealed_title"),
            state => "password",
            intro => text("revealed_intro"),
            password => redeemed.generated_password,
        }
    };
    page(state, StatusCode::OK, "activate.html", &Chrome::default(), ctx)
}
