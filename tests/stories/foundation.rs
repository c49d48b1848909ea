//! The service comes up healthy on a fresh database, describes itself by
//! reflection, migrates up and down, bootstraps a first Manager, and stops
//! gracefully — on SQLite and PostgreSQL.

use crate::common;

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use common::{Backend, cli_command, free_port, fresh_database, identity_cli, scratch_dir, server, stderr, stdout};
use identity::{
    domain::{Role, UserStatus},
    store::{Store, users},
};
use tokio_stream::StreamExt;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

async fn wait_until_serving(url: String, service: &str) -> ServingStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let channel = tonic::transport::Channel::from_shared(url.clone()).expect("url").connect().await;
        let status = match channel {
            Ok(channel) => HealthClient::new(channel)
                .check(HealthCheckRequest { service: service.to_owned() })
                .await
                .map(|r| r.into_inner().status()),
            Err(_) => Ok(ServingStatus::Unknown),
        };
        if matches!(status, Ok(ServingStatus::Serving)) || Instant::now() > deadline {
            return status.unwrap_or(ServingStatus::Unknown);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn health_reports_serving_for_every_service(backend: Backend) {
    let server = server(backend);
    for service in identity::grpc::SERVICE_NAMES.into_iter().chain([""]) {
        assert_eq!(wait_until_serving(server.url(), service).await, ServingStatus::Serving, "{service:?}");
    }
    let mut health = HealthClient::new(server.channel().await);
    let unknown = health.check(HealthCheckRequest { service: "identity.v1.Nope".to_owned() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

async fn reflection_lists_every_service(backend: Backend) {
    let server = server(backend);
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses.next().await.expect("one response").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {:?}", response.message_response);
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in identity::grpc::SERVICE_NAMES.into_iter().chain(["grpc.health.v1.Health"]) {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }

    // The list of error reasons is published too, for clients to generate from.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol("identity.v1.ErrorReason".to_owned())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses.next().await.expect("one response").expect("ok");
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("expected the file of ErrorReason, got {:?}", response.message_response);
    };
    let file = <prost_types::FileDescriptorProto as prost::Message>::decode(files.file_descriptor_proto[0].as_slice())
        .unwrap();
    let reasons = file.enum_type.iter().find(|e| e.name() == "ErrorReason").expect("ErrorReason");
    assert!(reasons.value.iter().any(|v| v.name() == "ERROR_REASON_BATCH_TOO_LARGE"), "{reasons:?}");
}

async fn migrations_go_up_down_and_up_again(backend: Backend) {
    let dir = scratch_dir("migrate");
    let database_url = fresh_database(backend, &dir).await;
    let env = [("IDENTITY_DATABASE_URL", database_url.as_str())];

    let status = identity_cli(&["migrate", "status"], &env, None);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).starts_with("pending m20261123_000001_initial"), "{}", stdout(&status));

    for (args, expected) in [
        (vec!["migrate"], "applied"),
        (vec!["migrate", "down", "--all"], "pending"),
        (vec!["migrate", "up"], "applied"),
    ] {
        let run = identity_cli(&args, &env, None);
        assert!(run.status.success(), "{args:?}: {}", stderr(&run));
        let status = identity_cli(&["migrate", "status"], &env, None);
        assert!(stdout(&status).starts_with(expected), "after {args:?}: {}", stdout(&status));
    }

    // The schema is usable after the round trip.
    let store = Store::connect(&database_url, 2).await.unwrap();
    assert!(store.is_migrated().await.unwrap());
    assert!(users::find_by_login(store.connection(), "nobody").await.unwrap().is_none());
}

async fn bootstrap_creates_a_subscription_with_a_first_manager(backend: Backend) {
    let dir = scratch_dir("bootstrap");
    let database_url = fresh_database(backend, &dir).await;
    let env = [("IDENTITY_DATABASE_URL", database_url.as_str())];

    let with_password = identity_cli(
        &[
            "bootstrap",
            "--subscription",
            "acme",
            "--login",
            "john_d",
            "--email",
            "john@example.com",
            "--password-stdin",
        ],
        &env,
        Some("correct horse battery staple\n"),
    );
    assert!(with_password.status.success(), "{}", stderr(&with_password));
    assert!(stdout(&with_password).contains("Manager login:   john_d"));
    assert!(!stdout(&with_password).contains("activation link"), "a Manager with a password needs no link");

    let store = Store::connect(&database_url, 2).await.unwrap();
    let john = users::find_by_login(store.connection(), "john_d").await.unwrap().expect("john_d exists");
    assert_eq!((john.role, john.status), (Role::Manager, UserStatus::Active));
    let hash = users::password_hash(store.connection(), &john.id).await.unwrap().expect("a password hash");
    assert!(hash.starts_with("$argon2id$"), "only a hash is stored");
    assert!(users::find_by_login(store.connection(), "John_D").await.unwrap().is_none(), "logins are case-sensitive");

    let password_file = dir.join("password.txt");
    std::fs::write(&password_file, "zebra kettle orbit lantern\n").unwrap();
    let from_file = identity_cli(
        &[
            "bootstrap",
            "--subscription",
            "globex",
            "--email",
            "g@example.com",
            "--password-file",
            password_file.to_str().unwrap(),
        ],
        &env,
        None,
    );
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    assert!(stdout(&from_file).contains("Manager login:   globex_l1"), "generated login: {}", stdout(&from_file));

    let without_password =
        identity_cli(&["bootstrap", "--subscription", "initech", "--email", "p@example.com"], &env, None);
    assert!(without_password.status.success(), "{}", stderr(&without_password));
    let out = stdout(&without_password);
    let link = out.lines().find_map(|l| l.split("(shown once): ").nth(1)).expect("an activation link");
    assert!(link.starts_with("http://127.0.0.1:8080/activate/") && link.len() > 60, "{link}");
    let login = out.lines().find_map(|l| l.split("Manager login:   ").nth(1)).unwrap();
    let pending = users::find_by_login(store.connection(), login).await.unwrap().unwrap();
    assert_eq!(pending.status, UserStatus::PendingActivation);
    assert!(users::password_hash(store.connection(), &pending.id).await.unwrap().is_none());

    let again = identity_cli(&["bootstrap", "--subscription", "acme", "--email", "x@example.com"], &env, None);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("a subscription with prefix `acme` already exists"), "{}", stderr(&again));

    let weak = identity_cli(
        &["bootstrap", "--subscription", "weak", "--email", "w@example.com", "--password-stdin"],
        &env,
        Some("password\n"),
    );
    assert!(!weak.status.success());
    assert!(stderr(&weak).contains("new_password must be 12 to 128 characters long"), "{}", stderr(&weak));

    let bad_prefix =
        identity_cli(&["bootstrap", "--subscription", "Bad-Prefix", "--email", "b@example.com"], &env, None);
    assert!(!bad_prefix.status.success());
    assert!(stderr(&bad_prefix).contains("login_prefix must be 2 to 16 lower-case letters"), "{}", stderr(&bad_prefix));
}

/// Starts `identity serve` and collects stdout until it says it listens.
fn spawn_serve(env: &[(&str, &str)]) -> (std::process::Child, Vec<String>) {
    let mut child = cli_command(&["serve"], env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn identity serve");
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in reader.by_ref() {
        let line = line.expect("utf-8 stdout");
        let done = line.contains("gRPC listening on");
        lines.push(line);
        if done {
            break;
        }
    }
    // Keep draining, as a supervisor would, so later lines find a reader.
    std::thread::spawn(move || reader.for_each(drop));
    (child, lines)
}

fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "identity did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn first_serve_prints_the_manager_link_once_and_stops_on_sigterm(backend: Backend) {
    let dir = scratch_dir("serve");
    let database_url = fresh_database(backend, &dir).await;
    let grpc_addr = format!("127.0.0.1:{}", free_port());
    let http_addr = format!("127.0.0.1:{}", free_port());
    let env = [
        ("IDENTITY_DATABASE_URL", database_url.as_str()),
        ("IDENTITY_GRPC_ADDR", grpc_addr.as_str()),
        ("IDENTITY_HTTP_ADDR", http_addr.as_str()),
        ("IDENTITY_BOOTSTRAP__SUBSCRIPTION_PREFIX", "first"),
    ];

    let (mut child, lines) = spawn_serve(&env);
    let text = lines.join("\n");
    assert!(text.contains("First start: created a subscription and its Manager."), "{text}");
    assert!(text.contains("Manager login:   first_l1"), "{text}");
    assert!(text.contains("one-time activation link (shown once): http://127.0.0.1:8080/activate/"), "{text}");
    assert_eq!(wait_until_serving(format!("http://{grpc_addr}"), "").await, ServingStatus::Serving);
    assert!(terminate(&mut child).success(), "a SIGTERM stop is a clean exit");

    let (mut child, lines) = spawn_serve(&env);
    let text = lines.join("\n");
    assert!(!text.contains("activation link"), "the link is printed only on the very first start: {text}");
    assert_eq!(wait_until_serving(format!("http://{grpc_addr}"), "").await, ServingStatus::Serving);
    assert!(terminate(&mut child).success());
}

/// Shell completions and the manual page come from the CLI's own definition,
/// with no configuration and no database.
#[test]
fn completions_and_the_manual_page_are_generated_from_the_cli() {
    let bash = identity_cli(&["completions", "bash"], &[("IDENTITY_DATABASE_URL", "not a url")], None);
    assert!(bash.status.success(), "{}", stderr(&bash));
    let script = stdout(&bash);
    for word in ["serve", "support", "reset-password", "operator", "--config"] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    let man = identity_cli(&["man"], &[], None);
    assert!(man.status.success(), "{}", stderr(&man));
    let page = stdout(&man);
    assert!(page.contains(".TH identity 1") && page.contains("support"), "{page}");
    let unknown = identity_cli(&["completions", "tcsh"], &[], None);
    assert!(!unknown.status.success() && stderr(&unknown).contains("possible values"), "{}", stderr(&unknown));
}

on_both_backends!(
    health_reports_serving_for_every_service,
    reflection_lists_every_service,
    migrations_go_up_down_and_up_again,
    bootstrap_creates_a_subscription_with_a_first_manager,
    first_serve_prints_the_manager_link_once_and_stops_on_sigterm,
);

#[test]
fn a_bad_setting_is_named_and_stops_the_start() {
    let output = identity_cli(&["migrate", "status"], &[("IDENTITY_ARGON2__MEMORY_KIB", "lots")], None);
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output).to_lowercase();
    assert!(error.contains("invalid configuration") && error.contains("memory_kib"), "{error}");

    let output = identity_cli(&["migrate", "status"], &[("IDENTITY_PUBLIC_URL", "example.com")], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("`public_url` is not a URL"), "{}", stderr(&output));
}

#[test]
fn serve_without_migrations_refuses_an_unmigrated_database() {
    let dir = scratch_dir("nomigrate");
    let url = format!("sqlite://{}", dir.join("identity.db").display());
    let output = identity_cli(
        &["serve", "--no-migrate"],
        &[
            ("IDENTITY_DATABASE_URL", &url),
            ("IDENTITY_GRPC_ADDR", "127.0.0.1:0"),
            ("IDENTITY_HTTP_ADDR", "127.0.0.1:0"),
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("run `identity migrate` first"), "{}", stderr(&output));
}
