//! Housekeeping under load: the rate at which a server purges many expired
//! rows (sessions, refresh tokens, audit events, spent captcha solutions),
//! and the p99 of Login while it does, against the p99 of Login with nothing
//! to purge, measured alternately in each round (target: within 10 %).

use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, Statement, TransactionTrait};

use super::{Found, login_operation};
use crate::{
    Bench, Bound, Check, Measurement, fixtures,
    load::Sample,
    server::{ServerSpec, ServerUnderTest},
};
use identity::store::{
    Store,
    entities::{audit_event, refresh_token, session, spent_nonce},
};

const SCENARIO: &str = "purge";

/// Seeded rows carry this instant until they are all made expired at once:
/// far in the future, so housekeeping leaves them alone while they are written.
const PARKED_MS: i64 = 8_000_000_000_000;
/// Long past every lifetime and grace.
const EXPIRED_MS: i64 = 1_000;
/// Rows per INSERT statement and per seeding transaction.
const ROWS_PER_INSERT: usize = 1000;
const ROWS_PER_TRANSACTION: usize = 20_000;
/// How long a purge may take before the scenario gives up on it.
const PURGE_TIMEOUT: Duration = Duration::from_secs(1800);

/// The seeded tables and the instant column that makes their rows due.
const SEEDED: [(&str, &str); 4] = [
    ("refresh_tokens", "expires_at"),
    ("sessions", "expires_at"),
    ("audit_events", "occurred_at"),
    ("spent_nonces", "expires_at"),
];

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let concurrency = bench.concurrency();
    // Housekeeping every second, its batches as configured by default.
    let env = vec![("IDENTITY_RETENTION__INTERVAL_SECS".to_owned(), "1".to_owned())];
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let users = fixtures::active_users(&server, &tenant, "p", concurrency).await?;
    fixtures::wait_for_emails(&server, users.len()).await?;
    let channels = server.channels(bench.connections()).await?;
    let store = Store::connect(&server.database_url, 2).await?;
    let owner = identity::store::users::find_by_login(store.connection(), &users[0].login)
        .await?
        .context("a bench user owns the seeded sessions")?
        .id;
    let rows = bench.args.purge_rows.max(4);

    let (mut quiet, mut busy) = (Sample::default(), Sample::default());
    let (mut quiet_peak, mut busy_peak) = (None, None);
    let (mut p99_ratios, mut purge_rates, mut coverages) = (Vec::new(), Vec::new(), Vec::new());
    let (mut purged, mut purge_secs) = (0u64, 0.0);
    for _ in 0..bench.rounds() {
        let (sample, peak) =
            server.load(bench.phase(concurrency), login_operation(channels.clone(), users.clone())).await;
        quiet_peak = quiet_peak.max(peak);
        let quiet_p99 = sample.quantile_ms(0.99);
        quiet.merge(sample);

        seed(&store, &owner, rows).await?;
        let due = make_due(&store).await?;
        let watch = tokio::spawn(watch_purge(server.database_url.clone(), due));
        let load_started = Instant::now();
        let (sample, peak) =
            server.load(bench.phase(concurrency), login_operation(channels.clone(), users.clone())).await;
        let load_secs = load_started.elapsed().as_secs_f64();
        busy_peak = busy_peak.max(peak);
        p99_ratios.push(match (sample.quantile_ms(0.99), quiet_p99) {
            (Some(during), Some(without)) if without > 0.0 => during / without,
            _ => f64::NAN,
        });
        busy.merge(sample);
        let purge = watch.await.context("the purge watcher")??;
        purged += purge.rows;
        purge_secs += purge.took.as_secs_f64();
        purge_rates.push(purge.rows as f64 / purge.took.as_secs_f64().max(0.001));
        coverages.push(purge.since_due.as_secs_f64() / load_secs.max(0.001));
    }
    let peak = quiet_peak.max(busy_peak);
    found.measured(Measurement {
        completed: purged,
        throughput: Some(purged as f64 / purge_secs.max(0.001)),
        wall_s: Some(purge_secs),
        ..Measurement::new(SCENARIO, format!("purge of {rows} expired rows (4 tables), rows/s, Login load running"))
            .rss_kib(peak)
    });
    found.measured(
        Measurement::from_sample(SCENARIO, "Login, nothing to purge", concurrency, &quiet).rss_kib(quiet_peak),
    );
    found.measured(
        Measurement::from_sample(SCENARIO, format!("Login while {rows} expired rows are purged"), concurrency, &busy)
            .rss_kib(busy_peak),
    );
    found.check(Check::median(
        SCENARIO,
        "Login p99 while purging / without, median of rounds",
        &p99_ratios,
        Bound::AtMost,
        1.10,
    ));
    found.check(Check::median(
        SCENARIO,
        "purge lasted through the Login phase (purge time / phase time), median of rounds",
        &coverages,
        Bound::AtLeast,
        1.0,
    ));
    found.check(Check::median(
        SCENARIO,
        "purge throughput, rows/s, median of rounds",
        &purge_rates,
        Bound::AtLeast,
        1.0,
    ));
    store.connection().clone().close().await.ok();
    server.stop().await
}

/// Fixture fast path: `rows` rows spread over the four tables, parked in the
/// future. A session per refresh token, all owned by one bench user.
async fn seed(store: &Store, owner: &str, rows: u64) -> anyhow::Result<()> {
    let db = store.connection();
    let per_table = usize::try_from(rows / 4).unwrap_or(usize::MAX);
    let ids: Vec<String> = (0..per_table).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for transaction in ids.chunks(ROWS_PER_TRANSACTION) {
        let txn = db.begin().await?;
        for chunk in transaction.chunks(ROWS_PER_INSERT) {
            session::Entity::insert_many(chunk.iter().map(|id| session::ActiveModel {
                id: Set(id.clone()),
                user_id: Set(owner.to_owned()),
                created_at: Set(EXPIRED_MS),
                expires_at: Set(PARKED_MS),
                revoked_at: Set(None),
                revoke_reason: Set(None),
            }))
            .exec_without_returning(&txn)
            .await?;
            refresh_token::Entity::insert_many(chunk.iter().map(|id| refresh_token::ActiveModel {
                token_hash: Set(format!("purge-bench-{id}")),
                session_id: Set(id.clone()),
                created_at: Set(EXPIRED_MS),
                expires_at: Set(PARKED_MS),
                rotated_at: Set(None),
            }))
            .exec_without_returning(&txn)
            .await?;
            audit_event::Entity::insert_many(chunk.iter().map(|id| audit_event::ActiveModel {
                id: Set(id.clone()),
                occurred_at: Set(PARKED_MS),
                subscription_id: Set(None),
                actor_user_id: Set(None),
                actor_login: Set(None),
                action: Set("bench.seed".to_owned()),
                target_user_id: Set(None),
                target_login: Set(None),
                outcome: Set("SUCCESS".to_owned()),
                reason: Set(None),
                source_ip: Set(None),
                detail: Set(None),
            }))
            .exec_without_returning(&txn)
            .await?;
            spent_nonce::Entity::insert_many(chunk.iter().map(|id| spent_nonce::ActiveModel {
                key: Set(format!("purge-bench:{id}")),
                expires_at: Set(PARKED_MS),
            }))
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
    }
    Ok(())
}

/// Makes every parked row expired in one transaction, so they all fall due
/// at one instant; returns how many.
async fn make_due(store: &Store) -> anyhow::Result<u64> {
    let txn = store.connection().begin().await?;
    let mut due = 0;
    for (table, column) in SEEDED {
        let sql = format!("UPDATE {table} SET {column} = {EXPIRED_MS} WHERE {column} = {PARKED_MS}");
        due += txn.execute_raw(Statement::from_string(txn.get_database_backend(), sql)).await?.rows_affected();
    }
    txn.commit().await?;
    Ok(due)
}

/// How a purge went, as seen from outside: polled row counts.
struct Purge {
    rows: u64,
    /// From the last count that found every row to the first that found none.
    took: Duration,
    /// From the moment the rows fell due to the first count that found none.
    since_due: Duration,
}

async fn watch_purge(database_url: String, due: u64) -> anyhow::Result<Purge> {
    let store = Store::connect(&database_url, 1).await?;
    let due_at = Instant::now();
    let mut untouched_at = due_at;
    loop {
        let left = remaining(&store).await?;
        let now = Instant::now();
        if left >= due {
            untouched_at = now;
        }
        if left == 0 {
            store.connection().clone().close().await.ok();
            return Ok(Purge { rows: due, took: now - untouched_at, since_due: now - due_at });
        }
        anyhow::ensure!(now - due_at < PURGE_TIMEOUT, "{left} of {due} expired rows left after {PURGE_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Seeded rows not purged yet: the only rows that old.
async fn remaining(store: &Store) -> anyhow::Result<u64> {
    let counts: Vec<String> = SEEDED
        .iter()
        .map(|(table, column)| format!("(SELECT COUNT(*) FROM {table} WHERE {column} <= {EXPIRED_MS})"))
        .collect();
    let sql = format!("SELECT {}", counts.join(" + "));
    let row =
        store.connection().query_one_raw(Statement::from_string(store.backend(), sql)).await?.context("a count")?;
    Ok(u64::try_from(row.try_get_by_index::<i64>(0)?).unwrap_or(0))
}
