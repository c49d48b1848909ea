//! Housekeeping's statements: small deletes by primary key of rows whose
//! lifetime is over, the lock that lets one PostgreSQL replica purge at a
//! time, and the record of runs every replica's status reads.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, sqlx};

use super::{Store, StoreResult, sql};
use crate::domain::retention::Expiring;

/// The key of the PostgreSQL advisory lock held for a whole run: "identity" in ASCII.
const LOCK_KEY: i64 = 0x6964_656e_7469_7479;

/// The rows of `kind` due before the cutoff `$1`: their primary key, the
/// first column, and the table they are deleted from.
fn due(kind: Expiring) -> (&'static str, &'static str) {
    match kind {
        Expiring::RefreshTokens => ("token_hash", "SELECT token_hash FROM refresh_tokens WHERE expires_at < $1"),
        Expiring::RevokedSessionTokens => (
            "token_hash",
            "SELECT r.token_hash FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             WHERE s.revoked_at < $1",
        ),
        Expiring::Sessions => ("id", "SELECT id FROM sessions WHERE expires_at < $1 OR revoked_at < $1"),
        Expiring::LoginChallenges => ("id_hash", "SELECT id_hash FROM login_challenges WHERE expires_at < $1"),
        Expiring::Links => {
            ("id", "SELECT id FROM activation_tokens WHERE expires_at < $1 OR used_at < $1 OR superseded_at < $1")
        }
        Expiring::SpentNonces => ("key", "SELECT key FROM spent_nonces WHERE expires_at < $1"),
        Expiring::RateCounters => ("key", "SELECT key FROM rate_counters WHERE window_start < $1"),
        Expiring::AuditEvents => ("id", "SELECT id FROM audit_events WHERE occurred_at < $1"),
        Expiring::SentEmails => ("id", "SELECT id FROM email_outbox WHERE sent_at < $1 OR failed_at < $1"),
        Expiring::ResetRequests => ("key", "SELECT key FROM reset_requests WHERE created_at < $1"),
    }
}

/// Deletes at most `limit` rows of `kind` due before `cutoff_ms`; returns
/// how many. One short statement that picks its rows through an index and
/// deletes them by primary key, so it never holds locks for long; running it
/// twice at once deletes each row once.
pub async fn purge_batch<C: ConnectionTrait>(conn: &C, kind: Expiring, cutoff_ms: i64, limit: u32) -> StoreResult<u64> {
    let (key, rows) = due(kind);
    let table = kind.table();
    let statement = format!("DELETE FROM {table} WHERE {key} IN ({rows} LIMIT {limit})");
    sql::execute(conn, &statement, [cutoff_ms.into()]).await
}

/// Held while one replica purges. On PostgreSQL a session-level advisory
/// lock on a connection of its own, outside the pool: if the replica dies,
/// or the run is cancelled, the connection closes and the lock goes with it,
/// never left behind in a pooled connection. SQLite has a single writer and
/// its batches are idempotent: no lock.
pub struct PurgeLock {
    connection: Option<sqlx::PgConnection>,
}

impl Store {
    /// The purge lock, or `None` when another replica holds it.
    pub async fn try_purge_lock(&self) -> StoreResult<Option<PurgeLock>> {
        use sqlx::Connection;
        if self.backend() != DbBackend::Postgres {
            return Ok(Some(PurgeLock { connection: None }));
        }
        let options = self.connection().get_postgres_connection_pool().connect_options();
        let mut connection = sqlx::PgConnection::connect_with(&options).await.map_err(db_error)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut connection)
            .await
            .map_err(db_error)?;
        if !locked {
            let _ = connection.close().await;
            return Ok(None);
        }
        Ok(Some(PurgeLock { connection: Some(connection) }))
    }
}

impl PurgeLock {
    /// Closing the connection releases the lock.
    pub async fn release(self) {
        use sqlx::Connection;
        if let Some(connection) = self.connection {
            let _ = connection.close().await;
        }
    }
}

fn db_error(error: sqlx::Error) -> super::StoreError {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(error.into())).into()
}

/// What the last successful run of a chore left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunRecord {
    pub last_success_at: i64,
    pub backlog_left: bool,
    pub rows_purged: i64,
}

/// Records a successful run of `chore`.
pub async fn record_run<C: ConnectionTrait>(conn: &C, chore: &str, run: RunRecord) -> StoreResult<()> {
    sql::execute(
        conn,
        "INSERT INTO housekeeping_runs (chore, last_success_at, backlog_left, rows_purged) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (chore) DO UPDATE SET last_success_at = excluded.last_success_at, \
           backlog_left = excluded.backlog_left, rows_purged = excluded.rows_purged",
        [chore.into(), run.last_success_at.into(), run.backlog_left.into(), run.rows_purged.into()],
    )
    .await?;
    Ok(())
}

pub async fn last_run<C: ConnectionTrait>(conn: &C, chore: &str) -> StoreResult<Option<RunRecord>> {
    let row = sql::query_one(
        conn,
        "SELECT last_success_at, backlog_left, rows_purged FROM housekeeping_runs WHERE chore = $1",
        [chore.into()],
    )
    .await?;
    row.map(|row| {
        Ok(RunRecord {
            last_success_at: row.try_get_by_index(0)?,
            backlog_left: row.try_get_by_index(1)?,
            rows_purged: row.try_get_by_index(2)?,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{in_memory, nonces, rate};

    #[tokio::test]
    async fn batches_delete_only_due_rows_and_at_most_the_limit() {
        let store = in_memory().await;
        let conn = store.connection();
        for i in 0..7 {
            assert!(nonces::spend(conn, &format!("old-{i}"), 1_000 + i).await.unwrap());
        }
        assert!(nonces::spend(conn, "live", 9_000).await.unwrap());
        assert_eq!(purge_batch(conn, Expiring::SpentNonces, 5_000, 3).await.unwrap(), 3);
        assert_eq!(purge_batch(conn, Expiring::SpentNonces, 5_000, 3).await.unwrap(), 3);
        assert_eq!(purge_batch(conn, Expiring::SpentNonces, 5_000, 3).await.unwrap(), 1);
        assert_eq!(purge_batch(conn, Expiring::SpentNonces, 5_000, 3).await.unwrap(), 0);
        assert!(!nonces::spend(conn, "live", 9_000).await.unwrap(), "the live key stays spent");
        rate::hit(conn, "k", 1_000, 10_000).await.unwrap();
        assert_eq!(purge_batch(conn, Expiring::RateCounters, 10_000, 500).await.unwrap(), 0);
        assert_eq!(purge_batch(conn, Expiring::RateCounters, 10_001, 500).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn every_kind_has_a_statement_that_runs() {
        let store = in_memory().await;
        for kind in Expiring::PURGE_ORDER {
            assert_eq!(purge_batch(store.connection(), kind, i64::MAX, 500).await.unwrap(), 0, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn runs_are_recorded_once_per_chore() {
        let store = in_memory().await;
        let conn = store.connection();
        assert_eq!(last_run(conn, "purge").await.unwrap(), None);
        let first = RunRecord { last_success_at: 1, backlog_left: true, rows_purged: 10 };
        record_run(conn, "purge", first).await.unwrap();
        assert_eq!(last_run(conn, "purge").await.unwrap(), Some(first));
        let second = RunRecord { last_success_at: 2, backlog_left: false, rows_purged: 0 };
        record_run(conn, "purge", second).await.unwrap();
        assert_eq!(last_run(conn, "purge").await.unwrap(), Some(second));
        assert!(store.try_purge_lock().await.unwrap().is_some(), "SQLite needs no lock");
    }
}
