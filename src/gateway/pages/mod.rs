//! The pages people use: sign-in and their own account, the pages reached
//! from emails (one-time links, forgot password), which platform, the status
//! and the public keys. Server-rendered (minijinja, HTML auto-escaping, the
//! words from the theme's message catalogue); each page is a few gRPC calls
//! and decides nothing itself.

mod account;
mod forgot;
mod info;
mod links;
mod signin;
mod users;
mod users_actions;

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use minijinja::{Value, context};
use time::{OffsetDateTime, macros::format_description};
use tonic_types::StatusExt;

pub use self::{
    account::{account_page, change_login_page, change_login_submit, change_password_page, change_password_submit},
    forgot::{forgot_page, forgot_submit},
    info::{home, jwks, not_found, platform_page, status_json, status_page},
    links::{activation_page, activation_submit},
    signin::{login_page, login_submit, logout, new_pin_submit, passcode_submit, securid_page},
    users::{audit_page, user_page, users_page},
    users_actions::{
        delete_confirm, delete_submit, new_user_page, new_user_submit, pin_confirm, pin_submit, reset_confirm,
        reset_submit, status_submit, token_confirm, token_submit, units_page, units_submit, update_submit,
    },
};
use super::{
    GatewayState,
    session::{BrowserSession, Csrf},
};
use crate::pb;

/// What every page's layout needs beyond its own context: who is signed in.
#[derive(Default)]
pub struct Chrome {
    pub signed_in: Option<BrowserSession>,
}

impl Chrome {
    pub fn signed_in(session: &BrowserSession) -> Self {
        Self { signed_in: Some(session.clone()) }
    }
}

fn page(state: &GatewayState, status: StatusCode, name: &str, chrome: &Chrome, ctx: Value) -> Response {
    let signed_in_as =
        chrome.signed_in.as_ref().map(|s| state.theme.text_with("signed_in_as", &[("login", &s.user_login)]));
    let nav = chrome.signed_in.as_ref().and_then(|s| s.nav).unwrap_or_default();
    let layout = context! {
        signed_in => chrome.signed_in.is_some(),
        nav_users => nav.users,
        nav_audit => nav.audit,
        signed_in_as,
    };
    match state.theme.render(name, context! { ..ctx, ..layout }) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, template = name, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A page that says one thing, under a title, both from the catalogue.
fn message(state: &GatewayState, status: StatusCode, title_key: &str, text_key: &str) -> Response {
    message_text(state, status, title_key, &state.theme.text(text_key))
}

fn message_text(state: &GatewayState, status: StatusCode, title_key: &str, text: &str) -> Response {
    let error = !status.is_success();
    let ctx = context! { title => state.theme.text(title_key), message => text, error };
    page(state, status, "message.html", &Chrome::default(), ctx)
}

fn unavailable(state: &GatewayState, status: &tonic::Status) -> Response {
    tracing::warn!(code = ?status.code(), "a page could not reach the identity service");
    message(state, StatusCode::SERVICE_UNAVAILABLE, "unavailable_title", "unavailable")
}

fn throttled(state: &GatewayState, status: &tonic::Status) -> Response {
    let wait = status.get_error_details().retry_info().and_then(|r| r.retry_delay).map_or(60, |d| d.as_secs().max(1));
    let text = state.theme.text_with("throttled", &[("seconds", &wait.to_string())]);
    let mut response = message_text(state, StatusCode::TOO_MANY_REQUESTS, "throttled_title", &text);
    response.headers_mut().insert(header::RETRY_AFTER, wait.into());
    response
}

/// Refuses a form post that another site made the browser send, or whose
/// anti-forgery token is missing or wrong. `csrf` None: a form whose URL
/// holds a secret of its own (one-time links) or that no session backs
/// (forgot password), where the origin check is the protection.
fn refuse_forged(state: &GatewayState, headers: &HeaderMap, csrf: Option<&str>) -> Option<Response> {
    if super::same_origin::cross_site(headers, &state.settings.public_url) {
        return Some(message(state, StatusCode::FORBIDDEN, "refused_title", "cross_site"));
    }
    match csrf.map(|token| state.cookies.check_csrf(headers, token)) {
        None | Some(Csrf::Valid) => None,
        Some(Csrf::NoCookie) => Some(cookies_refused(state)),
        Some(Csrf::Mismatch) => Some(message(state, StatusCode::FORBIDDEN, "refused_title", "form_expired")),
    }
}

/// The seeds' page for a browser that sends back no cookie.
fn cookies_refused(state: &GatewayState) -> Response {
    let ctx = context! {
        title => state.theme.text("cookies_title"),
        message => state.theme.text("cookies_help"),
        error => true,
        link => "/login",
        link_text => state.theme.text("try_again"),
    };
    page(state, StatusCode::BAD_REQUEST, "message.html", &Chrome::default(), ctx)
}

/// A 303 to `to`, with cookies to set.
fn see_other(to: &str, cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    let mut response = Redirect::to(to).into_response();
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn with_cookies(mut response: Response, cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// How a page answers a refusal of the service, by its ErrorInfo reason.
enum Refusal {
    /// The one-time link cannot be used (whatever the cause: the page says only that).
    InvalidLink,
    /// A field the person typed is wrong: show the form again with the message.
    BadInput,
    Throttled,
    /// The caller's session is gone: sign in again.
    SignedOut,
    /// Anything else, including the transport's own statuses.
    Unavailable,
}

fn refusal(status: &tonic::Status) -> Refusal {
    use pb::ErrorReason as R;
    match crate::grpc::status::error_reason(status) {
        Some(
            R::ActivationKeyUnknown
            | R::ActivationKeyUsed
            | R::ActivationKeyExpired
            | R::ActivationKeySuperseded
            | R::ActivationAccountUnavailable,
        ) => Refusal::InvalidLink,
        Some(R::InvalidArgument | R::AlreadyExists | R::PinRejected) => Refusal::BadInput,
        Some(R::Throttled) => Refusal::Throttled,
        Some(R::Unauthenticated) => Refusal::SignedOut,
        _ => Refusal::Unavailable,
    }
}

/// A refused field in a person's words: the catalogue's name of the field
/// (`subject_<field>`) and the service's description of what is wrong, as one
/// sentence, then "Please try again.".
fn refused_text(state: &GatewayState, status: &tonic::Status) -> String {
    let details = status.get_error_details();
    let violation = details.bad_request().and_then(|b| b.field_violations.first());
    let sentence = match violation {
        Some(v) => {
            let key = format!("subject_{}", v.field);
            let subject = state.theme.text(&key);
            if subject == key {
                capitalized(&format!("{} {}", v.field.replace('_', " "), v.description))
            } else {
                format!("{subject} {}", v.description)
            }
        }
        None => capitalized(status.message()),
    };
    let sentence = sentence.trim_end();
    let stop = if sentence.ends_with(['.', '!', '?']) { "" } else { "." };
    format!("{sentence}{stop} {}", state.theme.text("try_again_suffix"))
}

fn capitalized(text: &str) -> String {
    let mut chars = text.trim().chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The form field a refusal names (BadRequest), when it names one.
fn refused_field(status: &tonic::Status) -> Option<String> {
    status.get_error_details().bad_request().and_then(|b| b.field_violations.first()).map(|v| v.field.clone())
}

/// A fresh captcha challenge for a form: (challenge, difficulty bits).
async fn captcha(state: &GatewayState, client: Option<std::net::IpAddr>) -> Result<(String, u32), tonic::Status> {
    let request = super::clients::call(pb::GetCaptchaChallengeRequest {}, client, None);
    let challenge = state.clients.reset().get_captcha_challenge(request).await?.into_inner();
    Ok((challenge.challenge, challenge.difficulty_bits))
}

/// The solution a captcha form sent: the script's nonce, or the one typed by hand.
fn captcha_solution(challenge: String, nonce: &str, typed: &str) -> pb::CaptchaSolution {
    let nonce = if nonce.trim().is_empty() { typed } else { nonce };
    pb::CaptchaSolution { challenge, nonce: nonce.trim().to_owned() }
}

fn format_timestamp(ts: &prost_types::Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp(ts.seconds).map(format_time).unwrap_or_default()
}

fn format_time(at: OffsetDateTime) -> String {
    at.format(format_description!("[year]-[month]-[day] [hour]:[minute]")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::theme::Theme;

    #[test]
    fn every_page_renders_and_escapes() {
        let theme = Theme::load(None).unwrap();
        let html = theme
            .render(
                "activate.html",
                context! { title => "T", state => "confirm", purpose => "p", button => "b", token => "tok", account => "<x>" },
            )
            .unwrap();
        assert!(html.contains("action=\"/activate/tok\""), "{html}");
        assert!(html.contains("&lt;x&gt;"), "{html}");
        let html =
            theme.render("activate.html", context! { title => "T", state => "invalid", offer_forgot => true }).unwrap();
        assert!(html.contains("The activation key is not valid") && html.contains("href=\"/forgot-password\""));
        let html = theme
            .render(
                "activate.html",
                context! { title => "T", state => "choose", token => "t", rules => vec!["12 characters"], challenge => "v1.x", bits => 8 },
            )
            .unwrap();
        assert!(html.contains("confirm_password") && html.contains("<li>12 characters</li>"), "{html}");
        assert!(html.contains("data-challenge=\"v1.x\""), "{html}");
        let user = context! { user_login => "u", email => "e", role => "Reader", status => "Active" };
        let html = theme.render("account.html", context! { title => "T", user }).unwrap();
        assert!(html.contains("<strong>u</strong>"), "{html}");
        let row = context! { user_login => "a_b", href => "/users/u/a_b", name => "<n>", status_value => "USER_STATUS_ACTIVE" };
        let html = theme
            .render(
                "users.html",
                context! { title => "T", wide => true, users => vec![row.clone()], units => Vec::<String>::new(), next_href => "/users?page=x" },
            )
            .unwrap();
        assert!(
            html.contains("class=\"wide\"") && html.contains("&lt;n&gt;") && html.contains("id=\"next-page\""),
            "{html}"
        );
        let offer = context! { reset_password => true, delete => false };
        let html =
            theme.render("user.html", context! { title => "T", user => row, offer, trail => Value::from(()) }).unwrap();
        assert!(
            html.contains("id=\"change-password\"") && !html.contains("id=\"delete\""),
            "only what is offered: {html}"
        );
        for name in [
            "login.html",
            "securid.html",
            "change_password.html",
            "change_login.html",
            "platform.html",
            "signed_out.html",
            "status.html",
            "message.html",
            "forgot.html",
            "confirm.html",
            "reset_results.html",
            "token_assigned.html",
            "user_new.html",
            "units.html",
            "audit.html",
        ] {
            let html = theme.render(name, context! { title => "T", state => "form", challenge => "c", bits => 1, components => Vec::<Value>::new(), form => context! {}, units => Vec::<String>::new() }).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(html.contains("<script>") && html.contains("<style>"), "{name}");
        }
    }
}
