//! An operator watches the service: a real `identity serve` process exports
//! its traces to a real OTLP receiver, writes JSON logs, and serves
//! Prometheus metrics on a port of its own. A whole scenario — logins,
//! lockout, resets with email=0 and email=1, link redemption, refresh,
//! logout, second factor — leaves one trace across the gateway hop, the
//! expected counters, and no password, PIN, token or link anywhere.

use crate::common;
use crate::common::tools::Tool;

use std::time::Duration;

use common::{
    Backend, MEMBER_PASSWORD, bearer, create_user, free_port, fresh_database,
    http::{HttpResponse, cdata, curl, elements, shown_password},
    latest_link, login, member,
    otlp::{OtlpReceiver, ReceivedSpan},
    process::ServerProcess,
    scratch_dir,
    second_factor::{assign, set_pin, start, submit},
    tenant, try_login,
};
use identity::pb::{self, Role};

/// A caller's trace: W3C `traceparent` of a span the test makes up.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

struct Observed {
    receiver: OtlpReceiver,
    server: ServerProcess,
    metrics_url: String,
}

fn observed_server(database_url: &str) -> Observed {
    let receiver = OtlpReceiver::start();
    let metrics_port = free_port();
    let endpoint = receiver.endpoint();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let server = ServerProcess::spawn(
        database_url,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("IDENTITY_METRICS_ADDR", &metrics_addr),
            ("IDENTITY_LOG_FORMAT", "json"),
            // Our own code at its most verbose: whatever it could log, it logs here.
            ("IDENTITY_LOG_FILTER", "info,identity=trace"),
        ],
    );
    Observed { receiver, server, metrics_url: format!("http://{metrics_addr}/metrics") }
}

/// Every secret the scenario handled, to be looked for everywhere afterwards.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, value: &str) {
        assert!(value.len() >= 8, "{what} is too short to be searched for reliably: {value:?}");
        self.0.push((what.to_owned(), value.to_owned()));
    }

    fn assert_absent(&self, place: &str, text: &str) {
        for (what, value) in &self.0 {
            assert!(!text.contains(value.as_str()), "{place} contains the {what}");
        }
    }
}

/// `/metrics` once it shows every `expected` line start (or fails after a while).
fn scrape_until(url: &str, expected: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let scraped = curl(&[url]);
        assert_eq!(scraped.status, 200);
        assert_eq!(scraped.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        let missing: Vec<&&str> = expected.iter().filter(|line| !scraped.body.contains(**line)).collect();
        if missing.is_empty() {
            return scraped.body;
        }
        assert!(std::time::Instant::now() < deadline, "/metrics lacks {missing:?}:\n{}", scraped.body);
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn legacy(base: &str, user: &str, password: &str, query: &str) -> HttpResponse {
    let credentials = format!("{user}:{password}");
    curl(&["-H", "Requested-With:telemetry", "-u", &credentials, &format!("{base}/msp/password_change.php?{query}")])
}

async fn an_operator_sees_traces_metrics_and_logs_without_secrets(backend: Backend) {
    if !common::tools::require(&[Tool::Curl, Tool::OtlpReceiver]) {
        return;
    }
    let database_url = fresh_database(backend, &scratch_dir("telemetry")).await;
    let observed = observed_server(&database_url);
    let server = observed.server.test_server();
    let gateway = observed.server.http_url();
    let mut secrets = Secrets::default();

    // A manager logs in from a service that is itself traced.
    let t = tenant(&server);
    secrets.add("manager password", &t.manager_password);
    let mut request = tonic::Request::new(pb::LoginRequest {
        user_login: t.manager_login.clone(),
        password: t.manager_password.clone(),
    });
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    let response = common::auth_client(&server).await.login(request).await.expect("login").into_inner();
    let Some(pb::login_response::Result::Session(manager)) = response.result else { panic!("a session") };
    secrets.add("manager access token", &manager.access_token);
    secrets.add("manager refresh token", &manager.refresh_token);

    // A new user activates through the welcome link.
    let reader = format!("{}_reader", t.prefix);
    create_user(&server, &manager.access_token, &reader, Role::Reader, "").await;
    let welcome = latest_link(&server, &reader, "welcome").await;
    secrets.add("welcome link", &welcome);
    common::reset_client(&server)
        .await
        .redeem_activation(pb::RedeemActivationRequest {
            token: welcome,
            new_password: MEMBER_PASSWORD.to_owned(),
            captcha: None,
        })
        .await
        .expect("welcome link redeemed");
    secrets.add("member password", MEMBER_PASSWORD);

    // The legacy API resets them with email=0: the new password is in the XML.
    let reply = legacy(&gateway, &t.manager_login, &t.manager_password, &format!("user_logins={reader}&email=0"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let shown = cdata(&elements(&reply.body, "PASSWORD")[0]);
    secrets.add("password from the legacy API", &shown);
    let session = login(&server, &reader, &shown).await;
    secrets.add("reader access token", &session.access_token);

    // With email=1 a link goes out; the person opens it and reads the password once.
    let reply = legacy(&gateway, &t.manager_login, &t.manager_password, &format!("user_logins={reader}&email=1"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let link = latest_link(&server, &reader, "password_reset").await;
    secrets.add("reset link", &link);
    let page = format!("{gateway}/activate/{link}");
    assert_eq!(curl(&[&page]).status, 200);
    let revealed = curl(&["-X", "POST", "-H", &format!("Origin: {gateway}"), "--data", "", &page]);
    assert_eq!(revealed.status, 200, "{}", revealed.body);
    let from_link = shown_password(&revealed.body);
    secrets.add("password behind the link", &from_link);
    let session = login(&server, &reader, &from_link).await;

    // Refresh, validate, log out.
    let refreshed = common::auth_client(&server)
        .await
        .refresh(pb::RefreshRequest { refresh_token: session.refresh_token.clone() })
        .await
        .expect("refresh")
        .into_inner()
        .session
        .expect("a session");
    secrets.add("reader refresh token", &session.refresh_token);
    secrets.add("rotated access token", &refreshed.access_token);
    secrets.add("rotated refresh token", &refreshed.refresh_token);
    let mut auth = common::auth_client(&server).await;
    auth.validate_token(pb::ValidateTokenRequest { access_token: refreshed.access_token.clone() }).await.unwrap();
    auth.logout(bearer(pb::LogoutRequest {}, &refreshed.access_token)).await.expect("logout");

    // Wrong passwords until the account locks.
    let victim = format!("{}_victim", t.prefix);
    member(&server, &manager.access_token, &victim, Role::Reader, "").await;
    for attempt in 0..5 {
        let wrong = format!("not the password {attempt} {}", t.prefix);
        secrets.add("wrong password", &wrong);
        assert!(try_login(&server, &victim, &wrong).await.is_err());
    }

    // The second factor: tokencode, new PIN, then PIN + tokencode.
    let holder = format!("{}_holder", t.prefix);
    member(&server, &manager.access_token, &holder, Role::Reader, "").await;
    let token = assign(&server, &manager.access_token, &holder).await;
    let challenge = start(&server, &holder, MEMBER_PASSWORD).await;
    secrets.add("challenge id", &challenge.challenge_id);
    let next = submit(&server, &challenge, &token.code(0)).await.expect("tokencode").result;
    let Some(pb::submit_passcode_response::Result::Challenge(new_pin)) = next else { panic!("{next:?}") };
    secrets.add("new-PIN challenge id", &new_pin.challenge_id);
    set_pin(&server, &new_pin, "97531").await.expect("PIN set");
    let challenge = start(&server, &holder, MEMBER_PASSWORD).await;
    let passcode = format!("97531{}", token.code(1));
    secrets.add("PIN and tokencode", &passcode);
    submit(&server, &challenge, &passcode).await.expect("PIN + tokencode");

    // ---- traces ----------------------------------------------------------
    let receiver = &observed.receiver;
    let traced_login = receiver.wait_for("for the traced login", |span| {
        span.name == "identity.v1.Auth/Login" && span.trace_id == CALLER_TRACE
    });
    assert_eq!(traced_login.parent_span_id, CALLER_SPAN, "the caller's span is the parent");
    assert_eq!(traced_login.kind, 2, "a server span");
    assert_eq!(traced_login.attributes["rpc.system"], "grpc");
    assert_eq!(traced_login.attributes["rpc.service"], "identity.v1.Auth");
    assert_eq!(traced_login.attributes["rpc.method"], "Login");
    assert_eq!(traced_login.attributes["rpc.grpc.status_code"], 0);
    assert_eq!(traced_login.resource["service.name"], "identity");

    // One trace spans the gateway hop: HTTP request → Login and ResetPasswords.
    let legacy_span = receiver.wait_for("for the legacy API", |span| {
        span.name == "GET /msp/password_change.php" && span.attributes["http.response.status_code"] == 200
    });
    let reset = receiver.wait_for("for the reset behind the legacy API", |span| {
        span.name == "identity.v1.Reset/ResetPasswords" && span.trace_id == legacy_span.trace_id
    });
    assert_eq!(reset.parent_span_id, legacy_span.span_id, "the gateway's span is the gRPC call's parent");
    let subscription = reset.attributes.get("identity.subscription").and_then(|v| v.as_str()).unwrap_or_default();
    assert!(!subscription.is_empty(), "the caller's subscription is on the span: {reset:?}");
    let gateway_login = receiver.wait_for("for the gateway's login", |span| {
        span.name == "identity.v1.Auth/Login" && span.trace_id == legacy_span.trace_id
    });
    assert_eq!(gateway_login.parent_span_id, legacy_span.span_id);

    // Pages are named by route: the token in the path never becomes a span name.
    let reveal = receiver.wait_for("for the link page", |span| span.name == "POST /activate/{token}");
    assert_eq!(reveal.attributes["http.route"], "/activate/{token}");
    let failed = receiver.wait_for("for a refused login", |span| {
        span.name == "identity.v1.Auth/Login" && span.attributes["rpc.grpc.status_code"] == 16
    });
    assert_eq!(failed.status, 0, "a client's mistake is not a server error");
    receiver.wait_for("for the passcode", |span: &ReceivedSpan| span.name == "identity.v1.Auth/SubmitPasscode");

    // ---- metrics ---------------------------------------------------------
    // The dispatcher delivers in the background: wait for its counter, then read everything.
    let expected = [
        r#"identity_grpc_requests_total{method="/identity.v1.Auth/Login",code="OK"}"#,
        r#"identity_grpc_requests_total{method="/identity.v1.Auth/Login",code="UNAUTHENTICATED"}"#,
        r#"identity_grpc_requests_total{method="/identity.v1.Reset/ResetPasswords",code="OK"}"#,
        r#"identity_grpc_request_duration_seconds_bucket{method="/identity.v1.Auth/ValidateToken",code="OK",le="0.005"}"#,
        r#"identity_http_requests_total{route="/activate/{token}",method="POST",status="200"}"#,
        r#"identity_login_outcomes_total{outcome="session"}"#,
        r#"identity_login_outcomes_total{outcome="challenge"}"#,
        r#"identity_login_outcomes_total{outcome="INVALID_CREDENTIALS"}"#,
        "identity_lockouts_total 1",
        "identity_hash_pool_workers ",
        "identity_hash_pool_queue_depth 0",
        "identity_hash_pool_busy_workers ",
        r#"identity_email_deliveries_total{result="sent"}"#,
        "identity_outbox_pending ",
        r#"identity_db_pool_connections{state="idle"}"#,
        r#"identity_db_pool_connections{state="in_use"}"#,
        "identity_db_up 1",
    ];
    let metrics = scrape_until(&observed.metrics_url, &expected);
    secrets.assert_absent("/metrics", &metrics);

    // ---- secrets in traces and logs -----------------------------------------
    // Let the exporter's batch go out before reading everything it sent.
    std::thread::sleep(Duration::from_millis(600));
    secrets.assert_absent("the exported spans", &receiver.raw());
    let log = observed.server.log();
    secrets.assert_absent("the server log", &log);
    // stdout carries the operator's lines ("identity: gRPC listening on …"); stderr is JSON.
    let lines: Vec<&str> = log.lines().filter(|line| !line.starts_with("identity: ")).collect();
    assert!(lines.len() > 10, "the scenario was logged:\n{log}");
    let spans = receiver.spans();
    let mut lockout_joined = false;
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(entry.get("level").is_some() && entry.get("timestamp").is_some(), "{line}");
        // A line logged inside a request names the exported span it was logged in.
        if let Some(trace_id) = entry.get("trace_id").and_then(serde_json::Value::as_str) {
            let span_id = entry["span_id"].as_str().unwrap_or_default();
            assert!(trace_id.len() == 32 && span_id.len() == 16, "{line}");
            if entry["message"] == "account locked after consecutive failed logins" {
                let span = spans.iter().find(|s| s.trace_id == trace_id && s.span_id == span_id);
                lockout_joined = span.is_some_and(|s| s.name == "identity.v1.Auth/Login");
            }
        }
    }
    assert!(lockout_joined, "the lockout's log line joins the Login span it happened in:\n{log}");
    assert!(log.contains("account locked after consecutive failed logins"), "lockouts are logged");
}

on_both_backends!(an_operator_sees_traces_metrics_and_logs_without_secrets);

/// The metric names the shipped alert rules and dashboard read: every
/// `identity_…` word of their text (histogram series keep their `_bucket`
/// suffix, which the exposition shows as such).
fn monitored_metric_names() -> std::collections::BTreeSet<String> {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/identity/files");
    let mut names = std::collections::BTreeSet::new();
    for file in ["alerts.yaml", "dashboard.json"] {
        let text = std::fs::read_to_string(chart.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
        let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut rest = text.as_str();
        while let Some(at) = rest.find("identity_") {
            let before = rest[..at].chars().next_back();
            let word: String = rest[at..].chars().take_while(|c| is_word(*c)).collect();
            if !before.is_some_and(is_word) {
                names.insert(word.clone());
            }
            rest = &rest[at + word.len()..];
        }
    }
    names
}

async fn the_shipped_alerts_and_dashboard_read_metrics_the_server_exports(backend: Backend) {
    if !common::tools::require(&[Tool::Curl]) {
        return;
    }
    let names = monitored_metric_names();
    assert!(names.len() > 10, "the alert rules and dashboard name the service's metrics: {names:?}");
    let database_url = fresh_database(backend, &scratch_dir("monitoring")).await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let process = ServerProcess::spawn(&database_url, &[("IDENTITY_METRICS_ADDR", &metrics_addr)]);
    let server = process.test_server();

    // A login that succeeds, one that fails, and a gateway request.
    let t = tenant(&server);
    login(&server, &t.manager_login, &t.manager_password).await;
    let refused = try_login(&server, &t.manager_login, "not the manager's password").await;
    assert_eq!(refused.expect_err("a wrong password").code(), tonic::Code::Unauthenticated);
    assert_eq!(curl(&[&format!("{}/status.json", process.http_url())]).status, 200);

    let build_info = format!(r#"identity_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION"));
    let scraped = scrape_until(
        &format!("http://{metrics_addr}/metrics"),
        &[
            &build_info,
            r#"identity_login_outcomes_total{outcome="session"}"#,
            r#"identity_login_outcomes_total{outcome="INVALID_CREDENTIALS"}"#,
            "identity_http_requests_total{",
        ],
    );
    let exported = |name: &str| {
        scraped.lines().any(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
    };
    let missing: Vec<&String> = names.iter().filter(|name| !exported(name)).collect();
    assert!(missing.is_empty(), "alerts.yaml or dashboard.json read metrics /metrics lacks: {missing:?}\n{scraped}");
}

on_both_backends!(the_shipped_alerts_and_dashboard_read_metrics_the_server_exports);
