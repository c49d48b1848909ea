//! Retention (issue #22): the indexes that let housekeeping find expired rows
//! without scanning whole tables, the shared record of its runs, and the
//! scrubbing of bodies already delivered before delivery started scrubbing them.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000001_retention"
    }
}

/// (index, table, column): one range index per purge condition.
const INDEXES: [(&str, &str, &str); 11] = [
    ("ix_sessions_expires", "sessions", "expires_at"),
    ("ix_sessions_revoked", "sessions", "revoked_at"),
    ("ix_refresh_tokens_expires", "refresh_tokens", "expires_at"),
    ("ix_activation_tokens_expires", "activation_tokens", "expires_at"),
    ("ix_activation_tokens_used", "activation_tokens", "used_at"),
    ("ix_activation_tokens_superseded", "activation_tokens", "superseded_at"),
    ("ix_login_challenges_expires", "login_challenges", "expires_at"),
    ("ix_audit_occurred", "audit_events", "occurred_at"),
    ("ix_outbox_failed", "email_outbox", "failed_at"),
    ("ix_spent_nonces_expires", "spent_nonces", "expires_at"),
    ("ix_rate_counters_window", "rate_counters", "window_start"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, column) in INDEXES {
            manager
                .create_index(Index::create().name(name).table(Alias::new(table)).col(Alias::new(column)).to_owned())
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(HousekeepingRuns::Table)
                    // One row per chore ("purge"), shared by every replica.
                    .col(ColumnDef::new(HousekeepingRuns::Chore).string_len(32).not_null().primary_key())
                    .col(ColumnDef::new(HousekeepingRuns::LastSuccessAt).big_integer().not_null())
                    // Rows still due when the last run stopped at its batch limit.
                    .col(ColumnDef::new(HousekeepingRuns::BacklogLeft).boolean().not_null())
                    .col(ColumnDef::new(HousekeepingRuns::RowsPurged).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // Delivered (or abandoned) messages carry one-time links: from now on the
        // dispatcher empties their bodies at once; these are the ones sent before.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE email_outbox SET body_text = '', body_html = '' \
                 WHERE (sent_at IS NOT NULL OR failed_at IS NOT NULL) AND (body_text <> '' OR body_html <> '')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(HousekeepingRuns::Table).to_owned()).await?;
        for (name, table, _) in INDEXES {
            manager.drop_index(Index::drop().name(name).table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum HousekeepingRuns {
    Table,
    Chore,
    LastSuccessAt,
    BacklogLeft,
    RowsPurged,
}
