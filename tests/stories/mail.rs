//! Emails leave the outbox: a lockout's "your account was locked" reaches a
//! real SMTP server exactly once, survives the server being down, lands in the
//! outbox folder when no server is configured, and is given up on when the
//! server refuses the recipient for good.

use crate::common;
use crate::common::tools::Tool;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, smtp::SmtpSink, start, tenant, try_login};
use identity::{
    config::Config,
    store::{entities::email_outbox, outbox},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

const WAIT: Duration = Duration::from_secs(20);

/// Quick polling and retries, so the stories take seconds.
fn fast_mail(mut config: Config, smtp_url: Option<String>) -> Config {
    config.smtp_url = smtp_url;
    config.mail.poll_interval_ms = 100;
    config.mail.retry_base_ms = 200;
    config.mail.retry_max_ms = 1000;
    config
}

/// Five wrong passwords: the account locks and its owner is told by email.
async fn lock_out(server: &TestServer, user_login: &str) {
    for _ in 0..5 {
        assert!(try_login(server, user_login, "not the password").await.is_err());
    }
}

async fn outbox_rows(server: &TestServer, recipient: &str) -> Vec<email_outbox::Model> {
    email_outbox::Entity::find()
        .filter(email_outbox::Column::Recipient.eq(recipient))
        .all(common::store(server).await.connection())
        .await
        .expect("read the outbox")
}

/// The only outbox row for `recipient`, once `ready` holds for it.
async fn wait_for_row(
    server: &TestServer,
    recipient: &str,
    what: &str,
    ready: impl Fn(&email_outbox::Model) -> bool,
) -> email_outbox::Model {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = outbox_rows(server, recipient).await;
        assert!(rows.len() <= 1, "one email per lockout: {rows:?}");
        match rows.into_iter().next() {
            Some(row) if ready(&row) => return row,
            row if Instant::now() >= deadline => panic!("outbox row never {what}: {row:?}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The value of header `name` in a raw message (first occurrence).
fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines().take_while(|line| !line.is_empty()).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

async fn a_lockout_email_reaches_the_smtp_server_once(backend: Backend) {
    if !common::tools::require(&[Tool::SmtpServer]) {
        return;
    }
    let sink = SmtpSink::start();
    let url = sink.url();
    let server = start(backend, move |config| fast_mail(config, Some(url)));
    let t = tenant(&server);
    let recipient = format!("{}@example.com", t.prefix);

    lock_out(&server, &t.manager_login).await;

    let messages = sink.wait_for(1, WAIT).await;
    assert_eq!(messages.len(), 1, "one message at the SMTP server");
    let raw = &messages[0];
    let row = wait_for_row(&server, &recipient, "marked sent", |row| row.sent_at.is_some()).await;
    assert_eq!(header(raw, "Subject"), Some("Your account was locked"));
    assert_eq!(header(raw, "Message-ID"), Some(row.message_id.as_str()), "the stored Message-ID travels");
    assert_eq!(header(raw, "To"), Some(recipient.as_str()));
    assert_eq!(header(raw, "From"), Some("identity@127.0.0.1"), "defaults to the public host");
    for part in ["multipart/alternative", "text/plain", "text/html"] {
        assert!(raw.contains(part), "{part} missing from\n{raw}");
    }
    assert_eq!((row.attempts, row.failed_at, row.last_error), (1, None, None));

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.messages().len(), 1, "never sent twice");
}

async fn an_email_waits_out_an_smtp_outage(backend: Backend) {
    if !common::tools::require(&[Tool::SmtpServer]) {
        return;
    }
    let port = common::free_port();
    let server = start(backend, move |config| fast_mail(config, Some(format!("smtp://127.0.0.1:{port}"))));
    let t = tenant(&server);
    let recipient = format!("{}@example.com", t.prefix);

    lock_out(&server, &t.manager_login).await;
    let failed =
        wait_for_row(&server, &recipient, "retried", |row| row.attempts >= 1 && row.last_error.is_some()).await;
    assert_eq!((failed.sent_at, failed.failed_at), (None, None), "still pending: {failed:?}");
    let stats = outbox::backlog_stats(common::store(&server).await.connection()).await.expect("backlog stats");
    assert_eq!((stats.pending, stats.oldest_pending_at), (1, Some(failed.created_at)));
    assert!(stats.last_error.is_some_and(|e| e.to_lowercase().contains("connect")), "{failed:?}");

    let sink = SmtpSink::start_on(port);
    let messages = sink.wait_for(1, WAIT).await;
    assert_eq!(messages.len(), 1, "delivered once the server is back");
    assert_eq!(header(&messages[0], "Message-ID"), Some(failed.message_id.as_str()));
    let sent = wait_for_row(&server, &recipient, "marked sent", |row| row.sent_at.is_some()).await;
    assert!(sent.attempts > failed.attempts);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.messages().len(), 1, "exactly once");
}

async fn without_smtp_emails_are_written_to_the_outbox_folder(backend: Backend) {
    let server = start(backend, |config| fast_mail(config, None));
    let t = tenant(&server);
    let recipient = format!("{}@example.com", t.prefix);

    lock_out(&server, &t.manager_login).await;

    let row = wait_for_row(&server, &recipient, "marked sent", |row| row.sent_at.is_some()).await;
    let path = server.dir.join("outbox").join(format!("{}.eml", row.id));
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(header(&raw, "Message-ID"), Some(row.message_id.as_str()));
    assert_eq!(header(&raw, "Subject"), Some("Your account was locked"));
    assert_eq!(header(&raw, "To"), Some(recipient.as_str()));
    assert!(header(&raw, "From").is_some() && header(&raw, "Date").is_some(), "{raw}");
    assert!(raw.contains("multipart/alternative"), "{raw}");
    let leftovers: Vec<_> = std::fs::read_dir(server.dir.join("outbox"))
        .expect("outbox folder")
        .filter_map(|entry| entry.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| !name.ends_with(".eml"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left: {leftovers:?}");

    // Emails carry live links, the database hashes and secrets: the service's user alone reads them.
    let mode = |path: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
    };
    assert_eq!(mode(&server.dir.join("outbox")), 0o700, "the outbox folder");
    assert_eq!(mode(&path), 0o600, "an .eml file");
    if backend == Backend::Sqlite {
        let database = server.dir.join("identity.db");
        assert_eq!(mode(&database), 0o600, "the SQLite database");
        for suffix in ["-wal", "-shm"] {
            let companion = server.dir.join(format!("identity.db{suffix}"));
            if companion.exists() {
                assert_eq!(mode(&companion), 0o600, "{}", companion.display());
            }
        }
    }
}

async fn a_recipient_refused_for_good_is_not_retried(backend: Backend) {
    if !common::tools::require(&[Tool::SmtpServer]) {
        return;
    }
    let sink = SmtpSink::start();
    let url = sink.url();
    let server = start(backend, move |config| fast_mail(config, Some(url)));
    let prefix = common::unique("r");
    let manager_login = format!("{prefix}_mgr");
    let recipient = format!("reject-{prefix}@example.com");
    bootstrap_manager(&server, &prefix, &manager_login, &recipient);

    lock_out(&server, &manager_login).await;

    let row = wait_for_row(&server, &recipient, "marked failed", |row| row.failed_at.is_some()).await;
    assert_eq!((row.attempts, row.sent_at), (1, None));
    assert!(row.last_error.as_deref().is_some_and(|e| e.contains("550")), "{row:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = wait_for_row(&server, &recipient, "unchanged", |_| true).await;
    assert_eq!(later.attempts, 1, "no retry after a permanent refusal");
    assert!(sink.messages().is_empty());
}

async fn of_replicas_claiming_one_email_exactly_one_sends_it(backend: Backend) {
    let dir = common::scratch_dir("claims");
    let store = identity::store::Store::connect(&common::fresh_database(backend, &dir).await, 8).await.unwrap();
    store.migrate_up().await.unwrap();
    let conn = store.connection();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let email = outbox::NewEmail {
        kind: "test",
        user_id: None,
        recipient: "someone@example.com",
        subject: "Subject",
        body_text: "text",
        body_html: "<p>html</p>",
    };
    outbox::enqueue(conn, &identity::crypto::data_keys::DataKeys::ephemeral(), email, "example.com", now)
        .await
        .unwrap();
    let due = outbox::due(conn, now, 50).await.unwrap();
    assert_eq!(due.len(), 1);

    // Eight replicas read the row at once and race to claim it.
    let claims: Vec<_> = (0..8)
        .map(|_| {
            let (store, id, seen) = (store.clone(), due[0].id.clone(), due[0].next_attempt_at);
            tokio::spawn(async move { outbox::claim(store.connection(), &id, seen, now + 60_000).await.unwrap() })
        })
        .collect();
    let mut won = Vec::new();
    for claim in claims {
        won.push(claim.await.unwrap());
    }
    assert_eq!(won.iter().filter(|&&w| w).count(), 1, "exactly one claim wins: {won:?}");
    assert!(outbox::due(conn, now + 59_999, 50).await.unwrap().is_empty(), "leased to the winner");
    assert_eq!(outbox::due(conn, now + 60_000, 50).await.unwrap().len(), 1, "due again if the winner died");

    outbox::mark_retry(conn, &due[0].id, now + 2000, "connection refused").await.unwrap();
    let stats = outbox::backlog_stats(conn).await.unwrap();
    assert_eq!((stats.pending, stats.oldest_pending_at), (1, Some(now)));
    assert_eq!(stats.last_error.as_deref(), Some("connection refused"));

    outbox::mark_sent(conn, &due[0].id, now + 2000).await.unwrap();
    outbox::mark_failed(conn, &due[0].id, now + 3000, "too late").await.unwrap();
    let row = email_outbox::Entity::find_by_id(due[0].id.clone()).one(conn).await.unwrap().unwrap();
    assert_eq!((row.attempts, row.sent_at, row.failed_at), (2, Some(now + 2000), None), "a sent row stays sent");
    assert_eq!(outbox::backlog_stats(conn).await.unwrap(), outbox::BacklogStats::default());
}

/// A subscription whose Manager has `email`, through the real CLI.
fn bootstrap_manager(server: &TestServer, prefix: &str, login: &str, email: &str) {
    let output = common::identity_cli(
        &["bootstrap", "--subscription", prefix, "--login", login, "--email", email, "--password-stdin"],
        &[("IDENTITY_DATABASE_URL", &server.database_url)],
        Some("Correct horse battery staple, mail!\n"),
    );
    assert!(output.status.success(), "bootstrap failed: {}", common::stderr(&output));
}

on_both_backends!(
    a_lockout_email_reaches_the_smtp_server_once,
    an_email_waits_out_an_smtp_outage,
    without_smtp_emails_are_written_to_the_outbox_folder,
    a_recipient_refused_for_good_is_not_retried,
    of_replicas_claiming_one_email_exactly_one_sends_it,
);
