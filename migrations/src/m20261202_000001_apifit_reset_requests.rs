//! Retry-safe batch resets: one row per (caller, request id) of
//! `ResetPasswords`, kept for a day, holding the first outcome sealed under
//! the request id (docs/decisions.md, "Users by id, retry-safe resets, cluster
//! transport").

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000001_apifit_reset_requests"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ResetRequests::Table)
                    // SHA-256 (hex) of the caller's id and the request id: the
                    // request id itself, the seal's key, is never stored.
                    .col(ColumnDef::new(ResetRequests::Key).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(ResetRequests::ActorUserId).string_len(36).not_null())
                    // What was asked (targets, `all`, email): a different request under the same id is refused.
                    .col(ColumnDef::new(ResetRequests::Fingerprint).string_len(64).not_null())
                    .col(ColumnDef::new(ResetRequests::Outcome).binary().not_null())
                    .col(ColumnDef::new(ResetRequests::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("reset_requests_created_at")
                    .table(ResetRequests::Table)
                    .col(ResetRequests::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ResetRequests::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ResetRequests {
    Table,
    Key,
    ActorUserId,
    Fingerprint,
    Outcome,
    CreatedAt,
}
