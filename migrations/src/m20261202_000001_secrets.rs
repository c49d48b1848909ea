//! Secrets at rest: the data key that encrypts each TOTP secret and each
//! queued email body, and the instant a signing key was withdrawn.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000001_secrets"
    }
}

#[derive(DeriveIden)]
enum SecondFactors {
    Table,
    DataKeyId,
}

#[derive(DeriveIden)]
enum EmailOutbox {
    Table,
    DataKeyId,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // NULL: a row written before this step, in clear until `keys rotate-data-key` encrypts it.
        manager
            .alter_table(
                Table::alter()
                    .table(SecondFactors::Table)
                    .add_column(ColumnDef::new(SecondFactors::DataKeyId).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(EmailOutbox::Table)
                    .add_column(ColumnDef::new(EmailOutbox::DataKeyId).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .add_column(ColumnDef::new(SigningKeys::RevokedAt).big_integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE drops one at a time.
        manager
            .alter_table(Table::alter().table(SigningKeys::Table).drop_column(SigningKeys::RevokedAt).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(EmailOutbox::Table).drop_column(EmailOutbox::DataKeyId).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(SecondFactors::Table).drop_column(SecondFactors::DataKeyId).to_owned())
            .await
    }
}
