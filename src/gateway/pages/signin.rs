//! Signing in and out: the login page, the SecurID page (passcode, then a new
//! PIN when the service asks for one) and logout. The session is the
//! service's; the browser holds it in a sealed cookie (`session.rs`).

use axum::{
    Form,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use minijinja::context;
use serde::Deserialize;

use super::{Chrome, Refusal, page, refusal, refuse_forged, see_other, throttled, unavailable};
use crate::{
    gateway::{
        GatewayState,
        client_ip::ClientIp,
        clients::call,
        session::{BrowserSession, CHALLENGE, Nav, PendingChallenge, SESSION},
    },
    pb::{self, login_response, submit_passcode_response},
};

/// A signed-in request: the session (refreshed when it had to be) and the
/// cookies the response must carry.
pub(super) struct SignedIn {
    pub session: BrowserSession,
    pub csrf_token: String,
    pub cookies: Vec<HeaderValue>,
}

impl SignedIn {
    pub fn chrome(&self) -> Chrome {
        Chrome::signed_in(&self.session)
    }

    pub fn bearer(&self) -> Option<&str> {
        Some(&self.session.access_token)
    }

    /// `response` with this request's cookies, whatever the page says: a
    /// refreshed session that never reached the browser would have it present
    /// a spent refresh token next time (a replay, which ends the session).
    /// Not when the response ends the session itself.
    pub fn respond(self, response: Response) -> Response {
        let ends_session = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|cookie| cookie.to_str().is_ok_and(|c| c.contains(&format!("{SESSION}="))));
        if ends_session { response } else { super::with_cookies(response, self.cookies) }
    }
}

fn now(state: &GatewayState) -> i64 {
    state.settings.clock.now().unix_timestamp()
}

/// The signed-in browser behind a request, or the response that sends it to
/// sign in: no cookie, a session past its idle or absolute lifetime, or one
/// the service no longer refreshes.
pub(super) async fn require_session(
    state: &GatewayState,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
) -> Result<SignedIn, Response> {
    let now = now(state);
    let Some(mut session) = state.cookies.read::<BrowserSession>(headers, SESSION) else {
        return Err(see_other("/login", []));
    };
    if session.ended(now, &state.settings.limits) {
        revoke(state, client, &session).await;
        return Err(session_ended(state));
    }
    let mut cookies = Vec::new();
    let refreshed = session.needs_refresh(now);
    if refreshed {
        let request = pb::RefreshRequest { refresh_token: session.refresh_token.clone() };
        match state.clients.auth().refresh(call(request, client, None)).await {
            Ok(response) => match response.into_inner().session {
                Some(fresh) => {
                    session.access_token = fresh.access_token;
                    session.refresh_token = fresh.refresh_token;
                    session.access_expires_at = fresh.expires_at.map_or(now, |t| t.seconds);
                }
                None => return Err(session_ended(state)),
            },
            Err(status) => {
                return Err(match refusal(&status) {
                    Refusal::SignedOut | Refusal::BadInput | Refusal::InvalidLink => session_ended(state),
                    Refusal::Throttled => throttled(state, &status),
                    Refusal::Unavailable => unavailable(state, &status),
                });
            }
        }
    }
    let asked = if refreshed || session.nav.is_none() { ask_nav(state, client, &mut session).await } else { false };
    if refreshed || asked || session.stale_seen(now) {
        session.seen_at = now;
        cookies.push(session_cookie(state, &session));
    }
    let (csrf_token, csrf_cookie) = state.cookies.csrf_token(headers);
    cookies.extend(csrf_cookie);
    Ok(SignedIn { session, csrf_token, cookies })
}

/// Asks the service which sections the navigation offers; true when it
/// answered. A failure leaves the menu to the person's own account this time.
async fn ask_nav(state: &GatewayState, client: Option<std::net::IpAddr>, session: &mut BrowserSession) -> bool {
    let request = call(pb::GetCapabilitiesRequest {}, client, Some(&session.access_token));
    match state.clients.users().get_capabilities(request).await {
        Ok(response) => {
            let allowed = response.into_inner();
            session.nav = Some(Nav { users: allowed.administers_users, audit: allowed.reads_audit_log });
            true
        }
        Err(status) => {
            tracing::info!(code = ?status.code(), "the navigation's capabilities are unavailable");
            false
        }
    }
}

/// A cookie that ends with the browser (no `Max-Age`): on a shared computer the
/// next person does not find the session; the lifetimes are checked on its clocks.
fn session_cookie(state: &GatewayState, session: &BrowserSession) -> HeaderValue {
    state.cookies.write(SESSION, session, None)
}

/// Ends the service's session behind the cookie. Logout needs a live access
/// token, and the cookie's has often expired by the time a person signs out
/// (or the idle limit ends the session): it is refreshed first. A failure only
/// logs: the cookie goes anyway.
async fn revoke(state: &GatewayState, client: Option<std::net::IpAddr>, session: &BrowserSession) {
    let mut access_token = session.access_token.clone();
    if session.needs_refresh(now(state)) {
        let request = pb::RefreshRequest { refresh_token: session.refresh_token.clone() };
        match state.clients.auth().refresh(call(request, client, None)).await {
            Ok(response) => match response.into_inner().session {
                Some(fresh) => access_token = fresh.access_token,
                None => return,
            },
            Err(status) => {
                tracing::info!(code = ?status.code(), "sign-out: the service's session had already ended");
                return;
            }
        }
    }
    let request = call(pb::LogoutRequest {}, client, Some(&access_token));
    if let Err(status) = state.clients.auth().logout(request).await {
        tracing::warn!(code = ?status.code(), "sign-out: the service's session could not be ended");
    }
}

/// Back to the login page, saying the session ended; the cookie goes.
pub(super) fn session_ended(state: &GatewayState) -> Response {
    see_other("/login?m=ended", [state.cookies.clear(SESSION)])
}

// ---- the login page ---------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginQuery {
    /// Why the person is here again: `ended` (session over), `challenge`
    /// (second factor too slow). Words only, never a secret.
    m: String,
}

pub async fn login_page(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    if state.cookies.read::<BrowserSession>(&headers, SESSION).is_some() && query.m.is_empty() {
        return see_other("/account", []);
    }
    let notice = match query.m.as_str() {
        "ended" => Some(state.theme.text("session_ended")),
        "challenge" => Some(state.theme.text("challenge_expired")),
        _ => None,
    };
    login_form(&state, &headers, StatusCode::OK, "", notice, None)
}

/// The login form; a browser without an anti-forgery cookie gets one (which
/// is also how a refused cookie is noticed at the post).
fn login_form(
    state: &GatewayState,
    headers: &HeaderMap,
    status: StatusCode,
    user_login: &str,
    notice: Option<String>,
    error: Option<(String, Option<String>)>,
) -> Response {
    let (csrf_token, cookie) = state.cookies.csrf_token(headers);
    let (error, error_help) = error.unzip();
    let ctx = context! {
        title => state.theme.text("signin_title"),
        csrf_token,
        user_login,
        notice,
        error,
        error_help => error_help.flatten(),
    };
    super::with_cookies(page(state, status, "login.html", &Chrome::default(), ctx), cookie)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    csrf: String,
    user_login: String,
    password: String,
}

pub async fn login_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Some(refused) = refuse_forged(&state, &headers, Some(&form.csrf)) {
        return refused;
    }
    // Signing in again replaces this browser's session: the old one ends at the service too.
    if let Some(previous) = state.cookies.read::<BrowserSession>(&headers, SESSION) {
        revoke(&state, client, &previous).await;
    }
    let request = pb::LoginRequest { user_login: form.user_login.clone(), password: form.password };
    match state.clients.auth().login(call(request, client, None)).await {
        Ok(response) => match response.into_inner().result {
            Some(login_response::Result::Session(session)) => signed_in(&state, session),
            Some(login_response::Result::Challenge(challenge)) => {
                to_second_factor(&state, challenge, &form.user_login, "/login/securid")
            }
            None => unavailable(&state, &tonic::Status::internal("a login answered nothing")),
        },
        Err(status) => login_refused(&state, &headers, &form.user_login, &status),
    }
}

/// The login page again, saying why in the seeds' words.
fn login_refused(state: &GatewayState, headers: &HeaderMap, user_login: &str, status: &tonic::Status) -> Response {
    use pb::ErrorReason as R;
    let t = |key: &str| state.theme.text(key);
    let (code, error, help) = match crate::grpc::status::error_reason(status) {
        Some(R::InvalidCredentials | R::InvalidArgument) => {
            (StatusCode::UNAUTHORIZED, t("invalid_credentials"), Some(t("invalid_credentials_help")))
        }
        Some(R::AccountPendingActivation) => (StatusCode::FORBIDDEN, t("account_pending"), Some(t("only_user_hint"))),
        Some(R::AccountInactive) => (StatusCode::FORBIDDEN, t("account_inactive"), Some(t("only_user_hint"))),
        Some(R::Throttled) => return throttled(state, status),
        _ => return unavailable(state, status),
    };
    login_form(state, headers, code, user_login, None, Some((error, help)))
}

/// A new session: a new session cookie and a new anti-forgery token (nothing
/// of the signed-out browser carries over), then the account page.
fn signed_in(state: &GatewayState, session: pb::Session) -> Response {
    let now = now(state);
    let browser = BrowserSession {
        access_token: session.access_token,
        refresh_token: session.refresh_token,
        access_expires_at: session.expires_at.map_or(now, |t| t.seconds),
        signed_in_at: now,
        seen_at: now,
        user_login: session.user_login,
        nav: None,
    };
    let (_, csrf) = state.cookies.new_csrf_token();
    let cookies = [Some(session_cookie(state, &browser)), csrf, Some(state.cookies.clear(CHALLENGE))];
    see_other("/account", cookies.into_iter().flatten())
}

fn to_second_factor(state: &GatewayState, challenge: pb::Challenge, user_login: &str, to: &str) -> Response {
    let pending = PendingChallenge {
        new_pin: challenge.kind() == pb::ChallengeKind::NewPin,
        tokencode_only: challenge.tokencode_only,
        challenge_id: challenge.challenge_id,
        user_login: user_login.to_owned(),
    };
    see_other(to, [state.cookies.write_challenge(&pending)])
}

// ---- SecurID -----------------------------------------------------------------

fn securid_form(
    state: &GatewayState,
    headers: &HeaderMap,
    pending: &PendingChallenge,
    status: StatusCode,
    error: Option<(&str, &str)>,
) -> Response {
    let t = |key: &str| state.theme.text(key);
    let (csrf_token, cookie) = state.cookies.csrf_token(headers);
    let (prompt, passcode_label) = if pending.tokencode_only {
        (t("securid_tokencode_only"), t("field_tokencode"))
    } else {
        (t("securid_pin_and_tokencode"), t("field_passcode"))
    };
    let title = if pending.new_pin { t("new_pin_title") } else { t("securid_title") };
    let ctx = context! {
        title,
        csrf_token,
        new_pin => pending.new_pin,
        prompt,
        passcode_label,
        securid_for => state.theme.text_with("securid_for", &[("login", &pending.user_login)]),
        error => error.map(|(e, _)| t(e)),
        error_help => error.map(|(_, h)| t(h)),
    };
    super::with_cookies(page(state, status, "securid.html", &Chrome::default(), ctx), cookie)
}

fn pending(state: &GatewayState, headers: &HeaderMap) -> Option<PendingChallenge> {
    state.cookies.read::<PendingChallenge>(headers, CHALLENGE)
}

/// A second-factor step without its cookie: the sign-in took too long (or started elsewhere).
fn challenge_gone() -> Response {
    see_other("/login?m=challenge", [])
}

pub async fn securid_page(State(state): State<GatewayState>, headers: HeaderMap) -> Response {
    match pending(&state, &headers) {
        Some(pending) => securid_form(&state, &headers, &pending, StatusCode::OK, None),
        None => challenge_gone(),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasscodeForm {
    csrf: String,
    passcode: String,
}

pub async fn passcode_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<PasscodeForm>,
) -> Response {
    if let Some(refused) = refuse_forged(&state, &headers, Some(&form.csrf)) {
        return refused;
    }
    let Some(pending) = pending(&state, &headers) else {
        return challenge_gone();
    };
    let request = pb::SubmitPasscodeRequest {
        challenge_id: pending.challenge_id.clone(),
        passcode: form.passcode.trim().to_owned(),
    };
    match state.clients.auth().submit_passcode(call(request, client, None)).await {
        Ok(response) => match response.into_inner().result {
            Some(submit_passcode_response::Result::Session(session)) => signed_in(&state, session),
            Some(submit_passcode_response::Result::Challenge(challenge)) => {
                to_second_factor(&state, challenge, &pending.user_login, "/login/securid")
            }
            None => unavailable(&state, &tonic::Status::internal("a passcode answered nothing")),
        },
        Err(status) => second_factor_refused(&state, &headers, &pending, &status),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewPinForm {
    csrf: String,
    pin: String,
    confirm_pin: String,
}

pub async fn new_pin_submit(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<NewPinForm>,
) -> Response {
    if let Some(refused) = refuse_forged(&state, &headers, Some(&form.csrf)) {
        return refused;
    }
    let Some(pending) = pending(&state, &headers) else {
        return challenge_gone();
    };
    if form.pin != form.confirm_pin {
        return securid_form(
            &state,
            &headers,
            &pending,
            StatusCode::BAD_REQUEST,
            Some(("pins_differ", "pin_guidelines")),
        );
    }
    let request = pb::SetNewPinRequest { challenge_id: pending.challenge_id.clone(), pin: form.pin };
    match state.clients.auth().set_new_pin(call(request, client, None)).await {
        Ok(response) => match response.into_inner().session {
            Some(session) => signed_in(&state, session),
            None => unavailable(&state, &tonic::Status::internal("a new PIN answered no session")),
        },
        Err(status) => second_factor_refused(&state, &headers, &pending, &status),
    }
}

fn second_factor_refused(
    state: &GatewayState,
    headers: &HeaderMap,
    pending: &PendingChallenge,
    status: &tonic::Status,
) -> Response {
    use pb::ErrorReason as R;
    let error = match crate::grpc::status::error_reason(status) {
        Some(R::InvalidPasscode) => ("invalid_passcode", "invalid_passcode_help"),
        Some(R::PinRejected) => ("pin_rejected", "pin_guidelines"),
        Some(R::WrongChallenge | R::InvalidArgument) => ("invalid_request", "invalid_request_help"),
        Some(R::Unauthenticated) => {
            return see_other("/login?m=challenge", [state.cookies.clear(CHALLENGE)]);
        }
        Some(R::AccountInactive | R::AccountPendingActivation) => {
            return super::message(state, StatusCode::FORBIDDEN, "signin_title", "account_inactive");
        }
        Some(R::Throttled) => return throttled(state, status),
        _ => return unavailable(state, status),
    };
    let code = if error.0 == "invalid_passcode" { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_REQUEST };
    securid_form(state, headers, pending, code, Some(error))
}

// ---- sign out ------------------------------------------------------------------

/// Ends the service's session, then everything the browser holds of it:
/// the cookies, and (`Clear-Site-Data`) its cache and storage, so the back
/// button shows nothing private.
pub async fn logout(State(state): State<GatewayState>, ClientIp(client): ClientIp, headers: HeaderMap) -> Response {
    // No anti-forgery token: a stale one (an old tab) must not keep a person
    // signed in against their will. Only another site's post is refused, and a
    // forged sign-out would be a nuisance, not a breach.
    if let Some(refused) = refuse_forged(&state, &headers, None) {
        return refused;
    }
    if let Some(session) = state.cookies.read::<BrowserSession>(&headers, SESSION) {
        revoke(&state, client, &session).await;
    }
    signed_out(&state, &state.theme.text("signed_out"))
}

/// The signed-out page.
pub(super) fn signed_out(state: &GatewayState, text: &str) -> Response {
    let ctx = context! { title => state.theme.text("signed_out_title"), message => text };
    forget_browser(state, page(state, StatusCode::OK, "signed_out.html", &Chrome::default(), ctx))
}

/// `response`, clearing every cookie of the pages and (`Clear-Site-Data`)
/// the browser's cache and storage of the site, so the back button shows
/// nothing private (the script reloads pages the back-forward cache restores).
pub(super) fn forget_browser(state: &GatewayState, mut response: Response) -> Response {
    let headers = response.headers_mut();
    for name in [SESSION, CHALLENGE, crate::gateway::session::CSRF] {
        headers.append(header::SET_COOKIE, state.cookies.clear(name));
    }
    // Not "cookies": that clears every site of the registrable domain (other
    // applications at *.example.com); this site's three go by name above.
    headers.insert("clear-site-data", HeaderValue::from_static("\"cache\", \"storage\""));
    response
}
