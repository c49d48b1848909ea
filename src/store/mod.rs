//! The only place SQL lives: sea-orm entities and the queries the use cases
//! need, on SQLite (embedded default) or PostgreSQL.

pub mod activation;
pub mod audit;
pub mod entities;
pub mod keys;
pub mod maintenance;
pub mod nonces;
pub mod outbox;
pub mod rate;
pub mod second_factors;
pub mod sessions;
mod sql;
pub mod tenancy;
pub mod users;

use std::{path::Path, time::Duration};

use identity_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqlErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

use crate::domain::Error;

/// What can go wrong below the use cases.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the row.
    #[error("duplicate: {0}")]
    Duplicate(String),
    /// The database cannot be reached right now.
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    #[error("database error: {0}")]
    Db(DbErr),
}

impl From<DbErr> for StoreError {
    fn from(error: DbErr) -> Self {
        if let Some(SqlErr::UniqueConstraintViolation(detail)) = error.sql_err() {
            return StoreError::Duplicate(detail);
        }
        if is_unavailable(&error) { StoreError::Unavailable(error) } else { StoreError::Db(error) }
    }
}

fn is_unavailable(error: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    match error {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed
        ),
        _ => false,
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                Error::Unavailable
            }
            other => Error::internal(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A pooled connection to the service's database.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// Connects; for SQLite, creates the file (and its folder) when missing
    /// and uses WAL so readers never wait for the writer.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        if let Some(path) = sqlite_path(url) {
            if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Unavailable(DbErr::Custom(format!("cannot create {}: {e}", parent.display())))
                })?;
            }
            options.map_sqlx_sqlite_opts(|opts| {
                opts.create_if_missing(true)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
        }
        let db = Database::connect(options).await?;
        Ok(Self { db })
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Starts a transaction that will write. On SQLite it takes the write
    /// lock at once (`BEGIN IMMEDIATE`): a deferred transaction that reads and
    /// then writes fails with SQLITE_BUSY_SNAPSHOT, which ignores busy_timeout.
    pub async fn begin_write(&self) -> StoreResult<DatabaseTransaction> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok(self.db.begin_with_options(options).await?)
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.db.execute_raw(Statement::from_string(self.backend(), "SELECT 1")).await?;
        Ok(())
    }

    pub async fn migrate_up(&self) -> StoreResult<()> {
        Ok(Migrator::up(&self.db, None).await?)
    }

    /// Reverts the last `steps` migrations, or all of them.
    pub async fn migrate_down(&self, steps: Option<u32>) -> StoreResult<()> {
        Ok(Migrator::down(&self.db, steps).await?)
    }

    /// Every known migration with whether it is applied.
    pub async fn migration_status(&self) -> StoreResult<Vec<(String, bool)>> {
        let applied: Vec<String> =
            Migrator::get_applied_migrations(&self.db).await?.into_iter().map(|m| m.name().to_owned()).collect();
        Ok(Migrator::migrations()
            .into_iter()
            .map(|m| {
                let name = m.name().to_owned();
                let is_applied = applied.contains(&name);
                (name, is_applied)
            })
            .collect())
    }

    /// True when the schema is complete: every migration applied.
    pub async fn is_migrated(&self) -> StoreResult<bool> {
        Ok(Migrator::get_pending_migrations(&self.db).await?.is_empty())
    }
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// A fresh random id: UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_read_from_urls() {
        assert_eq!(sqlite_path("sqlite://./data/identity.db"), Some("./data/identity.db"));
        assert_eq!(sqlite_path("sqlite:///tmp/x.db?mode=rwc"), Some("/tmp/x.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }
}
