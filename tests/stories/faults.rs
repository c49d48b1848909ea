//! Faults injected into a running service: the database cut off in the middle
//! of a batch, `kill -9` inside a batch's transaction and in the middle of
//! email delivery, the SMTP relay gone for a while, the disk full or refusing
//! writes. After each: nothing half-done in the database, no email lost, none
//! sent for a change that did not commit, and recovery without help.

use crate::common;
use crate::common::tools::Tool;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::{Backend, TestServer, bearer, process::ServerProcess, proxy::Proxy, reason, smtp::SmtpSink, tenant};
use identity::pb::{self, Role};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const WAIT: Duration = Duration::from_secs(60);

async fn connect(url: &str) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(1).sqlx_logging(false);
    Database::connect(options).await.expect("connect to the test database")
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("one row");
    row.try_get_by_index::<i64>(0).expect("a count")
}

/// What a batch reset by email leaves behind, counted independently.
#[derive(Debug, PartialEq, Eq)]
struct ResetTraces {
    audited: i64,
    emails: i64,
    links: i64,
    passwords: i64,
}

impl ResetTraces {
    async fn read(url: &str) -> Self {
        let db = connect(url).await;
        let traces = ResetTraces {
            audited: count(
                &db,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'password.reset' AND outcome = 'SUCCESS'",
            )
            .await,
            emails: count(&db, "SELECT COUNT(*) FROM email_outbox WHERE kind = 'password_reset'").await,
            links: count(&db, "SELECT COUNT(*) FROM activation_tokens WHERE purpose = 'ADMIN_RESET'").await,
            // The Manager's own password is the only one set before the batch.
            passwords: count(&db, "SELECT COUNT(*) FROM password_credentials").await - 1,
        };
        db.close().await.ok();
        traces
    }

    fn uniform(count: i64) -> Self {
        ResetTraces { audited: count, emails: count, links: count, passwords: count }
    }
}

async fn manager(server: &TestServer) -> String {
    let t = tenant(server);
    common::login_session(server, &t.manager_login, &t.manager_password).await
}

/// `count` Readers created through the API, four at a time; returns their logins.
async fn create_users(server: &TestServer, token: &str, count: usize) -> Vec<String> {
    let channel = server.channel().await;
    let prefix = common::unique("u");
    let mut set = tokio::task::JoinSet::new();
    for lane in 0..4 {
        let (channel, token, prefix) = (channel.clone(), token.to_owned(), prefix.clone());
        set.spawn(async move {
            let mut users = pb::users_client::UsersClient::new(channel);
            let mut logins = Vec::new();
            for i in (lane..count).step_by(4) {
                let login = format!("{prefix}_{i:04}");
                let request = pb::CreateUserRequest {
                    user_login: login.clone(),
                    email: format!("{login}@example.com"),
                    first_name: "Fault".to_owned(),
                    last_name: login.clone(),
                    role: Role::Reader.into(),
                    business_unit: String::new(),
                };
                users.create_user(bearer(request, &token)).await.unwrap_or_else(|s| panic!("create {login}: {s:?}"));
                logins.push(login);
            }
            logins
        });
    }
    set.join_all().await.into_iter().flatten().collect()
}

/// Everyone the Manager may reset, notified by email.
async fn reset_everyone_by_email(channel: Channel, token: String) -> Result<usize, tonic::Status> {
    let request =
        pb::ResetPasswordsRequest { user_logins: Vec::new(), all: true, notify_by_email: true, ..Default::default() };
    let response = pb::reset_client::ResetClient::new(channel).reset_passwords(bearer(request, &token)).await?;
    Ok(response.into_inner().results.iter().filter(|r| r.changed).count())
}

/// Returns once a write transaction has been open for a while (seen on two
/// probes 5 ms apart: a batch writes set by set, so its transaction is short): PostgreSQL shows it in `pg_stat_activity` (a
/// transaction id is assigned at its first write); on SQLite the write lock
/// it holds turns a `BEGIN IMMEDIATE` away.
async fn wait_for_write_transaction(backend: Backend, url: &str) {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(1).sqlx_logging(false);
    options.map_sqlx_sqlite_opts(|o| o.busy_timeout(Duration::ZERO));
    let db = Database::connect(options).await.expect("connect the probe");
    let deadline = Instant::now() + WAIT;
    let mut seen = 0;
    while seen < 2 {
        assert!(Instant::now() < deadline, "no write transaction was seen");
        let open = match backend {
            Backend::Postgres => {
                let sql = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                           AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()";
                count(&db, sql).await > 0
            }
            Backend::Sqlite => {
                let immediate = TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..TransactionOptions::default()
                };
                match db.begin_with_options(immediate).await {
                    Ok(txn) => {
                        txn.rollback().await.expect("roll the probe back");
                        false
                    }
                    Err(_) => true,
                }
            }
        };
        seen = if open { seen + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    db.close().await.ok();
}

/// Emails neither sent nor given up yet.
async fn pending_emails(url: &str) -> i64 {
    let db = connect(url).await;
    let pending = count(&db, "SELECT COUNT(*) FROM email_outbox WHERE sent_at IS NULL AND failed_at IS NULL").await;
    db.close().await.ok();
    pending
}

async fn wait_until_delivered(url: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    loop {
        let pending = pending_emails(url).await;
        if pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{pending} emails still undelivered; log:\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Message-ID header of a raw message.
fn message_id(raw: &str) -> String {
    raw.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case("Message-ID").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("a message without Message-ID:\n{raw}"))
}

/// Every committed email reached the sink at least once, each copy with the
/// Message-ID of its outbox row, and nothing else arrived. Returns the
/// number of rows and of extra copies.
async fn assert_every_email_delivered(url: &str, sink: &SmtpSink) -> (usize, usize) {
    let db = connect(url).await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT message_id, CASE WHEN sent_at IS NULL THEN 0 ELSE 1 END FROM email_outbox".to_owned(),
        ))
        .await
        .expect("read the outbox");
    db.close().await.ok();
    let mut committed = HashSet::new();
    for row in rows {
        let id: String = row.try_get_by_index(0).expect("message_id");
        let sent: i32 = row.try_get_by_index(1).expect("sent");
        assert_eq!(sent, 1, "{id} is not marked sent");
        committed.insert(id);
    }
    let mut received: HashMap<String, usize> = HashMap::new();
    for raw in sink.messages() {
        *received.entry(message_id(&raw)).or_default() += 1;
    }
    let unknown: Vec<&String> = received.keys().filter(|id| !committed.contains(*id)).collect();
    assert!(unknown.is_empty(), "emails for changes that never committed: {unknown:?}");
    let lost: Vec<&String> = committed.iter().filter(|id| !received.contains_key(*id)).collect();
    assert!(lost.is_empty(), "{} committed emails never arrived: {lost:?}", lost.len());
    (committed.len(), received.values().map(|copies| copies - 1).sum())
}

async fn wait_for_health(url: &str, wanted: ServingStatus) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = match Channel::from_shared(url.to_owned()).expect("url").connect().await {
            Ok(channel) => HealthClient::new(channel)
                .check(HealthCheckRequest { service: String::new() })
                .await
                .map(|r| r.into_inner().status())
                .unwrap_or(ServingStatus::Unknown),
            Err(_) => ServingStatus::Unknown,
        };
        if status == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "health never became {wanted:?} (is {status:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const CUT_BATCH: usize = 300;

/// PostgreSQL only: an embedded SQLite file cannot become unreachable.
/// The connection dies while a 300-user batch is inside its transaction:
/// the caller gets UNAVAILABLE, nothing of the batch is in the database, and
/// once the network is back the same call succeeds on the same process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_cut_mid_batch_commits_nothing_and_recovers_without_restart() {
    if !common::postgres_configured() {
        return;
    }
    let dir = common::scratch_dir("cut");
    let direct = common::fresh_database(Backend::Postgres, &dir).await;
    let parsed = url::Url::parse(&direct).expect("a URL");
    let proxy = Proxy::start(format!("{}:{}", parsed.host_str().expect("host"), parsed.port().expect("port"))).await;
    let mut via_proxy = parsed.clone();
    via_proxy.set_port(Some(proxy.port)).expect("a port");
    let server = common::start_with(Backend::Postgres, Some(via_proxy.to_string()), |config| config);
    let token = manager(&server).await;
    create_users(&server, &token, CUT_BATCH).await;
    wait_until_delivered(&direct, String::new).await;
    assert_eq!(ResetTraces::read(&direct).await, ResetTraces::uniform(0));

    let batch = tokio::spawn(reset_everyone_by_email(server.channel().await, token.clone()));
    wait_for_write_transaction(Backend::Postgres, &direct).await;
    proxy.cut();
    let refused = batch.await.expect("the call returns").expect_err("the batch cannot commit");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::Unavailable, "UNAVAILABLE"), "{refused:?}");
    assert_eq!(ResetTraces::read(&direct).await, ResetTraces::uniform(0), "nothing of the batch committed");

    proxy.open().await;
    wait_for_health(&server.url(), ServingStatus::Serving).await;
    let changed = reset_everyone_by_email(server.channel().await, token).await.expect("the same batch, again");
    assert_eq!(changed, CUT_BATCH);
    assert_eq!(ResetTraces::read(&direct).await, ResetTraces::uniform(CUT_BATCH as i64));
    wait_until_delivered(&direct, String::new).await;
}

const KILL_BATCH: usize = 200;

/// `kill -9` inside a 200-user batch's transaction, then again while its
/// emails go out through a slow SMTP server. After each restart the batch is
/// all there or not at all, and in the end every committed change's email
/// arrived (a copy in flight at the kill may arrive twice, with the same
/// Message-ID), none for the batch that died uncommitted.
async fn kill_9_in_a_batch_and_in_dispatch_loses_nothing(backend: Backend) {
    if !common::tools::require(&[Tool::SmtpServer]) {
        return;
    }
    let sink = SmtpSink::start();
    let url = common::fresh_database(backend, &common::scratch_dir("kill9")).await;
    let smtp_url = sink.url();
    let mut server = ServerProcess::spawn(
        &url,
        &[
            ("IDENTITY_SMTP_URL", &smtp_url),
            ("IDENTITY_MAIL__POLL_INTERVAL_MS", "50"),
            ("IDENTITY_MAIL__RETRY_BASE_MS", "200"),
            ("IDENTITY_MAIL__RETRY_MAX_MS", "1000"),
        ],
    );
    let handle = server.test_server();
    let token = manager(&handle).await;
    create_users(&handle, &token, KILL_BATCH).await;
    wait_until_delivered(&url, || server.log()).await;
    let welcomes = sink.messages().len();
    assert_eq!(welcomes, KILL_BATCH);

    // 1. Killed inside the batch's transaction.
    let batch = tokio::spawn(reset_everyone_by_email(handle.channel().await, token.clone()));
    wait_for_write_transaction(backend, &url).await;
    server.kill9();
    let answered = batch.await.expect("the call returns");
    server.restart();
    let after_kill = ResetTraces::read(&url).await;
    let committed = match &answered {
        Ok(changed) => *changed as i64,
        Err(_) => 0,
    };
    assert_eq!(after_kill, ResetTraces::uniform(committed), "all or nothing (answer: {answered:?})");

    // 2. Killed while a slow relay takes the emails (the access token outlives restarts).
    sink.set_delay(Duration::from_millis(40));
    if committed == 0 {
        let changed = reset_everyone_by_email(handle.channel().await, token.clone()).await.expect("the batch, again");
        assert_eq!(changed, KILL_BATCH);
    }
    assert_eq!(ResetTraces::read(&url).await, ResetTraces::uniform(KILL_BATCH as i64));
    let deadline = Instant::now() + WAIT;
    while sink.messages().len() < welcomes + KILL_BATCH / 4 {
        assert!(Instant::now() < deadline, "the reset emails do not go out; log:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9();
    let before_kill = sink.messages().len() - welcomes;
    sink.set_delay(Duration::ZERO);
    let leased = expire_leases(&url).await;
    assert!(leased <= 1, "one message at a time is in flight: {leased}");
    server.restart();
    wait_until_delivered(&url, || server.log()).await;
    let (rows, copies) = assert_every_email_delivered(&url, &sink).await;
    assert_eq!(rows, 2 * KILL_BATCH, "welcome and reset emails");
    assert!(copies as u64 <= leased, "only the message in flight at the kill may arrive twice");
    eprintln!(
        "{backend:?}: kill -9 in the batch transaction: {} of {KILL_BATCH} resets committed; \
         kill -9 after {before_kill} of {KILL_BATCH} reset emails: {leased} in flight, {copies} delivered twice, 0 lost",
        committed
    );
}

/// The dead process's claim would keep its row for the 60 s lease: travel
/// past it (while no server runs) rather than wait. Returns the claims found.
async fn expire_leases(url: &str) -> u64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let db = connect(url).await;
    let sql = format!(
        "UPDATE email_outbox SET next_attempt_at = {now} \
         WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at > {now}"
    );
    let expired = db.execute_unprepared(&sql).await.expect("expire the leases").rows_affected();
    db.close().await.ok();
    expired
}

const BACKLOG_USERS: usize = 40;

/// The relay is down while 80 emails are queued (40 welcomes, 40 resets);
/// the dispatcher keeps retrying with backoff, and when the relay is back the
/// backlog drains: every email exactly once.
async fn a_backlog_drains_once_the_smtp_server_returns(backend: Backend) {
    if !common::tools::require(&[Tool::SmtpServer]) {
        return;
    }
    let mut sink = SmtpSink::start();
    sink.stop();
    let smtp_url = sink.url();
    let server = common::start(backend, move |mut config| {
        config.smtp_url = Some(smtp_url);
        config.mail.poll_interval_ms = 50;
        config.mail.retry_base_ms = 100;
        config.mail.retry_max_ms = 400;
        config
    });
    let token = manager(&server).await;
    create_users(&server, &token, BACKLOG_USERS).await;
    let changed = reset_everyone_by_email(server.channel().await, token).await.expect("a batch by email");
    assert_eq!(changed, BACKLOG_USERS);
    let url = server.database_url.clone();
    let db = connect(&url).await;
    let deadline = Instant::now() + WAIT;
    let down_since = Instant::now();
    // Down "for a while": a second at least, and five refused attempts.
    while count(&db, "SELECT COALESCE(SUM(attempts), 0) FROM email_outbox").await < 5
        || down_since.elapsed() < Duration::from_secs(1)
    {
        assert!(Instant::now() < deadline, "the dispatcher never tried the relay");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts = count(&db, "SELECT COALESCE(SUM(attempts), 0) FROM email_outbox").await;
    assert_eq!(pending_emails(&url).await, 2 * BACKLOG_USERS as i64, "nothing sent, nothing given up");
    let waited = down_since.elapsed();
    sink.resume();
    let back = Instant::now();
    wait_until_delivered(&url, String::new).await;
    let drained = back.elapsed();
    let (rows, copies) = assert_every_email_delivered(&url, &sink).await;
    assert_eq!((rows, copies), (2 * BACKLOG_USERS, 0), "every email exactly once");
    eprintln!(
        "{backend:?}: relay down {waited:?} ({attempts} refused attempts), {rows} emails drained in {drained:?}, 0 lost"
    );
}

on_both_backends!(kill_9_in_a_batch_and_in_dispatch_loses_nothing, a_backlog_drains_once_the_smtp_server_returns);

/// A few users with known passwords, for checking later that committed data survived.
async fn users_with_passwords(server: &TestServer, token: &str) -> Vec<(String, String)> {
    let logins = create_users(server, token, 3).await;
    let logins: Vec<&str> = logins.iter().map(String::as_str).collect();
    common::reset_results(server, token, &logins).await.into_iter().map(|r| (r.user_login, r.password)).collect()
}

async fn assert_intact(server: &TestServer, known: &[(String, String)]) {
    for (login, password) in known {
        common::login(server, login, password).await;
    }
    if let Some(path) = server.database_url.strip_prefix("sqlite://") {
        let db = connect(&format!("sqlite://{path}")).await;
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), "PRAGMA integrity_check".to_owned()))
            .await
            .expect("integrity check")
            .expect("a row");
        assert_eq!(row.try_get_by_index::<String>(0).expect("a verdict"), "ok");
        db.close().await.ok();
    }
}

/// Two writes (a new user, a reset) and a read, while storage is in trouble:
/// the writes answer UNAVAILABLE, the read answers.
async fn assert_writes_unavailable(server: &TestServer, token: &str, known: &[(String, String)]) {
    let mut users = common::users_client(server).await;
    let request = pb::CreateUserRequest {
        user_login: common::unique("blocked"),
        email: "blocked@example.com".to_owned(),
        first_name: "Blocked".to_owned(),
        last_name: "Write".to_owned(),
        role: Role::Reader.into(),
        business_unit: String::new(),
    };
    let refused = users.create_user(bearer(request, token)).await.expect_err("no room for a new user");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::Unavailable, "UNAVAILABLE"), "{refused:?}");
    let reset = pb::ResetPasswordsRequest {
        user_logins: vec![known[0].0.clone()],
        all: false,
        notify_by_email: false,
        ..Default::default()
    };
    let refused = common::reset_client(server)
        .await
        .reset_passwords(bearer(reset, token))
        .await
        .expect_err("no room for a reset");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::Unavailable, "UNAVAILABLE"), "{refused:?}");
    let read = users
        .get_user(bearer(pb::GetUserRequest { user_login: known[0].0.clone(), ..Default::default() }, token))
        .await;
    read.expect("reads still answer");
}

/// The same writes succeed again, on the same process.
async fn assert_writes_work(server: &TestServer, token: &str, known: &[(String, String)]) {
    create_users(server, token, 1).await;
    let results = common::reset_results(server, token, &[&known[0].0]).await;
    assert!(results[0].changed);
    common::login(server, &known[0].0, &results[0].password).await;
}

/// The first "database unavailable" warning in a server log.
fn logged_cause(log: &str) -> String {
    let line = log.lines().find(|line| line.contains("database unavailable"));
    line.unwrap_or_else(|| panic!("no cause logged:\n{log}")).to_owned()
}

/// Sets the server's file-size limit (soft; None: unlimited).
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let limit = bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success(), "prlimit failed");
}

/// SQLite whose file stops taking writes while the server runs. Emulated
/// without privileges: the running server's file-size limit drops to zero
/// (`prlimit`), so every write to its database fails with EFBIG, as writes
/// through an open file do when its volume turns read-only. Clear UNAVAILABLE,
/// reads still served, nothing corrupted, and writes work again as soon as
/// the limit is lifted, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refusing_writes_answers_unavailable_and_recovers() {
    let url = common::fresh_database(Backend::Sqlite, &common::scratch_dir("nowrite")).await;
    let server = ServerProcess::spawn(&url, &[]);
    let handle = server.test_server();
    let token = manager(&handle).await;
    let known = users_with_passwords(&handle, &token).await;

    limit_file_size(server.pid(), Some(0));
    assert_writes_unavailable(&handle, &token, &known).await;
    eprintln!("writes refused: {}", logged_cause(&server.log()));
    limit_file_size(server.pid(), None);

    assert_writes_work(&handle, &token, &known).await;
    assert_intact(&handle, &known[1..]).await;
}

/// A small tmpfs the test mounts (root with CAP_SYS_ADMIN, as here and in CI).
struct Volume {
    path: PathBuf,
}

impl Volume {
    fn mount(path: &Path, size: &str) -> Option<Volume> {
        std::fs::create_dir_all(path).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|status| status.success());
        mounted.then(|| Volume { path: path.to_owned() })
    }

    fn remount(&self, option: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {option}");
    }

    /// Writes a ballast file until the volume is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path.join("ballast");
        let mut file = std::fs::File::create(&path).expect("create the ballast");
        for chunk in [1 << 20, 4096, 512] {
            while file.write_all(&vec![0u8; chunk]).is_ok() {}
        }
        path
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// SQLite on a real full disk (a small tmpfs filled to the last byte), then
/// on a volume mounted read-only when the server starts. Needs `mount`;
/// where it is not permitted the story is skipped with a notice, and the
/// write-refusal story above still covers a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_and_on_a_read_only_volume() {
    let dir = common::scratch_dir("volume");
    let Some(volume) = Volume::mount(&dir.join("volume"), "16m") else {
        eprintln!("mount is not permitted here: skipping the full-disk and read-only volume story");
        return;
    };
    let url = format!("sqlite://{}", volume.path.join("identity.db").display());
    let mut server = ServerProcess::spawn(&url, &[]);
    let handle = server.test_server();
    let token = manager(&handle).await;
    let known = users_with_passwords(&handle, &token).await;

    let ballast = volume.fill();
    assert_writes_unavailable(&handle, &token, &known).await;
    let cause = logged_cause(&server.log());
    assert!(cause.contains("full"), "the cause is logged: {cause}");
    eprintln!("full disk: {cause}");
    std::fs::remove_file(ballast).expect("free the space");
    assert_writes_work(&handle, &token, &known).await;
    assert_intact(&handle, &known[1..]).await;

    // After a clean stop SQLite cannot even open the file read-only (no -shm
    // left); after a crash it can, and only a write shows the trouble.
    for stop in ["SIGTERM", "kill -9"] {
        if stop == "SIGTERM" {
            assert!(server.terminate().success(), "a clean stop on SIGTERM");
        } else {
            server.kill9();
        }
        volume.remount("ro");
        let refused = server.try_restart().expect_err("no start on a read-only volume");
        let reason = refused.lines().rev().find(|line| line.starts_with("identity: ")).unwrap_or(&refused);
        assert!(reason.contains("takes no writes"), "a clear reason: {refused}");
        eprintln!("read-only volume at start after {stop}: {reason}");
        volume.remount("rw");
        server.restart();
        assert_intact(&handle, &known[1..]).await;
    }
}
