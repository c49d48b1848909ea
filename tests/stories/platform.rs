//! Which platform am I on, and is it up? As the platform support page tells
//! it: the platform code inside the username points to the right URLs; the
//! status page shows each component and the scheduled maintenance.

use crate::common;
use crate::common::tools::Tool;

use std::time::{Duration, Instant};

use common::{Backend, bearer, login_session, proxy::Proxy, tenant, try_login};
use identity::{config::PlatformEntry, pb};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

fn three_platforms(mut config: identity::config::Config) -> identity::config::Config {
    let entry = |id: &str, code: &str| PlatformEntry {
        id: id.to_owned(),
        code: code.to_owned(),
        login_url: format!("https://{code}.example.com/"),
        api_url: format!("https://api.{code}.example.com/"),
    };
    config.platform.platforms = vec![entry("US1", "us1"), entry("US2", "us2"), entry("EU1", "eu1")];
    config.platform.current = "US2".to_owned();
    config
}

async fn platform_client(
    server: &common::TestServer,
) -> pb::platform_client::PlatformClient<tonic::transport::Channel> {
    pb::platform_client::PlatformClient::new(server.channel().await)
}

async fn locate(server: &common::TestServer, login: &str) -> Result<pb::PlatformInfo, tonic::Status> {
    platform_client(server)
        .await
        .locate_platform(pb::LocatePlatformRequest { user_login: login.to_owned() })
        .await
        .map(|r| r.into_inner().platform.expect("platform"))
}

async fn every_configured_platform_is_located_by_username(backend: Backend) {
    let server = common::start(backend, three_platforms);
    for (code, id) in [("us1", "US1"), ("us2", "US2"), ("eu1", "EU1")] {
        let found = locate(&server, &format!("acme_{code}k7q4ab")).await.expect("located");
        assert_eq!((found.id.as_str(), found.code.as_str()), (id, code));
        assert_eq!(found.login_url, format!("https://{code}.example.com/"));
        assert_eq!(found.api_url, format!("https://api.{code}.example.com/"));
        assert_eq!(found.current, id == "US2");
    }
    let unknown = locate(&server, "acme_zz9k7q4ab").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let unparseable = locate(&server, "john_d").await.unwrap_err();
    assert_eq!(unparseable.code(), Code::InvalidArgument);
    assert!(unparseable.message().contains("e.g. acme_us2k7q4ab"), "a hint: {}", unparseable.message());

    // A login this deployment generates points back to it, and existence is never revealed.
    let t = tenant(&server);
    let manager = login_session(&server, &t.manager_login, &t.manager_password).await;
    let generated = common::create_user(&server, &manager, "", pb::Role::Reader, "").await.user_login;
    assert!(locate(&server, &generated).await.unwrap().current);
    let ghost = format!("{}_us2zzzzzz", t.prefix);
    assert_eq!(locate(&server, &ghost).await.unwrap(), locate(&server, &generated).await.unwrap());
}

async fn maintenance_windows_are_scheduled_listed_and_cancelled_by_operators(backend: Backend) {
    let server = common::start(backend, |mut config| {
        config.platform.status_cache_ms = 0;
        config
    });
    let op = common::operator(&server).await.1;
    let mut platform = platform_client(&server).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let at = |secs: i64| Some(prost_types::Timestamp { seconds: secs, nanos: 0 });
    let window = |title: &str, start: i64, end: i64, components: &[&str]| pb::ScheduleMaintenanceRequest {
        title: title.to_owned(),
        start_time: at(start),
        end_time: at(end),
        components: components.iter().map(|c| (*c).to_owned()).collect(),
    };
    let later = platform
        .schedule_maintenance(bearer(window("database upgrade", now + 7200, now + 9000, &["database"]), &op))
        .await;
    let later = later.expect("scheduled").into_inner().window.unwrap();
    let sooner =
        platform.schedule_maintenance(bearer(window("mail relay swap", now + 3600, now + 5400, &["email"]), &op)).await;
    sooner.expect("scheduled");
    let status = platform.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    let titles: Vec<&str> = status.maintenance_windows.iter().map(|w| w.title.as_str()).collect();
    assert_eq!(titles, ["mail relay swap", "database upgrade"], "earliest start first");
    assert_eq!(status.overall(), pb::ComponentState::Operational, "upcoming windows change nothing yet");
    let names: Vec<&str> = status.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["database", "email", "signing_keys", "password_hashing", "logins", "housekeeping"]);

    for (request, code) in [
        (window("overlap", now + 8000, now + 9500, &[]), Code::FailedPrecondition),
        (window("past", now - 7200, now - 3600, &[]), Code::InvalidArgument),
        (window("backwards", now + 20000, now + 10000, &[]), Code::InvalidArgument),
        (window("unknown part", now + 20000, now + 21000, &["toaster"]), Code::InvalidArgument),
        (window("", now + 20000, now + 21000, &[]), Code::InvalidArgument),
    ] {
        let title = request.title.clone();
        let refused = platform.schedule_maintenance(bearer(request, &op)).await.unwrap_err();
        assert_eq!(refused.code(), code, "{title}");
    }
    let t = tenant(&server);
    let manager = login_session(&server, &t.manager_login, &t.manager_password).await;
    let denied =
        platform.schedule_maintenance(bearer(window("not mine", now + 30000, now + 31000, &[]), &manager)).await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);

    platform
        .cancel_maintenance(bearer(pb::CancelMaintenanceRequest { id: later.id.clone() }, &op))
        .await
        .expect("cancelled");
    let twice = platform.cancel_maintenance(bearer(pb::CancelMaintenanceRequest { id: later.id.clone() }, &op)).await;
    assert_eq!(twice.unwrap_err().code(), Code::FailedPrecondition);
    let missing = platform.cancel_maintenance(bearer(pb::CancelMaintenanceRequest { id: "nope".into() }, &op)).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let status = platform.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.maintenance_windows.len(), 1);

    // A window in progress puts its components in maintenance.
    platform
        .schedule_maintenance(bearer(window("now", now, now + 600, &["email"]), &op))
        .await
        .expect("a current window");
    let status = platform.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    let email = status.components.iter().find(|c| c.name == "email").unwrap();
    assert_eq!(email.state(), pb::ComponentState::Maintenance);
    assert_eq!(status.overall(), pb::ComponentState::Maintenance);
}

async fn wait_for_health(server: &common::TestServer, wanted: ServingStatus) {
    wait_for_service_health(server, "", wanted).await;
}

async fn wait_for_service_health(server: &common::TestServer, service: &str, wanted: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let channel = tonic::transport::Channel::from_shared(server.url()).unwrap().connect().await;
        let status = match channel {
            Ok(channel) => HealthClient::new(channel)
                .check(HealthCheckRequest { service: service.to_owned() })
                .await
                .map(|r| r.into_inner().status())
                .unwrap_or(ServingStatus::Unknown),
            Err(_) => ServingStatus::Unknown,
        };
        if status == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "health of {service:?} never became {wanted:?} (is {status:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn health_stops_serving_during_a_login_maintenance_when_configured(backend: Backend) {
    let server = common::start(backend, |mut config| {
        config.platform.not_serving_during_maintenance = true;
        config
    });
    wait_for_health(&server, ServingStatus::Serving).await;
    let op = common::operator(&server).await.1;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let request = pb::ScheduleMaintenanceRequest {
        title: "login freeze".into(),
        start_time: Some(prost_types::Timestamp { seconds: now, nanos: 0 }),
        end_time: Some(prost_types::Timestamp { seconds: now + 600, nanos: 0 }),
        components: vec!["logins".into()],
    };
    let mut platform = platform_client(&server).await;
    let window = platform.schedule_maintenance(bearer(request, &op)).await.unwrap().into_inner().window.unwrap();
    wait_for_health(&server, ServingStatus::NotServing).await;
    platform.cancel_maintenance(bearer(pb::CancelMaintenanceRequest { id: window.id }, &op)).await.unwrap();
    wait_for_health(&server, ServingStatus::Serving).await;
}

async fn component_state(server: &common::TestServer, name: &str) -> (pb::ComponentState, String) {
    let status = platform_client(server).await.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    let component = status.components.into_iter().find(|c| c.name == name).unwrap();
    (component.state(), component.detail)
}

async fn email_degrades_while_smtp_is_down_and_recovers(backend: Backend) {
    if !common::tools::require(&[Tool::SmtpServer]) {
        return;
    }
    let port = common::free_port();
    let server = common::start(backend, move |mut config| {
        config.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        config.mail.retry_base_ms = 200;
        config.mail.retry_max_ms = 500;
        config.platform.status_cache_ms = 0;
        config.platform.email_backlog_max_wait_secs = 1;
        config
    });
    let t = tenant(&server);
    for _ in 0..5 {
        try_login(&server, &t.manager_login, "wrong").await.unwrap_err();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (state, detail) = component_state(&server, "email").await;
        if state == pb::ComponentState::Degraded {
            assert!(detail.contains("waiting") && detail.contains("failing"), "{detail}");
            assert!(!detail.contains("@example.com"), "no recipient in the public status: {detail}");
            break;
        }
        assert!(Instant::now() < deadline, "email never degraded: {detail}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sink = common::smtp::SmtpSink::start_on(port);
    sink.wait_for(1, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while component_state(&server, "email").await.0 != pb::ComponentState::Operational {
        assert!(Instant::now() < deadline, "email never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

on_both_backends!(
    every_configured_platform_is_located_by_username,
    maintenance_windows_are_scheduled_listed_and_cancelled_by_operators,
    health_stops_serving_during_a_login_maintenance_when_configured,
    email_degrades_while_smtp_is_down_and_recovers,
);

/// PostgreSQL only: an embedded SQLite file cannot become unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_a_database_outage_and_recovers_by_itself() {
    if !common::postgres_configured() {
        return;
    }
    let dir = common::scratch_dir("proxy");
    let direct = url::Url::parse(&common::fresh_database(Backend::Postgres, &dir).await).unwrap();
    let upstream = format!("{}:{}", direct.host_str().unwrap(), direct.port().unwrap());
    let proxy = Proxy::start(upstream).await;
    let mut via_proxy = direct.clone();
    via_proxy.set_port(Some(proxy.port)).unwrap();
    let server = common::start_with(Backend::Postgres, Some(via_proxy.to_string()), |mut config| {
        config.platform.status_cache_ms = 0;
        config
    });
    wait_for_health(&server, ServingStatus::Serving).await;
    assert_eq!(component_state(&server, "database").await.0, pb::ComponentState::Operational);

    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (state, _) = component_state(&server, "database").await;
        if state == pb::ComponentState::Outage {
            break;
        }
        assert!(Instant::now() < deadline, "the outage was never reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = platform_client(&server).await.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.overall(), pb::ComponentState::Outage);
    wait_for_health(&server, ServingStatus::NotServing).await;
    // Unready, not dead: the liveness probe must not restart replicas over a database outage.
    wait_for_service_health(&server, identity::server::LIVENESS_SERVICE, ServingStatus::Serving).await;
    let refused = try_login(&server, "anyone_at_all", "password").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "a clear UNAVAILABLE while the database is away");

    proxy.open().await;
    wait_for_health(&server, ServingStatus::Serving).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while component_state(&server, "database").await.0 != pb::ComponentState::Operational {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
