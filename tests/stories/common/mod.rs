//! Shared test harness: one real server per backend for the whole binary, on an
//! ephemeral loopback port, against a fresh SQLite file or a fresh PostgreSQL
//! database (when `TEST_DATABASE_URL` names a PostgreSQL server).
#![allow(dead_code)]

pub mod http;
pub mod otlp;
pub mod panics;
pub mod process;
pub mod proxy;
pub mod second_factor;
pub mod smtp;
pub mod tools;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::Duration,
};

use identity::{
    config::{Argon2Config, Config},
    server::Server,
};
use sea_orm::{ConnectionTrait, Database, Statement};
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub grpc_addr: SocketAddr,
    pub database_url: String,
    pub dir: PathBuf,
    /// Where its data keys are (default: beside the SQLite file, or `./data`).
    pub data_keys: identity::config::DataKeysConfig,
    /// Ends an in-process server when the story drops it (None for views
    /// of servers that end otherwise).
    pub stop: Option<Stop>,
}

/// Stops an in-process server when dropped. Every story runs in one test
/// binary: a server left running would keep its pool of database connections
/// for the whole run, and a run starts dozens (PostgreSQL refuses connections
/// past `max_connections`). The binary's shared servers live in statics and
/// are never dropped.
pub struct Stop(#[allow(dead_code)] tokio::sync::oneshot::Sender<()>);

/// A [`Stop`] and the future that resolves once it is dropped: what
/// `Server::run` takes as its shutdown signal.
pub fn stop_signal() -> (Stop, impl std::future::Future<Output = ()> + Send + 'static) {
    let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
    (Stop(sender), async move {
        let _ = receiver.await;
    })
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).expect("valid url").connect().await.expect("connect to the test server")
    }
}

/// Runs a story against SQLite and, when configured, PostgreSQL, sharing the
/// machine with the binary's other stories. `alone:` stories (timing
/// measurements) run with nothing else of the binary running.
#[macro_export]
macro_rules! on_both_backends {
    (alone: $($story:ident),* $(,)?) => {$(
        mod $story {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let _alone = $crate::common::machine_alone().await;
                super::$story($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::postgres_configured() {
                    let _alone = $crate::common::machine_alone().await;
                    super::$story($crate::common::Backend::Postgres).await
                }
            }
        }
    )*};
    ($($story:ident),* $(,)?) => {$(
        mod $story {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let _shared = $crate::common::shared_machine().await;
                super::$story($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::postgres_configured() {
                    let _shared = $crate::common::shared_machine().await;
                    super::$story($crate::common::Backend::Postgres).await
                }
            }
        }
    )*};
}

/// Timing measurements must not share the two cores with a load: every
/// story holds a shared guard while it runs, a measurement the exclusive one.
static MACHINE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub async fn shared_machine() -> tokio::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().await
}

/// [`shared_machine`] for a story that is not async.
pub fn shared_machine_blocking() -> tokio::sync::RwLockReadGuard<'static, ()> {
    MACHINE.blocking_read()
}

pub async fn machine_alone() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// The PostgreSQL admin URL from `TEST_DATABASE_URL`. Unset: PostgreSQL
/// stories are skipped, except under CI, where that is a failure.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must export TEST_DATABASE_URL so that every story also runs on PostgreSQL"
            );
            None
        }
    }
}

pub fn postgres_configured() -> bool {
    let configured = postgres_admin_url().is_some();
    if !configured {
        eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL variant");
    }
    configured
}

/// A scratch directory that lives as long as the test process.
pub fn scratch_dir(label: &str) -> PathBuf {
    tempfile::Builder::new().prefix(&format!("identity-{label}-")).tempdir().expect("temp dir").keep()
}

/// A database nobody else uses: a new SQLite file, or a new PostgreSQL database.
pub async fn fresh_database(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("identity.db").display()),
        Backend::Postgres => {
            let admin = postgres_admin_url().expect("TEST_DATABASE_URL");
            let name = format!("identity_test_{}", uuid::Uuid::new_v4().simple());
            let db = Database::connect(&admin).await.expect("connect to TEST_DATABASE_URL");
            db.execute_raw(Statement::from_string(db.get_database_backend(), format!("CREATE DATABASE \"{name}\"")))
                .await
                .expect("create a test database");
            db.close().await.ok();
            let mut url = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
            url.set_path(&name);
            url.to_string()
        }
    }
}

/// Fast argon2 parameters: tests only, never the defaults.
pub fn cheap_argon2() -> Argon2Config {
    Argon2Config { memory_kib: 64, iterations: 1, parallelism: 1, ..Argon2Config::default() }
}

pub fn test_config(database_url: &str, dir: &Path) -> Config {
    let mut config = Config {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        database_url: database_url.to_owned(),
        outbox_dir: dir.join("outbox"),
        argon2: cheap_argon2(),
        shutdown_grace_secs: 2,
        ..Config::default()
    };
    config.bootstrap.enabled = false;
    config.log_filter = "warn".to_owned();
    // Stories hammer single accounts on purpose; the throttle has stories of its own.
    config.throttle.login_per_user = 10_000;
    config.throttle.login_per_ip = 100_000;
    config.captcha.difficulty_bits = 8;
    // Stories send forgot-password requests in bursts: the difficulty stays put unless one raises the cap.
    config.captcha.max_difficulty_bits = 8;
    // The replay stories present a rotated refresh token at once and expect the
    // revocation; the grace has a story of its own.
    config.tokens.refresh_reuse_grace_secs = 0;
    config
}

static SQLITE: OnceLock<TestServer> = OnceLock::new();
static POSTGRES: OnceLock<TestServer> = OnceLock::new();

/// The shared server of this test binary for `backend`.
pub fn server(backend: Backend) -> &'static TestServer {
    let cell = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    };
    cell.get_or_init(|| start(backend, |config| config))
}

/// Starts a server of its own on a dedicated thread and runtime, so that it
/// outlives any one test's runtime.
pub fn start(backend: Backend, adjust: impl FnOnce(Config) -> Config + Send + 'static) -> TestServer {
    start_with(backend, None, adjust)
}

/// Like [`start`], on a database URL of the caller's (e.g. behind a proxy).
pub fn start_with(
    backend: Backend,
    database_url: Option<String>,
    adjust: impl FnOnce(Config) -> Config + Send + 'static,
) -> TestServer {
    launch(backend, database_url, None, adjust)
}

/// Like [`start`], on a clock of the story's: time travel without touching rows.
pub fn start_with_clock(
    backend: Backend,
    clock: identity::clock::SharedClock,
    adjust: impl FnOnce(Config) -> Config + Send + 'static,
) -> TestServer {
    launch(backend, None, Some(clock), adjust)
}

fn launch(
    backend: Backend,
    database_url: Option<String>,
    clock: Option<identity::clock::SharedClock>,
    adjust: impl FnOnce(Config) -> Config + Send + 'static,
) -> TestServer {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let dir = scratch_dir("server");
            let database_url = match database_url {
                Some(url) => url,
                None => fresh_database(backend, &dir).await,
            };
            let config = adjust(test_config(&database_url, &dir));
            register_outbox_dir(config.outbox_dir.clone());
            let data_keys = config.data_keys.clone();
            let server = match clock {
                Some(clock) => Server::build_with_clock(config, clock).await,
                None => Server::build(config).await,
            }
            .expect("server starts");
            let (stop, stopped) = stop_signal();
            let ready = TestServer { grpc_addr: server.grpc_addr(), database_url, dir, data_keys, stop: Some(stop) };
            ready_tx.send(ready).expect("report readiness");
            server.run(stopped).await.expect("server runs");
        });
    });
    ready_rx.recv_timeout(Duration::from_secs(60)).expect("server started in time")
}

/// Runs the real `identity` binary with a clean `IDENTITY_*` environment plus `env`.
pub fn identity_cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = cli_command(args, env);
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("run the identity binary");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("identity binary finishes")
}

pub fn cli_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_identity"));
    command.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("IDENTITY_") {
            command.env_remove(key);
        }
    }
    command.env("IDENTITY_ARGON2__MEMORY_KIB", "64").env("IDENTITY_ARGON2__ITERATIONS", "1");
    command.env("IDENTITY_LOG_FILTER", "warn");
    command.env("IDENTITY_OUTBOX_DIR", scratch_dir("cli-outbox"));
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// A unique suffix for fixture names, so stories never collide on a shared server.
pub fn unique(prefix: &str) -> String {
    let tail: String = uuid::Uuid::new_v4().simple().to_string().chars().take(8).collect();
    format!("{prefix}{tail}")
}

/// A subscription with an ACTIVE Manager whose password is known.
pub struct Tenant {
    pub prefix: String,
    pub manager_login: String,
    pub manager_password: String,
}

/// Bootstraps a fresh tenant on `server`'s database through the real CLI.
pub fn tenant(server: &TestServer) -> Tenant {
    let prefix = unique("t");
    let manager_login = format!("{prefix}_mgr");
    let manager_password = format!("Correct horse {prefix} battery!");
    let output = identity_cli(
        &[
            "bootstrap",
            "--subscription",
            &prefix,
            "--login",
            &manager_login,
            "--email",
            &format!("{prefix}@example.com"),
            "--password-stdin",
        ],
        &[("IDENTITY_DATABASE_URL", &server.database_url)],
        Some(&format!("{manager_password}\n")),
    );
    assert!(output.status.success(), "bootstrap failed: {}", stderr(&output));
    Tenant { prefix, manager_login, manager_password }
}

/// A request carrying `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii token"));
    request
}

pub async fn auth_client(server: &TestServer) -> identity::pb::auth_client::AuthClient<Channel> {
    identity::pb::auth_client::AuthClient::new(server.channel().await)
}

/// Logs in and returns the session, panicking on anything else.
pub async fn login(server: &TestServer, login: &str, password: &str) -> identity::pb::Session {
    let response = auth_client(server)
        .await
        .login(identity::pb::LoginRequest { user_login: login.to_owned(), password: password.to_owned() })
        .await
        .unwrap_or_else(|status| panic!("login of {login} failed: {status:?}"))
        .into_inner();
    match response.result {
        Some(identity::pb::login_response::Result::Session(session)) => session,
        other => panic!("expected a session, got {other:?}"),
    }
}

pub async fn try_login(
    server: &TestServer,
    login: &str,
    password: &str,
) -> Result<identity::pb::LoginResponse, tonic::Status> {
    auth_client(server)
        .await
        .login(identity::pb::LoginRequest { user_login: login.to_owned(), password: password.to_owned() })
        .await
        .map(tonic::Response::into_inner)
}

/// The stable reason of an error status (google.rpc.ErrorInfo).
pub fn reason(status: &tonic::Status) -> String {
    identity::grpc::status::reason(status).unwrap_or_default()
}

/// The database behind `server`, for assertions on what was recorded.
pub async fn store(server: &TestServer) -> identity::store::Store {
    identity::store::Store::connect(&server.database_url, 4).await.expect("connect to the test database")
}

/// Counts audit rows of `action` whose target is `login`.
pub async fn audit_count(server: &TestServer, action: &str, target_login: &str, outcome: Option<&str>) -> u64 {
    use identity::store::entities::audit_event;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let store = store(server).await;
    let mut query = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq(action))
        .filter(audit_event::Column::TargetLogin.eq(target_login));
    if let Some(outcome) = outcome {
        query = query.filter(audit_event::Column::Outcome.eq(outcome));
    }
    query.count(store.connection()).await.expect("count audit rows")
}

pub async fn users_client(server: &TestServer) -> identity::pb::users_client::UsersClient<Channel> {
    identity::pb::users_client::UsersClient::new(server.channel().await)
}

pub async fn reset_client(server: &TestServer) -> identity::pb::reset_client::ResetClient<Channel> {
    identity::pb::reset_client::ResetClient::new(server.channel().await)
}

/// Creates a user as the holder of `token`; panics on refusal.
pub async fn create_user(
    server: &TestServer,
    token: &str,
    login: &str,
    role: identity::pb::Role,
    unit: &str,
) -> identity::pb::User {
    users_client(server)
        .await
        .create_user(bearer(
            identity::pb::CreateUserRequest {
                user_login: login.to_owned(),
                email: if login.is_empty() {
                    "generated@example.com".to_owned()
                } else {
                    format!("{login}@example.com")
                },
                first_name: "Test".to_owned(),
                last_name: login.to_owned(),
                role: role.into(),
                business_unit: unit.to_owned(),
            },
            token,
        ))
        .await
        .unwrap_or_else(|status| panic!("create {login}: {status:?}"))
        .into_inner()
        .user
        .expect("user")
}

/// Resets `logins` as the holder of `token` (email=0) and returns the per-user results.
pub async fn reset_results(server: &TestServer, token: &str, logins: &[&str]) -> Vec<identity::pb::ResetResult> {
    let request = identity::pb::ResetPasswordsRequest {
        user_logins: logins.iter().map(|l| (*l).to_owned()).collect(),
        all: false,
        notify_by_email: false,
        ..Default::default()
    };
    reset_client(server)
        .await
        .reset_passwords(bearer(request, token))
        .await
        .unwrap_or_else(|status| panic!("reset {logins:?}: {status:?}"))
        .into_inner()
        .results
}

/// A new password for `login`, set by the holder of `token` (email=0: the
/// password comes back and a pending account becomes active).
pub async fn reset_password(server: &TestServer, token: &str, login: &str) -> String {
    let response = reset_client(server)
        .await
        .reset_passwords(bearer(
            identity::pb::ResetPasswordsRequest {
                user_logins: vec![login.to_owned()],
                all: false,
                notify_by_email: false,
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap_or_else(|status| panic!("reset {login}: {status:?}"))
        .into_inner();
    let result = response.results.into_iter().next().expect("one result");
    assert!(result.changed, "reset of {login} refused: {}", result.message);
    result.password
}

/// The password of every fixture operator.
pub const OPERATOR_PASSWORD: &str = "operator pass phrase long";

/// A new platform operator, made by the real CLI (the only way operators are
/// made), signed in: (login, access token).
pub async fn operator(server: &TestServer) -> (String, String) {
    let login = unique("op");
    let output = identity_cli(
        &["operator", "create", "--login", &login, "--email", "ops@example.com", "--password-stdin"],
        &[("IDENTITY_DATABASE_URL", &server.database_url)],
        Some(&format!("{OPERATOR_PASSWORD}\n")),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let token = login_session(server, &login, OPERATOR_PASSWORD).await;
    (login, token)
}

/// The password every fixture user chooses on activation.
pub const MEMBER_PASSWORD: &str = "plum orbit kettle harbor";

/// A user of `role` in `unit`, created by the holder of `token` and activated
/// through the link of their welcome email; returns a live session.
pub async fn member(server: &TestServer, token: &str, login: &str, role: identity::pb::Role, unit: &str) -> String {
    create_user(server, token, login, role, unit).await;
    let link = latest_link(server, login, "welcome").await;
    reset_client(server)
        .await
        .redeem_activation(identity::pb::RedeemActivationRequest {
            token: link,
            new_password: MEMBER_PASSWORD.to_owned(),
            captcha: None,
        })
        .await
        .unwrap_or_else(|status| panic!("activate {login}: {status:?}"));
    login_session(server, login, MEMBER_PASSWORD).await
}

/// A solved captcha from the server.
pub async fn solved_captcha(server: &TestServer) -> identity::pb::CaptchaSolution {
    let challenge = reset_client(server)
        .await
        .get_captcha_challenge(identity::pb::GetCaptchaChallengeRequest {})
        .await
        .expect("a challenge")
        .into_inner();
    assert_eq!(challenge.algorithm, "sha256-leading-zero-bits");
    let nonce = identity::crypto::captcha::solve(&challenge.challenge, challenge.difficulty_bits);
    identity::pb::CaptchaSolution { challenge: challenge.challenge, nonce: nonce.to_string() }
}

/// An instant a minute ago, in stored milliseconds: for time travel that
/// must stay inside housekeeping's grace, so the row is expired, not purged.
pub fn a_minute_ago_ms() -> i64 {
    use identity::clock::Clock;
    identity::clock::SystemClock.now_ms() - 60_000
}

/// Runs SQL on the test database directly: for fault injection and
/// time travel only, never for fixtures.
pub async fn execute_sql(server: &TestServer, sql: &str) {
    use sea_orm::ConnectionTrait;
    let store = store(server).await;
    store.connection().execute_unprepared(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Asserts that an email of `kind` to `login` is in the outbox.
pub async fn assert_mail_sent(server: &TestServer, login: &str, kind: &str) {
    assert!(mail_count(server, login, kind).await > 0, "no {kind} email for {login}");
}

/// Waits (up to 5 s) for an email of `kind` to `login`: forgot-password
/// queues its email after the uniform answer.
pub async fn await_mail(server: &TestServer, login: &str, kind: &str) {
    for _ in 0..200 {
        if mail_count(server, login, kind).await > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {kind} email for {login} within 5 s");
}

/// How many emails of `kind` to `login` are in the outbox.
pub async fn mail_count(server: &TestServer, login: &str, kind: &str) -> u64 {
    use identity::store::entities::email_outbox;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let store = store(server).await;
    let user = identity::store::users::find_by_login(store.connection(), login).await.unwrap().expect("user exists");
    email_outbox::Entity::find()
        .filter(email_outbox::Column::UserId.eq(user.id))
        .filter(email_outbox::Column::Kind.eq(kind))
        .count(store.connection())
        .await
        .unwrap()
}

/// The token of the one-time link in the newest email of `kind` to `login`.
pub async fn latest_link(server: &TestServer, login: &str, kind: &str) -> String {
    use identity::store::entities::email_outbox;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let store = store(server).await;
    let user = identity::store::users::find_by_login(store.connection(), login).await.unwrap().expect("user exists");
    let mail = email_outbox::Entity::find()
        .filter(email_outbox::Column::UserId.eq(user.id))
        .filter(email_outbox::Column::Kind.eq(kind))
        .order_by_desc(email_outbox::Column::Id)
        .one(store.connection())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no {kind} email for {login}"));
    link_token(&email_text(server, &mail).await)
}

/// Outbox folders of every server this binary started: a message is written
/// by whichever replica's dispatcher claimed it.
static OUTBOX_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

pub fn register_outbox_dir(dir: PathBuf) {
    OUTBOX_DIRS.lock().unwrap_or_else(|e| e.into_inner()).push(dir);
}

/// The plain-text body of an outbox message: from its row while it waits,
/// else from the `.eml` file it was delivered as (delivery empties the row's body).
pub async fn email_text(server: &TestServer, mail: &identity::store::entities::email_outbox::Model) -> String {
    use identity::store::entities::email_outbox;
    use sea_orm::EntityTrait;
    let store = store(server).await;
    for _ in 0..400 {
        let row = email_outbox::Entity::find_by_id(mail.id.clone()).one(store.connection()).await.unwrap();
        let Some(row) = row else { panic!("outbox row {} purged", mail.id) };
        if !row.body_text.is_empty() {
            return opened(server, &row).await.body_text;
        }
        let dirs = OUTBOX_DIRS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let file = format!("{}.eml", row.id);
        if let Some(raw) = dirs.iter().find_map(|dir| std::fs::read_to_string(dir.join(&file)).ok()) {
            return plain_text_of(&raw);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("email {} was delivered to no known outbox folder", mail.id);
}

/// The decoded text/plain part of a raw message.
pub fn plain_text_of(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let start = raw.find("Content-Type: text/plain").expect("a text/plain part");
    let part = &raw[start..];
    let (headers, rest) = part.split_once("\n\n").expect("part headers end");
    let body = rest.split("\n--").next().unwrap_or(rest);
    let encoding = headers
        .lines()
        .find_map(|line| line.strip_prefix("Content-Transfer-Encoding:"))
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match encoding.as_str() {
        "base64" => {
            use base64::Engine;
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(compact).expect("base64 body"))
                .expect("utf-8 body")
        }
        "quoted-printable" => decode_quoted_printable(body),
        _ => body.to_owned(),
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok()))
            .flatten();
        if let Some(byte) = escaped {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An outbox row with its bodies in clear, opened with the data keys of
/// `server` (the default ones its database URL implies).
pub async fn opened(
    server: &TestServer,
    mail: &identity::store::entities::email_outbox::Model,
) -> identity::store::entities::email_outbox::Model {
    let mut config = test_config(&server.database_url, &server.dir);
    config.data_keys = server.data_keys.clone();
    let keys = identity::app::data_keys::load(&store(server).await, &config).await.expect("the server's data keys");
    identity::store::outbox::opened(&keys, mail).expect("the email's body opens")
}

/// The token of the first `/activate/<token>` link in an email body.
pub fn link_token(body: &str) -> String {
    let start = body.find("/activate/").expect("an activation link") + "/activate/".len();
    body[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

pub async fn login_session(server: &TestServer, login_name: &str, password: &str) -> String {
    login(server, login_name, password).await.access_token
}
