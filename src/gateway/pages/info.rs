//! Public facts: the home redirect, which platform a username belongs to, the
//! platform status (HTML and JSON) and the public keys.

use axum::{
    Json,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use minijinja::{Value, context};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{Chrome, format_time, format_timestamp, message, page, see_other};
use crate::{
    gateway::{GatewayState, client_ip::ClientIp, clients::call, session::SESSION},
    pb,
};

/// `/`: the account of a signed-in browser, the sign-in page otherwise.
pub async fn home(State(state): State<GatewayState>, headers: HeaderMap) -> Response {
    let signed_in = state.cookies.read::<crate::gateway::session::BrowserSession>(&headers, SESSION).is_some();
    see_other(if signed_in { "/account" } else { "/login" }, [])
}

pub async fn not_found(State(state): State<GatewayState>) -> Response {
    message(&state, StatusCode::NOT_FOUND, "not_found_title", "not_found")
}

#[derive(serde::Serialize)]
struct PlatformRow {
    id: String,
    login_url: String,
    current: bool,
}

/// Every configured platform (empty when the service cannot say).
async fn platforms(state: &GatewayState, client: Option<std::net::IpAddr>) -> Vec<PlatformRow> {
    match state.clients.platform().list_platforms(call(pb::ListPlatformsRequest {}, client, None)).await {
        Ok(response) => response
            .into_inner()
            .platforms
            .into_iter()
            .map(|p| PlatformRow { id: p.id, login_url: p.login_url, current: p.current })
            .collect(),
        Err(status) => {
            tracing::warn!(code = ?status.code(), "cannot list the platforms");
            Vec::new()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PlatformQuery {
    username: String,
}

/// "Which platform am I on?": a username in (a GET form: it is no secret and
/// the answer may be bookmarked), the platform's login URL out.
pub async fn platform_page(
    State(state): State<GatewayState>,
    ClientIp(client): ClientIp,
    Query(query): Query<PlatformQuery>,
) -> Response {
    let username = query.username.trim();
    let (mut status, mut located, mut error) = (StatusCode::OK, None, None);
    if !username.is_empty() {
        let request = pb::LocatePlatformRequest { user_login: username.to_owned() };
        match state.clients.platform().locate_platform(call(request, client, None)).await {
            Ok(response) => {
                if let Some(p) = response.into_inner().platform {
                    let answer = state.theme.text_with("platform_answer", &[("platform", &p.id)]);
                    located = Some(context! { answer, login_url => p.login_url });
                }
            }
            Err(refused) if refused.code() == tonic::Code::Unavailable => {
                return super::unavailable(&state, &refused);
            }
            Err(_) => {
                status = StatusCode::NOT_FOUND;
                error = Some(state.theme.text("platform_unknown"));
            }
        }
    }
    let ctx = context! {
        title => state.theme.text("platform_title"),
        username,
        located,
        error,
        platforms => platforms(&state, client).await,
    };
    page(&state, status, "platform.html", &Chrome::default(), ctx)
}

#[derive(serde::Serialize)]
struct ComponentRow {
    name: String,
    state: String,
    detail: String,
}

/// The platform status from `Platform.GetStatus`; while that cannot be
/// reached, the gateway's own health and the gRPC health service's answer.
pub async fn status_page(State(state): State<GatewayState>, ClientIp(client): ClientIp) -> Response {
    let checked_at = format_time(state.settings.clock.now());
    let platforms = platforms(&state, client).await;
    let Ok(response) = state.clients.platform().get_status(call(pb::GetStatusRequest {}, client, None)).await else {
        return fallback_status(&state, checked_at, platforms).await;
    };
    let status = response.into_inner();
    let overall = status.overall();
    let components: Vec<ComponentRow> = status
        .components
        .iter()
        .map(|c| ComponentRow { name: c.name.clone(), state: state_name(&state, c.state()), detail: c.detail.clone() })
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
    let checked_at = status.checked_at.as_ref().map(format_timestamp).unwrap_or(checked_at);
    let ctx = context! {
        title => state.theme.text("status_title"),
        overall => overall_text(&state, healthy),
        platform => status.platform.map(|p| state.theme.text_with("status_platform", &[("platform", &p.id)])),
        components,
        maintenance,
        platforms,
        checked_at => state.theme.text_with("status_checked_at", &[("time", &checked_at)]),
    };
    let code = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    page(&state, code, "status.html", &Chrome::default(), ctx)
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

async fn fallback_status(state: &GatewayState, checked_at: String, platforms: Vec<PlatformRow>) -> Response {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let answer = state.clients.health().check(HealthCheckRequest { service: String::new() }).await;
    let (healthy, detail) = match answer.map(|r| r.into_inner().status()) {
        Ok(ServingStatus::Serving) => (true, state.theme.text("component_service_up")),
        Ok(other) => (false, format!("health check says {}", other.as_str_name())),
        Err(status) => (false, format!("cannot be reached ({:?})", status.code())),
    };
    let up = state_name(state, pb::ComponentState::Operational);
    let components = vec![
        ComponentRow { name: "gateway".into(), state: up.clone(), detail: state.theme.text("component_gateway") },
        ComponentRow {
            name: "identity service".into(),
            state: if healthy { up } else { state_name(state, pb::ComponentState::Outage) },
            detail,
        },
    ];
    let ctx = context! {
        title => state.theme.text("status_title"),
        overall => overall_text(state, healthy),
        components,
        platforms,
        checked_at => state.theme.text_with("status_checked_at", &[("time", &checked_at)]),
    };
    page(
        state,
        if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
        "status.html",
        &Chrome::default(),
        ctx,
    )
}

fn overall_text(state: &GatewayState, healthy: bool) -> String {
    state.theme.text(if healthy { "status_operational" } else { "status_problems" })
}

fn state_name(state: &GatewayState, component: pb::ComponentState) -> String {
    state.theme.text(match component {
        pb::ComponentState::Operational => "state_operational",
        pb::ComponentState::Degraded => "state_degraded",
        pb::ComponentState::Outage => "state_outage",
        pb::ComponentState::Maintenance => "state_maintenance",
        pb::ComponentState::Unspecified => "state_unknown",
    })
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
