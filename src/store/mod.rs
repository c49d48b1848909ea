//! The only place SQL lives: sea-orm entities and the queries the use cases
//! need, on SQLite (embedded default) or PostgreSQL.

pub mod audit;
pub mod entities;
pub mod keys;
pub mod links;
pub mod maintenance;
pub mod nonces;
pub mod outbox;
pub mod purge;
pub mod rate;
pub mod reset_requests;
pub mod second_factors;
pub mod secrets;
pub mod sessions;
mod sql;
pub mod tenancy;
pub mod users;

pub use sql::{BATCH_ROWS, Writes};

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
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                true
            }
            sqlx::Error::Database(db) => {
                let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
                db.code().is_some_and(|code| is_transient_code(sqlite, &code))
            }
            _ => false,
        },
        _ => false,
    }
}

/// Errors about the database's state, not the request's: storage that takes
/// no writes now (disk full, read-only, I/O errors), a lock held too long, or
/// a conflict the database broke by aborting this side. Retrying later helps.
fn is_transient_code(sqlite: bool, code: &str) -> bool {
    if sqlite {
        // The extended result code; its low byte is the primary one:
        // BUSY 5, LOCKED 6, READONLY 8, IOERR 10, FULL 13.
        return code.parse::<i32>().is_ok_and(|extended| matches!(extended & 0xff, 5 | 6 | 8 | 10 | 13));
    }
    // SQLSTATE: class 53 insufficient resources (53100 disk full), read-only
    // transaction, serialization failure, deadlock.
    code.starts_with("53") || matches!(code, "25006" | "40001" | "40P01")
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub size: u32,
    pub idle: u32,
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
                create_private_dir_all(parent).map_err(|e| {
                    StoreError::Unavailable(DbErr::Custom(format!("cannot create {}: {e}", parent.display())))
                })?;
            }
            // The file holds password hashes, TOTP secrets and maybe the signing
            // key: made 0600 here, before SQLite would make it with the umask.
            // SQLite gives its -wal and -shm files the database file's mode.
            create_private_file(Path::new(path))
                .map_err(|e| StoreError::Unavailable(DbErr::Custom(format!("cannot create {path}: {e}"))))?;
            // A ping checks that a network peer is still there; SQLite has none
            // (its connections are in-process), and each ping is one more hand-off
            // to the connection's thread on every checkout: three per login.
            options.test_before_acquire(false);
            options.map_sqlx_sqlite_opts(|opts| {
                opts.create_if_missing(true)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
        }
        let db = Database::connect(options).await.map_err(|error| explain_open_failure(url, error))?;
        Ok(Self { db })
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Connections open and idle in the pool right now.
    pub fn pool_usage(&self) -> PoolUsage {
        let (size, idle) = match self.backend() {
            DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        };
        PoolUsage { size, idle: u32::try_from(idle).unwrap_or(u32::MAX) }
    }

    /// Starts a transaction that will write. On SQLite it takes the write
    /// lock at once (`BEGIN IMMEDIATE`): a deferred transaction that reads and
    /// then writes fails with SQLITE_BUSY_SNAPSHOT, which ignores busy_timeout.
    pub async fn begin_write(&self) -> StoreResult<DatabaseTransaction> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        // sqlx loses a transaction whose BEGIN is abandoned in flight (a
        // cancelled call drops our future there): its connection goes back to
        // the pool still inside the transaction, which then holds the row
        // locks of whatever later borrows it, for good. Begun in a task of its
        // own, the transaction always reaches a `DatabaseTransaction`, whose
        // drop rolls it back, even when nobody is left to use it.
        let db = self.db.clone();
        let begun = tokio::spawn(async move { db.begin_with_options(options).await });
        let transaction = begun.await.map_err(|e| DbErr::Custom(format!("beginning a transaction: {e}")))?;
        Ok(transaction?)
    }

    /// Fails when the database takes no writes: SQLite opens a read-only file
    /// (or a file on a read-only volume) read-only without a word, and a
    /// PostgreSQL standby answers reads only. Writes nothing that matters.
    pub async fn check_writable(&self) -> StoreResult<()> {
        if self.backend() == DbBackend::Sqlite {
            // Writing the header's user_version back unchanged is a real write.
            let version = sql::query_one(&self.db, "PRAGMA user_version", []).await?;
            let version: i64 = version.map(|row| row.try_get_by_index(0)).transpose()?.unwrap_or(0);
            self.db.execute_unprepared(&format!("PRAGMA user_version = {version}")).await?;
            return Ok(());
        }
        let read_only = sql::query_one(&self.db, "SHOW transaction_read_only", []).await?;
        match read_only.map(|row| row.try_get_by_index::<String>(0)).transpose()? {
            Some(value) if value == "on" => {
                Err(StoreError::Unavailable(DbErr::Custom("the database is read-only (a standby?)".to_owned())))
            }
            _ => Ok(()),
        }
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

    /// True when every migration this binary knows is applied. Applied
    /// migrations it does not know (the next release's, applied by the upgrade
    /// Job while this release's replicas still serve, or after a rollback of
    /// the code alone) do not make it unready: sea-orm's pending-migration
    /// check fails outright in that case.
    pub async fn is_migrated(&self) -> StoreResult<bool> {
        let applied: std::collections::HashSet<String> =
            Migrator::get_migration_models(&self.db).await?.into_iter().map(|m| m.version).collect();
        Ok(Migrator::migrations().iter().all(|m| applied.contains(m.name())))
    }
}

/// SQLite answers "unable to open database file" when the folder takes no
/// writes (a WAL database needs its -wal and -shm files there): say so.
fn explain_open_failure(url: &str, error: DbErr) -> StoreError {
    let Some(folder) = sqlite_path(url).map(|path| Path::new(path).parent().unwrap_or(Path::new("."))) else {
        return error.into();
    };
    let folder = if folder.as_os_str().is_empty() { Path::new(".") } else { folder };
    let probe = folder.join(format!(".identity-write-check-{}", new_id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            error.into()
        }
        Err(io) => StoreError::Unavailable(DbErr::Custom(format!(
            "{error}; the folder {} takes no writes: {io}",
            folder.display()
        ))),
    }
}

/// Creates `dir` and any missing parents readable by the owner only (0700);
/// existing folders keep their mode.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `path` empty and readable by the owner only (0600) when it does
/// not exist; an existing file is left as it is.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
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

/// A migrated in-memory SQLite store for the store's own unit tests.
#[cfg(test)]
pub(crate) async fn in_memory() -> Store {
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.migrate_up().await.unwrap();
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_trouble_is_transient_and_constraint_errors_are_not() {
        for code in ["13", "8", "778", "1032", "5", "517"] {
            assert!(is_transient_code(true, code), "SQLite {code}");
        }
        for code in ["19", "2067", "1", "11"] {
            assert!(!is_transient_code(true, code), "SQLite {code}");
        }
        for code in ["53100", "53200", "25006", "40001", "40P01"] {
            assert!(is_transient_code(false, code), "PostgreSQL {code}");
        }
        for code in ["23505", "42P01", "22001"] {
            assert!(!is_transient_code(false, code), "PostgreSQL {code}");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_sqlite_database_and_its_folders_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("data/nested/identity.db");
        let store = Store::connect(&format!("sqlite://{}", file.display()), 1).await.unwrap();
        store.migrate_up().await.unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&scratch.path().join("data")), 0o700);
        assert_eq!(mode(&scratch.path().join("data/nested")), 0o700);
        for suffix in ["-wal", "-shm"] {
            let companion = scratch.path().join(format!("data/nested/identity.db{suffix}"));
            assert_eq!(mode(&companion), 0o600, "{suffix}: SQLite copies the database's mode");
        }
    }

    #[test]
    fn sqlite_paths_are_read_from_urls() {
        assert_eq!(sqlite_path("sqlite://./data/identity.db"), Some("./data/identity.db"));
        assert_eq!(sqlite_path("sqlite:///tmp/x.db?mode=rwc"), Some("/tmp/x.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }
}
