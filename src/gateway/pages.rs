//! The pages people reach from emails: one-time links, forgot password, the
//! platform status, and the public keys. Server-rendered (minijinja, HTML
//! auto-escaping); the only script solves the forgot-password captcha.

use axum::{
    Form, Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use minijinja::{Environment, Value, context};
use serde::Deserialize;
use time::{OffsetDateTime, macros::format_description};
use tonic_types::StatusExt;

use super::{GatewayState, client_ip::ClientIp, clients::call};
use crate::{domain::Secret, pb};

pub const CSS: &str = include_str!("assets/style.css");
pub const POW_JS: &str = include_str!("assets/pow.js");

/// Longer tokens are not ours; they are not sent on to the service.
const MAX_TOKEN_LEN: usize = 256;

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn new() -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.add_template("base.html", include_str!("templates/base.html"))?;
        env.add_template("activate.html", include_str!("templates/activate.html"))?;
        env.add_template("forgot.html", include_str!("templates/forgot.html"))?;
        env.add_template("status.html", include_str!("templates/status.html"))?;
        env.add_template("message.html", include_str!("templates/message.html"))?;
        // Inserted verbatim: the Content-Security-Policy names their hashes.
        env.add_global("css", Value::from_safe_string(CSS.to_owned()));
        env.add_global("pow_js", Value::from_safe_string(POW_JS.to_owned()));
        Ok(Self { env })
    }

    fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }
}

fn page(state: &GatewayState, status: StatusCode, name: &str, ctx: Value) -> Response {
    match state.pages.render(name, ctx) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, template = name, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn message(state: &GatewayState, status: StatusCode, title: &str, text: &str) -> Response {
    let error = !status.is_success();
    page(state, status, "message.html", context! { title, message => text, error })
}

fn unavailable(state: &GatewayState, status: &tonic::Status) -> Response {
    tracing::warn!(code = ?status.code(), "a page could not reach the identity service");
    message(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "The service is temporarily unavailable. Please try again in a few minutes.",
    )
}

fn throttled(state: &GatewayState, status: &tonic::Status) -> Response {
    let wait = status.get_error_details().retry_info().and_then(|r| r.retry_delay).map_or(60, |d| d.as_secs().max(1));
    let mut response = message(
        state,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        &format!("Too many attempts. Please try again in {wait} seconds."),
    );
    response.headers_mut().insert(header::RETRY_AFTER, wait.into());
    response
}

fn cross_site_refusal(state: &GatewayState) -> Response {
    message(
        state,
        StatusCode::FORBIDDEN,
        "Request refused",
        "This form was sent from another site. Open the link from your email again and use the button on that page.",
    )
}

pub async fn home(State(state): State<GatewayState>) -> Response {
    page(
        &state,
        StatusCode::OK,
        "message.html",
        context! {
            title => "Identity",
            message => "Forgot your password? Ask for a link to choose a new one.",
            link => "/forgot-password",
            link_text => "Reset my password",
        },
    )
}

pub async fn not_found(State(state): State<GatewayState>) -> Response {
    message(&state, StatusCode::NOT_FOUND, "Not found", "There is no page at this address.")
}

// ---- one-time links -------------------------------------------------------

fn invalid_link(state: &GatewayState) -> Response {
    page(state, StatusCode::NOT_FOUND, "activate.html", context! { title => "Link not valid", state => "invalid" })
}

/// How a page answers a refusal of the service, by its ErrorInfo reason.
enum Refusal {
    /// The one-time link cannot be used (whatever the cause: the page says only that).
    InvalidLink,
    /// A field the person typed is wrong: show the form again with the message.
    BadInput,
    Throttled,
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
        Some(R::InvalidArgument) => Refusal::BadInput,
        Some(R::Throttled) => Refusal::Throttled,
        _ => Refusal::Unavailable,
    }
}

async fn inspect(
    state: &GatewayState,
    client: Option<std::net::IpAddr>,
    token: &str,
) -> Result<pb::InspectActivationResponse, tonic::Status> {
    let request = pb::InspectActivationRequest { token: token.to_owned() };
    Ok(state.clients.reset().inspect_activation(call(request, client, None)).await?.into_inner())
}

fn describe(purpose: pb::ActivationPurpose, requires_new_password: bool) -> (&'static str, &'static str) {
    match (purpose, requires_new_password) {
        (pb::ActivationPurpose::TokenEnrollment, _) => (
            "Support replaced your token. The button shows the new one, once, to add to your authenticator app.",
            "Show my new token",
        ),
        (pb::ActivationPurpose::AdminReset, _) => {
            ("Your administrator reset your password. The button shows the new password, once.", "Show my new password")
        }
        (pb::ActivationPurpose::ForgotPassword, true) => ("You asked to reset your password.", "Choose a new password"),
        (pb::ActivationPurpose::ForgotPassword, false) => {
            ("You asked to reset your password. The button sets a new one and shows it, once.", "Show my new password")
        }
        (_, true) => ("Welcome! This link activates your account.", "Choose my password"),
        (_, false) => ("Welcome! This link activates your account and shows your password, once.", "Show my password"),
    }
}

/// GET (and HEAD): what the link is for, and one button. Never consumes it,
/// so mail scanners and second looks are harmless.
pub async fn activation_page(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    Path(token): Path<String>,
) -> Response {
    if token.len() > MAX_TOKEN_LEN {
        return invalid_link(&state);
    }
    let info = match inspect(&state, client, &token).await {
        Ok(info) if info.valid => info,
        Ok(_) => return invalid_link(&state),
        Err(status) => return unavailable(&state, &status),
    };
    let (purpose, button) = describe(info.purpose(), info.requires_new_password);
    let ctx = context! {
        title => "Your account",
        state => "confirm",
        purpose,
        button,
        token,
        user_login => info.user_login,
        expires_at => info.expires_at.as_ref().map(format_timestamp),
    };
    page(&state, StatusCode::OK, "activate.html", ctx)
}

#[derive(Deserialize)]
pub struct ActivationForm {
    new_password: Option<String>,
    confirm_password: Option<String>,
}

/// POST: the button (redeem, or ask for the new password), or the new-password form.
pub async fn activation_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActivationForm>,
) -> Response {
    if super::same_origin::cross_site(&headers, &state.settings.public_url) {
        return cross_site_refusal(&state);
    }
    if token.len() > MAX_TOKEN_LEN {
        return invalid_link(&state);
    }
    let new_password = form.new_password.map(Secret::new);
    let confirm = form.confirm_password.map(Secret::new);
    if let Some(new_password) = new_password {
        if confirm.as_ref() != Some(&new_password) {
            return choose_form(&state, client, &token, Some("The two passwords are not the same.")).await;
        }
        return redeem(&state, client, &token, new_password).await;
    }
    match inspect(&state, client, &token).await {
        Ok(info) if !info.valid => invalid_link(&state),
        Ok(info) if info.requires_new_password => choose_form(&state, client, &token, None).await,
        Ok(_) => redeem(&state, client, &token, Secret::default()).await,
        Err(status) => unavailable(&state, &status),
    }
}

async fn choose_form(
    state: &GatewayState,
    client: Option<std::net::IpAddr>,
    token: &str,
    error: Option<&str>,
) -> Response {
    let info = match inspect(state, client, token).await {
        Ok(info) if info.valid => info,
        Ok(_) => return invalid_link(state),
        Err(status) => return unavailable(state, &status),
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    if !info.requires_new_password {
        // The service generates this link's password: offer the button that shows it.
        // A refusal here can only be a password posted to it: say so in a person's words.
        let error = error
            .map(|_| "This link does not take a password: the service made one for you. Press the button to see it.");
        let (purpose, button) = describe(info.purpose(), false);
        let ctx = context! {
            title => "Your account",
            state => "confirm",
            purpose,
            button,
            token,
            error,
            user_login => info.user_login,
            expires_at => info.expires_at.as_ref().map(format_timestamp),
        };
        return page(state, status, "activate.html", ctx);
    }
    let ctx = context! {
        title => "Choose a password",
        state => "choose",
        token,
        error,
        user_login => info.user_login,
        rules => info.password_rules,
    };
    page(state, status, "activate.html", ctx)
}

async fn redeem(state: &GatewayState, client: Option<std::net::IpAddr>, token: &str, new_password: Secret) -> Response {
    let request = pb::RedeemActivationRequest { token: token.to_owned(), new_password: new_password.into_exposed() };
    match state.clients.reset().redeem_activation(call(request, client, None)).await {
        Ok(response) => {
            let redeemed = response.into_inner();
            // A generated password is shown whenever one comes back: it exists nowhere else.
            if !redeemed.otpauth_uri.is_empty() {
                // The QR code is the service's own SVG (from the RPC), not user input.
                let ctx = context! {
                    title => "Your new token",
                    state => "token",
                    user_login => redeemed.user_login,
                    otpauth_uri => redeemed.otpauth_uri,
                    qr_svg => minijinja::Value::from_safe_string(redeemed.qr_code_svg),
                };
                page(state, StatusCode::OK, "activate.html", ctx)
            } else if redeemed.generated_password.is_empty() {
                let ctx = context! { title => "Password set", state => "done", user_login => redeemed.user_login };
                page(state, StatusCode::OK, "activate.html", ctx)
            } else {
                let ctx = context! {
                    title => "Your new password",
                    state => "password",
                    user_login => redeemed.user_login,
                    password => redeemed.generated_password,
                };
                page(state, StatusCode::OK, "activate.html", ctx)
            }
        }
        Err(status) => match refusal(&status) {
            Refusal::InvalidLink => invalid_link(state),
            Refusal::BadInput => choose_form(state, client, token, Some(status.message())).await,
            Refusal::Throttled => throttled(state, &status),
            Refusal::Unavailable => unavailable(state, &status),
        },
    }
}

// ---- forgot password ------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ForgotForm {
    user_login: String,
    email: String,
    challenge: String,
    nonce: String,
}

async fn forgot_form(
    state: &GatewayState,
    client: Option<std::net::IpAddr>,
    status_code: StatusCode,
    user_login: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let request = pb::GetCaptchaChallengeRequest {};
    let challenge = match state.clients.reset().get_captcha_challenge(call(request, client, None)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return unavailable(state, &status),
    };
    let ctx = context! {
        title => "Forgot your password?",
        state => "form",
        challenge => challenge.challenge,
        bits => challenge.difficulty_bits,
        user_login,
        email,
        error,
    };
    page(state, status_code, "forgot.html", ctx)
}

pub async fn forgot_page(State(state): State<GatewayState>, ClientIp(client): ClientIp) -> Response {
    forgot_form(&state, client, StatusCode::OK, "", "", None).await
}

/// The same confirmation whatever the outcome; only the email differs.
pub async fn forgot_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<ForgotForm>,
) -> Response {
    if super::same_origin::cross_site(&headers, &state.settings.public_url) {
        return cross_site_refusal(&state);
    }
    let request = pb::RequestPasswordResetRequest {
        user_login: form.user_login.trim().to_owned(),
        email: form.email.trim().to_owned(),
        captcha: Some(pb::CaptchaSolution { challenge: form.challenge, nonce: form.nonce.trim().to_owned() }),
    };
    match state.clients.reset().request_password_reset(call(request, client, None)).await {
        Ok(response) => {
            let ctx =
                context! { title => "Check your email", state => "done", message => response.into_inner().message };
            page(&state, StatusCode::OK, "forgot.html", ctx)
        }
        Err(status) => match refusal(&status) {
            Refusal::BadInput => {
                let error = format!("{} Please try again.", status.message());
                forgot_form(&state, client, StatusCode::BAD_REQUEST, &form.user_login, &form.email, Some(&error)).await
            }
            Refusal::Throttled => throttled(&state, &status),
            Refusal::InvalidLink | Refusal::Unavailable => unavailable(&state, &status),
        },
    }
}

// ---- status and keys ------------------------------------------------------

#[derive(serde::Serialize)]
struct ComponentRow {
    name: String,
    state: String,
    detail: String,
}

/// The platform status from `Platform.GetStatus`; while that answers
/// UNIMPLEMENTED (or cannot be reached), the gateway's own health and the
/// gRPC health service's answer.
pub async fn status_page(State(state): State<GatewayState>, ClientIp(client): ClientIp) -> Response {
    let checked_at = format_time(state.settings.clock.now());
    match state.clients.platform().get_status(call(pb::GetStatusRequest {}, client, None)).await {
        Ok(response) => {
            let status = response.into_inner();
            let overall = status.overall();
            let components: Vec<ComponentRow> = status
                .components
                .iter()
                .map(|c| ComponentRow { name: c.name.clone(), state: state_name(c.state()), detail: c.detail.clone() })
                .collect();
            let maintenance: Vec<Value> = status
                .maintenance_windows
                .iter()
                .map(|m| {
                    context! {
                        title => m.title,
                        start => m.start_time.as_ref().map(format_timestamp),
                        end => m.end_time.as_ref().map(format_timestamp),
                        components => m.components.join(", "),
                    }
                })
                .collect();
            let healthy = overall == pb::ComponentState::Operational;
            let ctx = context! {
                title => "Platform status",
                overall => overall_text(healthy),
                platform => status.platform.map(|p| p.id),
                components,
                maintenance,
                checked_at => status.checked_at.as_ref().map(format_timestamp).unwrap_or(checked_at),
            };
            page(&state, if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, "status.html", ctx)
        }
        Err(_) => fallback_status(&state, checked_at).await,
    }
}

/// The same status as `/status`, for monitors: component states as the
/// proto spells them (`COMPONENT_STATE_OPERATIONAL`, …), times in RFC 3339.
pub async fn status_json(State(state): State<GatewayState>, ClientIp(client): ClientIp) -> Response {
    let stamp = |ts: &Option<prost_types::Timestamp>| {
        ts.as_ref()
            .and_then(|ts| OffsetDateTime::from_unix_timestamp(ts.seconds).ok())
            .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
    };
    match state.clients.platform().get_status(call(pb::GetStatusRequest {}, client, None)).await {
        Ok(response) => {
            let status = response.into_inner();
            let body = serde_json::json!({
                "platform": status.platform.as_ref().map(|p| serde_json::json!({
                    "id": p.id, "code": p.code, "login_url": p.login_url, "api_url": p.api_url,
                })),
                "overall": status.overall().as_str_name(),
                "components": status.components.iter().map(|c| serde_json::json!({
                    "name": c.name, "state": c.state().as_str_name(), "detail": c.detail,
                })).collect::<Vec<_>>(),
                "maintenance_windows": status.maintenance_windows.iter().map(|m| serde_json::json!({
                    "id": m.id, "title": m.title, "start_time": stamp(&m.start_time),
                    "end_time": stamp(&m.end_time), "components": m.components,
                })).collect::<Vec<_>>(),
                "checked_at": stamp(&status.checked_at),
            });
            let code = if status.overall() == pb::ComponentState::Operational {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (code, Json(body)).into_response()
        }
        Err(error) => {
            let body = serde_json::json!({
                "overall": pb::ComponentState::Outage.as_str_name(),
                "error": format!("the identity service cannot be reached ({:?})", error.code()),
            });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn fallback_status(state: &GatewayState, checked_at: String) -> Response {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let answer = state.clients.health().check(HealthCheckRequest { service: String::new() }).await;
    let (healthy, detail) = match answer.map(|r| r.into_inner().status()) {
        Ok(ServingStatus::Serving) => (true, "answering, database reachable".to_owned()),
        Ok(other) => (false, format!("health check says {}", other.as_str_name())),
        Err(status) => (false, format!("cannot be reached ({:?})", status.code())),
    };
    let components = vec![
        ComponentRow { name: "gateway".into(), state: "Operational".into(), detail: "answering".into() },
        ComponentRow {
            name: "identity service".into(),
            state: if healthy { "Operational" } else { "Outage" }.into(),
            detail,
        },
    ];
    let ctx = context! {
        title => "Platform status",
        overall => overall_text(healthy),
        components,
        checked_at,
    };
    page(state, if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, "status.html", ctx)
}

fn overall_text(healthy: bool) -> &'static str {
    if healthy { "All systems operational." } else { "Some components have problems." }
}

fn state_name(state: pb::ComponentState) -> String {
    match state {
        pb::ComponentState::Operational => "Operational",
        pb::ComponentState::Degraded => "Degraded",
        pb::ComponentState::Outage => "Outage",
        pb::ComponentState::Maintenance => "Maintenance",
        pb::ComponentState::Unspecified => "Unknown",
    }
    .to_owned()
}

/// `/.well-known/jwks.json`: the RFC 7517 key set from `Auth.GetJwks`.
pub async fn jwks(State(state): State<GatewayState>, ClientIp(client): ClientIp) -> Response {
    match state.clients.auth().get_jwks(call(pb::GetJwksRequest {}, client, None)).await {
        Ok(response) => {
            let keys: Vec<serde_json::Value> = response
                .into_inner()
                .keys
                .into_iter()
                .map(|k| serde_json::json!({ "kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid, "alg": k.alg, "use": k.r#use }))
                .collect();
            // Short: keys rotate, and a new kid must be seen soon.
            ([(header::CACHE_CONTROL, "public, max-age=60")], Json(serde_json::json!({ "keys": keys }))).into_response()
        }
        Err(status) => {
            tracing::warn!(code = ?status.code(), "cannot read the JWKS");
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "error": "temporarily unavailable" })))
                .into_response()
        }
    }
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

    #[test]
    fn every_page_renders_and_escapes() {
        let templates = Templates::new().unwrap();
        let html = templates
            .render("activate.html", context! { title => "T", state => "confirm", purpose => "p", button => "b", token => "tok", user_login => "<x>" })
            .unwrap();
        assert!(html.contains("action=\"/activate/tok\""), "{html}");
        assert!(html.contains("&lt;x&gt;"), "{html}");
        assert!(html.contains(&format!("<style>{CSS}</style>")), "the CSS is verbatim, as hashed");
        let html = templates.render("activate.html", context! { title => "T", state => "invalid" }).unwrap();
        assert!(html.contains("The activation key is not valid") && html.contains("href=\"/forgot-password\""));
        let html = templates
            .render(
                "activate.html",
                context! { title => "T", state => "choose", token => "t", rules => vec!["12 characters"] },
            )
            .unwrap();
        assert!(html.contains("confirm_password") && html.contains("<li>12 characters</li>"), "{html}");
        let html = templates
            .render("forgot.html", context! { title => "T", state => "form", challenge => "v1.x", bits => 8 })
            .unwrap();
        assert!(html.contains(&format!("<script>{POW_JS}</script>")), "the script is verbatim, as hashed");
        assert!(html.contains("data-challenge=\"v1.x\""), "{html}");
        templates
            .render(
                "status.html",
                context! { title => "T", overall => "ok", components => Vec::<Value>::new(), checked_at => "now" },
            )
            .unwrap();
        templates.render("message.html", context! { title => "T", message => "m" }).unwrap();
    }
}
