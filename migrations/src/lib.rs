//! Schema migrations of the identity service, shared by SQLite and PostgreSQL.
//! One file per schema step; a released step is never edited.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_initial;
mod m20261202_000001_apifit_reset_requests;
mod m20261202_000001_retention;
mod m20261202_000001_secrets;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_initial::Migration),
            Box::new(m20261202_000001_retention::Migration),
            Box::new(m20261202_000001_secrets::Migration),
            Box::new(m20261202_000001_apifit_reset_requests::Migration),
        ]
    }
}
