//! Fixtures, built the way users build them: a tenant through the real CLI
//! (`bootstrap --password-stdin`), users through `CreateUser`, known passwords
//! through `ResetPasswords` with email=0. The one exception is
//! [`bulk_insert_users`], a fixture fast path for the million-user database.

use std::{io::Write as _, ops::Range, process::Stdio, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use super::{Bench, server::ServerUnderTest};
use identity::{
    config::HashingConfig,
    crypto::password::PasswordHasher,
    domain::{Role, Secret, UserStatus},
    pb::{self, auth_client::AuthClient, reset_client::ResetClient, users_client::UsersClient},
    store::{
        Store,
        entities::{password_credential, user},
        tenancy,
    },
};

/// The password of every fast-path user.
pub const BULK_PASSWORD: &str = "bench fixture: plum orbit kettle harbor";

/// A subscription with an ACTIVE Manager, logged in.
pub struct Tenant {
    pub prefix: String,
    pub manager_login: String,
    pub manager_password: String,
    pub token: String,
    pub subscription_id: String,
}

/// A login with its password.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub login: String,
    pub password: String,
}

/// Bootstraps a subscription and its Manager through `identity bootstrap`.
pub async fn tenant(bench: &Bench, server: &ServerUnderTest) -> anyhow::Result<Tenant> {
    let prefix = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let manager_login = format!("{prefix}_mgr");
    let manager_password = format!("Bench manager {prefix} passphrase!");
    let mut command = bench.identity_command(&server.spec.argon2, &server.dir);
    command
        .args(["bootstrap", "--subscription", &prefix, "--login", &manager_login, "--password-stdin"])
        .args(["--email", &format!("{prefix}@example.com")])
        .env("IDENTITY_DATABASE_URL", &server.database_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let password = manager_password.clone();
    let output = tokio::task::spawn_blocking(move || -> anyhow::Result<std::process::Output> {
        let mut child = command.spawn().context("cannot run `identity bootstrap`")?;
        child.stdin.take().context("bootstrap's stdin")?.write_all(format!("{password}\n").as_bytes())?;
        Ok(child.wait_with_output()?)
    })
    .await??;
    if !output.status.success() {
        bail!("`identity bootstrap` failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let channel = server.channel().await?;
    let session = login(&channel, &manager_login, &manager_password).await?;
    let validated = AuthClient::new(channel)
        .validate_token(pb::ValidateTokenRequest { access_token: session.access_token.clone() })
        .await?
        .into_inner();
    Ok(Tenant {
        prefix,
        manager_login,
        manager_password,
        token: session.access_token,
        subscription_id: validated.subscription_id,
    })
}

/// Logs in; anything but a session is an error.
pub async fn login(channel: &Channel, login: &str, password: &str) -> anyhow::Result<pb::Session> {
    let answer = AuthClient::new(channel.clone())
        .login(pb::LoginRequest { user_login: login.to_owned(), password: password.to_owned() })
        .await
        .with_context(|| format!("login of {login}"))?
        .into_inner();
    match answer.result {
        Some(pb::login_response::Result::Session(session)) => Ok(session),
        _ => bail!("login of {login} did not open a session"),
    }
}

pub fn bearer<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

/// Creates `count` Readers in the default unit (PENDING_ACTIVATION, welcome email
/// queued), `concurrency` calls at a time; returns their logins in order.
pub async fn create_users(
    server: &ServerUnderTest,
    tenant: &Tenant,
    tag: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let logins: Vec<String> = (0..count).map(|i| format!("{}_{tag}{i:07}", tenant.prefix)).collect();
    let client = UsersClient::new(server.channel().await?);
    let turns = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut calls = tokio::task::JoinSet::new();
    for login in &logins {
        let turn = Arc::clone(&turns).acquire_owned().await?;
        let mut client = client.clone();
        let request = bearer(
            pb::CreateUserRequest {
                user_login: login.clone(),
                email: format!("{login}@example.com"),
                first_name: "Bench".to_owned(),
                last_name: login.clone(),
                role: pb::Role::Reader.into(),
                business_unit: String::new(),
            },
            &tenant.token,
        )?;
        let login = login.clone();
        calls.spawn(async move {
            let answer = client.create_user(request).await.with_context(|| format!("create user {login}"));
            drop(turn);
            answer.map(drop)
        });
    }
    while let Some(joined) = calls.join_next().await {
        joined??;
    }
    Ok(logins)
}

/// Resets `logins` with email=0 (at most `reset.max_batch` per call): the
/// passwords come back and pending accounts become ACTIVE.
pub async fn known_passwords(
    server: &ServerUnderTest,
    tenant: &Tenant,
    logins: &[String],
) -> anyhow::Result<Vec<Credentials>> {
    let mut client = ResetClient::new(server.channel().await?);
    let mut credentials = Vec::with_capacity(logins.len());
    for batch in logins.chunks(1000) {
        let results = reset(&mut client, &tenant.token, batch, false).await?;
        for result in results {
            credentials.push(Credentials { login: result.user_login, password: result.password });
        }
    }
    Ok(credentials)
}

/// One ResetPasswords call; every target must be changed.
pub async fn reset(
    client: &mut ResetClient<Channel>,
    token: &str,
    logins: &[String],
    notify_by_email: bool,
) -> anyhow::Result<Vec<pb::ResetResult>> {
    let request = bearer(
        pb::ResetPasswordsRequest { user_logins: logins.to_vec(), all: false, notify_by_email, ..Default::default() },
        token,
    )?;
    let results = client.reset_passwords(request).await.context("ResetPasswords")?.into_inner().results;
    if let Some(refused) = results.iter().find(|r| !r.changed) {
        bail!("ResetPasswords refused {}: {}", refused.user_login, refused.message);
    }
    if results.len() != logins.len() {
        bail!("ResetPasswords answered {} results for {} logins", results.len(), logins.len());
    }
    Ok(results)
}

/// Creates `count` users and returns their known passwords.
pub async fn active_users(
    server: &ServerUnderTest,
    tenant: &Tenant,
    tag: &str,
    count: usize,
) -> anyhow::Result<Vec<Credentials>> {
    let logins = create_users(server, tenant, tag, count, 8).await?;
    known_passwords(server, tenant, &logins).await
}

/// Waits until the outbox dispatcher has written `count` emails as `.eml`
/// files: a dispatcher still writing a batch's emails would compete with the
/// next measurement for the CPU.
pub async fn wait_for_emails(server: &ServerUnderTest, count: usize) -> anyhow::Result<()> {
    let outbox = server.dir.join("outbox");
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let written = std::fs::read_dir(&outbox)
            .map(|entries| {
                entries.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".eml")).count()
            })
            .unwrap_or(0);
        if written >= count {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("the outbox wrote {written} of {count} emails in time");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The login of fast-path user `index` of `tenant`.
pub fn bulk_login(prefix: &str, index: u64) -> String {
    format!("{prefix}_f{index:07}")
}

/// Rows per INSERT statement and statements per transaction of the fast path.
const ROWS_PER_INSERT: usize = 1000;
const INSERTS_PER_TRANSACTION: usize = 20;

/// Fixture fast path, not a product path: inserts ACTIVE Readers
/// `range` of `tenant` straight into the database in multi-row INSERTs, all
/// sharing one precomputed hash of [`BULK_PASSWORD`]. Creating a million
/// users through the API would take hours of argon2 alone. Returns the time taken.
pub async fn bulk_insert_users(
    server: &ServerUnderTest,
    tenant: &Tenant,
    range: Range<u64>,
) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    let hasher =
        PasswordHasher::new(&server.spec.argon2, &HashingConfig { workers: 1, queue: 1, ..HashingConfig::default() })?;
    let hash = hasher.hash(Secret::new(BULK_PASSWORD)).await?;
    let store = Store::connect(&server.database_url, 2).await?;
    let db = store.connection();
    let unit = tenancy::find_business_unit_by_name(db, &tenant.subscription_id, tenancy::DEFAULT_UNIT)
        .await?
        .context("the subscription's default business unit")?;
    let now = identity::clock::to_ms(time::OffsetDateTime::now_utc());
    let indexes: Vec<u64> = range.collect();
    for transaction in indexes.chunks(ROWS_PER_INSERT * INSERTS_PER_TRANSACTION) {
        let txn = db.begin().await?;
        for rows in transaction.chunks(ROWS_PER_INSERT) {
            let ids: Vec<String> = rows.iter().map(|_| uuid::Uuid::now_v7().to_string()).collect();
            let users = rows.iter().zip(&ids).map(|(index, id)| {
                let login = bulk_login(&tenant.prefix, *index);
                user::ActiveModel {
                    id: Set(id.clone()),
                    subscription_id: Set(tenant.subscription_id.clone()),
                    business_unit_id: Set(Some(unit.id.clone())),
                    email: Set(format!("{login}@example.com")),
                    first_name: Set("Bulk".to_owned()),
                    last_name: Set(login.clone()),
                    user_login: Set(login),
                    role: Set(Role::Reader),
                    status: Set(UserStatus::Active),
                    status_reason: Set(None),
                    failed_logins: Set(0),
                    created_at: Set(now),
                    updated_at: Set(now),
                    last_login_at: Set(None),
                }
            });
            user::Entity::insert_many(users).exec_without_returning(&txn).await?;
            let credentials = ids.iter().map(|id| password_credential::ActiveModel {
                user_id: Set(id.clone()),
                hash: Set(hash.clone()),
                updated_at: Set(now),
            });
            password_credential::Entity::insert_many(credentials).exec_without_returning(&txn).await?;
        }
        txn.commit().await?;
    }
    store.connection().clone().close().await.ok();
    Ok(started.elapsed())
}
