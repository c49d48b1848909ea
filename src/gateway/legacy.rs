//! `GET|POST /msp/password_change.php` (DESIGN §4): HTTP Basic credentials →
//! `Auth.Login` → `Reset.ResetPasswords` with the session → the legacy XML.
//! The one mapping from failures to an error number and an HTTP status is
//! [`FailureKind`]; docs/decisions.md ("Gateway") has the table.

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use tonic::Code;
use tonic_types::StatusExt;

use super::{
    GatewayState,
    client_ip::ClientIp,
    clients::call,
    ratelimit::Decision,
    xml::{self, Changed, NotChanged, Outcome},
};
use crate::{domain::Secret, pb};

/// Why nothing was done; each kind has one error number and one HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    UnknownParameter,
    MissingParameter,
    InvalidValue,
    InputTooLarge,
    MissingRequestedWith,
    MethodNotAllowed,
    RateLimited,
    Throttled,
    BadCredentials,
    UnsupportedAuth,
    AccountInactive,
    SecondFactor,
    NoPermission,
    Unavailable,
    Internal,
}

impl FailureKind {
    pub fn number(self) -> u32 {
        match self {
            FailureKind::UnknownParameter => 1901,
            FailureKind::MissingParameter => 1903,
            FailureKind::InvalidValue => 1905,
            FailureKind::InputTooLarge => 1907,
            FailureKind::MissingRequestedWith => 1920,
            FailureKind::MethodNotAllowed => 1921,
            FailureKind::RateLimited => 1965,
            FailureKind::Throttled => 1966,
            FailureKind::BadCredentials => 2000,
            FailureKind::UnsupportedAuth => 2001,
            FailureKind::AccountInactive => 2002,
            FailureKind::SecondFactor => 2013,
            FailureKind::NoPermission => 2100,
            FailureKind::Unavailable => 1999,
            FailureKind::Internal => 999,
        }
    }

    pub fn http(self) -> StatusCode {
        match self {
            FailureKind::UnknownParameter
            | FailureKind::MissingParameter
            | FailureKind::InvalidValue
            | FailureKind::MissingRequestedWith => StatusCode::BAD_REQUEST,
            FailureKind::InputTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            FailureKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            FailureKind::BadCredentials | FailureKind::UnsupportedAuth => StatusCode::UNAUTHORIZED,
            FailureKind::NoPermission | FailureKind::SecondFactor => StatusCode::FORBIDDEN,
            FailureKind::AccountInactive => StatusCode::CONFLICT,
            FailureKind::RateLimited | FailureKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
            FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            FailureKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug)]
pub struct Failure {
    kind: FailureKind,
    message: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retry_after: None }
    }

    /// Read by the property tests' model of a refusal.
    #[cfg(feature = "fuzzing")]
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    #[cfg(feature = "fuzzing")]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A refusal of the gRPC services, by its ErrorInfo reason; the gRPC code
    /// decides only for statuses without one (made by the transport).
    fn from_status(status: &tonic::Status) -> Self {
        let reason = crate::grpc::status::error_reason(status);
        let kind = reason.map_or_else(|| by_transport_code(status.code()), by_reason);
        let message = match kind {
            FailureKind::Internal => {
                tracing::error!(
                    code = ?status.code(),
                    reason = crate::grpc::status::reason(status).unwrap_or_default(),
                    "the identity service failed a legacy API call"
                );
                "Internal error: try again later".to_owned()
            }
            // Only the service's own "busy" sentence is worth passing on.
            FailureKind::Unavailable if reason != Some(pb::ErrorReason::Overloaded) || status.message().is_empty() => {
                "The service is temporarily unavailable: try again shortly".to_owned()
            }
            _ => status.message().to_owned(),
        };
        let retry_after = status.get_error_details().retry_info().and_then(|info| info.retry_delay);
        Self { kind, message, retry_after }
    }
}

/// The legacy answer to each reason `Auth.Login` and `Reset.ResetPasswords`
/// can give; a reason neither gives is a bug here, answered 999.
fn by_reason(reason: pb::ErrorReason) -> FailureKind {
    use pb::ErrorReason as R;
    match reason {
        // `all` over `reset.max_batch` is refused like a list over it: a bad value.
        R::InvalidArgument | R::PinRejected | R::BatchTooLarge => FailureKind::InvalidValue,
        R::InvalidCredentials | R::InvalidPasscode | R::Unauthenticated => FailureKind::BadCredentials,
        R::AccountPendingActivation | R::AccountInactive => FailureKind::AccountInactive,
        R::PermissionDenied => FailureKind::NoPermission,
        R::Throttled => FailureKind::Throttled,
        R::Overloaded | R::Unavailable => FailureKind::Unavailable,
        R::Unspecified
        | R::Internal
        | R::NotFound
        | R::AlreadyExists
        | R::IllegalStatusTransition
        | R::ConcurrentChange
        | R::LastManager
        | R::UserDeleted
        | R::UserIsContact
        | R::AlreadyActive
        | R::NoToken
        | R::WrongChallenge
        | R::ActivationKeyUnknown
        | R::ActivationKeyUsed
        | R::ActivationKeyExpired
        | R::ActivationKeySuperseded
        | R::ActivationAccountUnavailable
        | R::MaintenanceOverlap
        | R::MaintenanceOver
        | R::PinnedSigningKey
        // The legacy API sends no request id.
        | R::RequestIdReused => FailureKind::Internal,
    }
}

/// Statuses the transport made, which carry no reason: a message over the
/// service's size limit, a deadline, a connection that failed.
fn by_transport_code(code: Code) -> FailureKind {
    match code {
        Code::InvalidArgument | Code::OutOfRange => FailureKind::InvalidValue,
        Code::ResourceExhausted | Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            FailureKind::Unavailable
        }
        _ => FailureKind::Internal,
    }
}

/// Which users a request names.
#[derive(Debug, PartialEq, Eq)]
pub enum Targets {
    All,
    Logins(Vec<String>),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Params {
    pub targets: Targets,
    pub notify_by_email: bool,
}

pub async fn dtd() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/xml-dtd; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        super::DTD,
    )
}

pub(super) async fn password_change(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let credentials = Credentials::from_headers(&parts.headers);
    let username = match &credentials {
        Credentials::Basic(user, _) => user.clone(),
        _ => String::new(),
    };
    let mut rate = None;
    let result =
        handle(&state, client, &parts.method, &parts.headers, parts.uri.query(), body, credentials, &mut rate).await;
    let (outcome, http, retry_after) = match result {
        Ok(outcome) => (outcome, StatusCode::OK, None),
        Err(failure) => {
            let outcome = Outcome::Failed { number: failure.kind.number(), message: failure.message };
            (outcome, failure.kind.http(), failure.retry_after)
        }
    };
    // Only a caller who logged in has a username worth logging: a failed
    // Basic username is often a password typed into the wrong field.
    let authenticated = rate.is_some();
    log_outcome(if authenticated { &username } else { "" }, &outcome, http);
    let body = xml::render(&state.settings.dtd_url(), &username, state.settings.clock.now(), &outcome);
    let mut response = (http, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml; charset=UTF-8"));
    if http == StatusCode::UNAUTHORIZED {
        headers
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"identity\", charset=\"UTF-8\""));
    }
    if let Some(decision) = rate {
        headers.insert("x-ratelimit-limit", decision.limit.into());
        headers.insert("x-ratelimit-window-sec", decision.window_secs.into());
        headers.insert("x-ratelimit-remaining", decision.remaining.into());
    }
    if let Some(after) = retry_after {
        headers.insert(header::RETRY_AFTER, after.as_secs().max(1).into());
    }
    response
}

fn log_outcome(username: &str, outcome: &Outcome, http: StatusCode) {
    match outcome {
        Outcome::Done { changed, not_changed } => tracing::info!(
            api_user = username,
            status = outcome.status(),
            changed = changed.len(),
            not_changed = not_changed.len(),
            "legacy password_change"
        ),
        Outcome::Failed { number, .. } => tracing::info!(
            api_user = username,
            status = outcome.status(),
            number,
            http = http.as_u16(),
            "legacy password_change"
        ),
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    state: &GatewayState,
    client: Option<std::net::IpAddr>,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
    credentials: Credentials,
    rate: &mut Option<Decision>,
) -> Result<Outcome, Failure> {
    if method != Method::GET && method != Method::POST {
        return Err(Failure::new(FailureKind::MethodNotAllowed, "Only GET and POST are supported"));
    }
    if !headers.contains_key("x-requested-with") && !headers.contains_key("requested-with") {
        return Err(Failure::new(
            FailureKind::MissingRequestedWith,
            "The X-Requested-With (or Requested-With) header is required",
        ));
    }
    let (user, password) = match credentials {
        Credentials::Basic(user, password) => (user, password),
        Credentials::Refused => {
            return Err(Failure::new(
                FailureKind::UnsupportedAuth,
                "This API does not support session or token authentication: use HTTP Basic credentials",
            ));
        }
        Credentials::Missing => {
            return Err(Failure::new(
                FailureKind::BadCredentials,
                "Authentication required: use HTTP Basic credentials",
            ));
        }
        Credentials::Malformed => {
            return Err(Failure::new(FailureKind::BadCredentials, "The HTTP Basic credentials are malformed"));
        }
    };
    let limits = &state.settings.limits;
    // A slow client's body counts against the same deadline as the service's answer,
    // so that running out of time still answers XML.
    let work = async {
        let params = read_params(query, headers, body, limits.max_body_bytes).await?;
        reset(state, client, &user, password, params, rate).await
    };
    tokio::time::timeout(Duration::from_secs(limits.request_timeout_secs), work).await.unwrap_or_else(|_| {
        Err(Failure::new(FailureKind::Unavailable, "The request did not complete in time: try again shortly"))
    })
}

async fn reset(
    state: &GatewayState,
    client: Option<std::net::IpAddr>,
    user: &str,
    password: Secret,
    params: Params,
    rate: &mut Option<Decision>,
) -> Result<Outcome, Failure> {
    let login = pb::LoginRequest { user_login: user.to_owned(), password: password.into_exposed() };
    let session = match state.clients.auth().login(call(login, client, None)).await {
        Ok(response) => match response.into_inner().result {
            Some(pb::login_response::Result::Session(session)) => session,
            Some(pb::login_response::Result::Challenge(_)) => {
                return Err(Failure::new(
                    FailureKind::SecondFactor,
                    "This account logs in with a second factor, which this API does not support",
                ));
            }
            None => return Err(Failure::new(FailureKind::Internal, "Internal error: try again later")),
        },
        Err(status) => return Err(Failure::from_status(&status)),
    };
    let token = Secret::new(session.access_token);
    let decision = state.limiter.hit(user);
    *rate = Some(decision);
    let result = if decision.allowed {
        let (user_logins, all) = match params.targets {
            Targets::All => (Vec::new(), true),
            Targets::Logins(logins) => (logins, false),
        };
        let request = pb::ResetPasswordsRequest {
            user_logins,
            all,
            notify_by_email: params.notify_by_email,
            ..Default::default()
        };
        match state.clients.reset().reset_passwords(call(request, client, Some(token.expose()))).await {
            Ok(response) => Ok(outcome_of(response.into_inner().results)),
            Err(status) => Err(Failure::from_status(&status)),
        }
    } else {
        let mut failure = Failure::new(
            FailureKind::RateLimited,
            format!(
                "Rate limit exceeded: {} calls per {} seconds; try again in {} seconds",
                decision.limit,
                decision.window_secs,
                decision.reset_after.as_secs().max(1)
            ),
        );
        failure.retry_after = Some(decision.reset_after);
        Err(failure)
    };
    // The session existed for this one call only.
    let auth = state.clients.auth();
    tokio::spawn(async move {
        let mut auth = auth;
        let _ = auth.logout(call(pb::LogoutRequest {}, client, Some(token.expose()))).await;
    });
    result
}

fn outcome_of(results: Vec<pb::ResetResult>) -> Outcome {
    let mut changed = Vec::new();
    let mut not_changed = Vec::new();
    for result in results {
        if result.changed {
            let password = (!result.password.is_empty()).then(|| Secret::new(result.password));
            changed.push(Changed { user_login: result.user_login, password });
        } else {
            let code = reason_code(result.reason());
            not_changed.push(NotChanged { user_login: result.user_login, code, message: result.message });
        }
    }
    Outcome::Done { changed, not_changed }
}

/// The DTD's REASON codes; a reason added to the proto later reads OTHER.
fn reason_code(reason: pb::ResetReason) -> &'static str {
    match reason {
        pb::ResetReason::UnknownUser => "UNKNOWN_USER",
        pb::ResetReason::Deleted => "DELETED",
        pb::ResetReason::Contact => "CONTACT",
        pb::ResetReason::Self_ => "SELF",
        pb::ResetReason::OutOfScope => "OUT_OF_SCOPE",
        pb::ResetReason::Throttled => "THROTTLED",
        pb::ResetReason::Unspecified => "OTHER",
    }
}

/// How the caller authenticated: HTTP Basic only; a session cookie or any
/// other `Authorization` scheme (a bearer token) is refused.
pub enum Credentials {
    Basic(String, Secret),
    Missing,
    Malformed,
    Refused,
}

impl Credentials {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        if headers.contains_key(header::COOKIE) {
            return Credentials::Refused;
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Credentials::Missing;
        };
        let Some((scheme, encoded)) = value.to_str().ok().and_then(|v| v.trim().split_once(' ')) else {
            return Credentials::Malformed;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return Credentials::Refused;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok();
        match decoded.and_then(|bytes| String::from_utf8(bytes).ok()) {
            Some(pair) => match pair.split_once(':') {
                Some((user, password)) => Credentials::Basic(user.to_owned(), Secret::new(password)),
                None => Credentials::Malformed,
            },
            None => Credentials::Malformed,
        }
    }
}

async fn read_params(query: Option<&str>, headers: &HeaderMap, body: Body, max: usize) -> Result<Params, Failure> {
    let too_large =
        || Failure::new(FailureKind::InputTooLarge, format!("The request is too large: at most {max} bytes"));
    let query = query.unwrap_or("");
    if query.len() > max {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, max - query.len()).await.map_err(|_| too_large())?;
    if !body.is_empty() {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        if !form {
            return Err(Failure::new(
                FailureKind::InvalidValue,
                "The request body must be application/x-www-form-urlencoded",
            ));
        }
    }
    parse_params(query.as_bytes(), &body)
}

/// The parameters from the query string and the form body together.
pub fn parse_params(query: &[u8], body: &[u8]) -> Result<Params, Failure> {
    // Decoding would turn invalid UTF-8 into U+FFFD, and a mangled login would come
    // back as an unknown user; refusing says what is wrong.
    let utf8 = |input: &[u8]| percent_encoding::percent_decode(input).decode_utf8().is_ok();
    if !utf8(query) || !utf8(body) {
        return Err(Failure::new(FailureKind::InvalidValue, "The parameters must be UTF-8 text"));
    }
    let mut user_logins: Option<String> = None;
    let mut email: Option<String> = None;
    let mut unknown = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query).chain(url::form_urlencoded::parse(body)) {
        let slot = match key.as_ref() {
            "user_logins" => &mut user_logins,
            "email" => &mut email,
            other => {
                unknown.push(other.chars().take(64).collect::<String>());
                continue;
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(Failure::new(
                FailureKind::InvalidValue,
                format!("The parameter {key} is given more than once"),
            ));
        }
    }
    if !unknown.is_empty() {
        unknown.truncate(5);
        return Err(Failure::new(
            FailureKind::UnknownParameter,
            format!("Unrecognized parameter(s): {}", unknown.join(", ")),
        ));
    }
    let notify_by_email = match email.as_deref() {
        None | Some("1") => true,
        Some("0") => false,
        Some(_) => return Err(Failure::new(FailureKind::InvalidValue, "Invalid value for email: it must be 0 or 1")),
    };
    let missing = || Failure::new(FailureKind::MissingParameter, "Missing required parameter: user_logins");
    let raw = user_logins.ok_or_else(missing)?;
    let targets = if raw.trim() == "all" {
        Targets::All
    } else {
        let logins = crate::domain::login::distinct_logins(raw.split(','));
        if logins.is_empty() {
            return Err(missing());
        }
        Targets::Logins(logins)
    };
    Ok(Params { targets, notify_by_email })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Params, FailureKind> {
        parse_params(query.as_bytes(), b"").map_err(|f| f.kind)
    }

    #[test]
    fn logins_are_trimmed_and_collapsed_in_order() {
        let params = parse("user_logins=%20bob%20,alice,,bob,%09carol&email=0").unwrap();
        assert_eq!(params.targets, Targets::Logins(vec!["bob".into(), "alice".into(), "carol".into()]));
        assert!(!params.notify_by_email);
        assert_eq!(parse("user_logins=all").unwrap().targets, Targets::All);
        assert_eq!(parse("user_logins=+all+").unwrap().targets, Targets::All);
        assert!(parse("user_logins=a").unwrap().notify_by_email, "email defaults to 1");
        let both = parse_params(b"email=1", b"user_logins=a").unwrap();
        assert_eq!(both.targets, Targets::Logins(vec!["a".into()]));
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(parse("email=1"), Err(FailureKind::MissingParameter));
        assert_eq!(parse("user_logins=,%20,"), Err(FailureKind::MissingParameter));
        assert_eq!(parse("user_logins=a&email=2"), Err(FailureKind::InvalidValue));
        assert_eq!(parse("user_logins=a&email="), Err(FailureKind::InvalidValue));
        assert_eq!(parse("user_logins=a&user_logins=b"), Err(FailureKind::InvalidValue));
        assert_eq!(parse("user_logins=a&echo_request=1"), Err(FailureKind::UnknownParameter));
        assert_eq!(parse("user_logins=%FF%FE"), Err(FailureKind::InvalidValue));
        assert_eq!(parse_params(b"", b"user_logins=\xC3(").map_err(|f| f.kind), Err(FailureKind::InvalidValue));
        assert!(parse("user_logins=%C3%A9l%C3%A9onore").is_ok(), "percent-encoded UTF-8 is fine");
        let failure = parse_params(b"user_logins=a&x=1&y=2", b"").unwrap_err();
        assert_eq!(failure.message, "Unrecognized parameter(s): x, y");
    }

    #[test]
    fn every_failure_has_a_distinct_number() {
        use FailureKind::*;
        let all = [
            UnknownParameter,
            MissingParameter,
            InvalidValue,
            InputTooLarge,
            MissingRequestedWith,
            MethodNotAllowed,
            RateLimited,
            Throttled,
            BadCredentials,
            UnsupportedAuth,
            AccountInactive,
            SecondFactor,
            NoPermission,
            Unavailable,
            Internal,
        ];
        let mut numbers: Vec<u32> = all.iter().map(|f| f.number()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), all.len());
        assert_eq!(BadCredentials.http(), StatusCode::UNAUTHORIZED);
        assert_eq!(AccountInactive.http(), StatusCode::CONFLICT);
        assert_eq!(RateLimited.http(), StatusCode::TOO_MANY_REQUESTS);
    }

    fn refusal(error: crate::domain::Error) -> FailureKind {
        Failure::from_status(&tonic::Status::from(error)).kind
    }

    #[test]
    fn refusals_are_told_apart_by_reason_not_by_code() {
        use crate::domain::{Error, ErrorReason, error::AccountProblem};
        let precondition = |reason| Error::FailedPrecondition { reason, message: "no".into() };
        // Both FAILED_PRECONDITION, two different answers.
        assert_eq!(refusal(Error::AccountUnavailable(AccountProblem::Inactive)), FailureKind::AccountInactive);
        assert_eq!(refusal(Error::AccountUnavailable(AccountProblem::PendingActivation)), FailureKind::AccountInactive);
        assert_eq!(refusal(precondition(ErrorReason::BatchTooLarge)), FailureKind::InvalidValue);
        // Both RESOURCE_EXHAUSTED, two different answers.
        assert_eq!(refusal(Error::Throttled { retry_after: Duration::from_secs(1) }), FailureKind::Throttled);
        assert_eq!(refusal(Error::Overloaded), FailureKind::Unavailable);
        assert_eq!(refusal(Error::InvalidCredentials), FailureKind::BadCredentials);
        assert_eq!(refusal(Error::PermissionDenied("no".into())), FailureKind::NoPermission);
        assert_eq!(refusal(precondition(ErrorReason::LastManager)), FailureKind::Internal);
        // No reason: the transport's code decides.
        assert_eq!(Failure::from_status(&tonic::Status::out_of_range("too big")).kind, FailureKind::InvalidValue);
        assert_eq!(Failure::from_status(&tonic::Status::unavailable("refused")).kind, FailureKind::Unavailable);
        assert_eq!(Failure::from_status(&tonic::Status::failed_precondition("?")).kind, FailureKind::Internal);
    }
}
