//! The initial schema. Every instant is stored as BIGINT milliseconds since the
//! Unix epoch: comparisons such as `expires_at > :now` inside single atomic
//! statements then behave identically on SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000001_initial"
    }
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(36).not_null().primary_key().to_owned()
}
fn text(col: impl IntoIden, len: u32) -> ColumnDef {
    ColumnDef::new(col).string_len(len).not_null().to_owned()
}
fn text_null(col: impl IntoIden, len: u32) -> ColumnDef {
    ColumnDef::new(col).string_len(len).null().to_owned()
}
fn millis(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().to_owned()
}
fn millis_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().null().to_owned()
}
fn fk(table: impl IntoIden, col: impl IntoIden, to: impl IntoIden, to_col: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(table, col).to(to, to_col).on_delete(ForeignKeyAction::Cascade).to_owned()
}
fn index(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut stmt = Index::create().name(name).table(table).to_owned();
    for col in cols {
        stmt.col(Alias::new(*col));
    }
    stmt
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Subscriptions::Table)
                    .col(id(Subscriptions::Id))
                    .col(text(Subscriptions::Name, 200))
                    .col(text(Subscriptions::LoginPrefix, 16).unique_key())
                    .col(text(Subscriptions::PlatformId, 16))
                    .col(ColumnDef::new(Subscriptions::UsersDefineOwnPassword).boolean().not_null())
                    .col(ColumnDef::new(Subscriptions::LockoutThreshold).integer().not_null())
                    .col(millis(Subscriptions::CreatedAt))
                    .col(millis(Subscriptions::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BusinessUnits::Table)
                    .col(id(BusinessUnits::Id))
                    .col(text(BusinessUnits::SubscriptionId, 36))
                    .col(text(BusinessUnits::Name, 100))
                    .col(millis(BusinessUnits::CreatedAt))
                    .foreign_key(&mut fk(
                        BusinessUnits::Table,
                        BusinessUnits::SubscriptionId,
                        Subscriptions::Table,
                        Subscriptions::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_business_units_subscription_name", BusinessUnits::Table, &["subscription_id", "name"])
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id(Users::Id))
                    .col(text(Users::SubscriptionId, 36))
                    .col(text_null(Users::BusinessUnitId, 36))
                    // Unique across every subscription and never freed, not even by deletion.
                    .col(text(Users::UserLogin, 64).unique_key())
                    .col(text(Users::Email, 254))
                    .col(text(Users::FirstName, 100))
                    .col(text(Users::LastName, 100))
                    .col(text(Users::Role, 32))
                    .col(text(Users::Status, 32))
                    .col(text_null(Users::StatusReason, 32))
                    .col(ColumnDef::new(Users::FailedLogins).integer().not_null().default(0))
                    .col(millis(Users::CreatedAt))
                    .col(millis(Users::UpdatedAt))
                    .col(millis_null(Users::LastLoginAt))
                    .foreign_key(&mut fk(Users::Table, Users::SubscriptionId, Subscriptions::Table, Subscriptions::Id))
                    .foreign_key(&mut fk(Users::Table, Users::BusinessUnitId, BusinessUnits::Table, BusinessUnits::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("ix_users_subscription_login", Users::Table, &["subscription_id", "user_login"]))
            .await?;
        manager.create_index(index("ix_users_subscription_email", Users::Table, &["subscription_id", "email"])).await?;
        manager.create_index(index("ix_users_business_unit", Users::Table, &["business_unit_id"])).await?;

        manager
            .create_table(
                Table::create()
                    .table(PasswordCredentials::Table)
                    .col(id(PasswordCredentials::UserId))
                    // PHC string: algorithm, parameters and salt travel with the hash.
                    .col(text(PasswordCredentials::Hash, 255))
                    .col(millis(PasswordCredentials::UpdatedAt))
                    .foreign_key(&mut fk(
                        PasswordCredentials::Table,
                        PasswordCredentials::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(id(Sessions::Id))
                    .col(text(Sessions::UserId, 36))
                    .col(millis(Sessions::CreatedAt))
                    .col(millis(Sessions::ExpiresAt))
                    .col(millis_null(Sessions::RevokedAt))
                    .col(text_null(Sessions::RevokeReason, 32))
                    .foreign_key(&mut fk(Sessions::Table, Sessions::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("ix_sessions_user", Sessions::Table, &["user_id"])).await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    // SHA-256 of the opaque token, hex; the token itself is never stored.
                    .col(ColumnDef::new(RefreshTokens::TokenHash).string_len(64).not_null().primary_key())
                    .col(text(RefreshTokens::SessionId, 36))
                    .col(millis(RefreshTokens::CreatedAt))
                    .col(millis(RefreshTokens::ExpiresAt))
                    .col(millis_null(RefreshTokens::RotatedAt))
                    .foreign_key(&mut fk(RefreshTokens::Table, RefreshTokens::SessionId, Sessions::Table, Sessions::Id))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("ix_refresh_tokens_session", RefreshTokens::Table, &["session_id"])).await?;

        manager
            .create_table(
                Table::create()
                    .table(ActivationTokens::Table)
                    .col(id(ActivationTokens::Id))
                    .col(text(ActivationTokens::TokenHash, 64).unique_key())
                    .col(text(ActivationTokens::UserId, 36))
                    .col(text(ActivationTokens::Purpose, 32))
                    .col(millis(ActivationTokens::CreatedAt))
                    .col(millis(ActivationTokens::ExpiresAt))
                    .col(millis_null(ActivationTokens::UsedAt))
                    .col(millis_null(ActivationTokens::SupersededAt))
                    // A secret sealed with a key derived from the link's token, so the
                    // database alone can never reveal it.
                    .col(ColumnDef::new(ActivationTokens::SealedSecret).binary().null())
                    .foreign_key(&mut fk(ActivationTokens::Table, ActivationTokens::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("ix_activation_tokens_user_purpose", ActivationTokens::Table, &["user_id", "purpose"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SecondFactors::Table)
                    .col(id(SecondFactors::UserId))
                    .col(ColumnDef::new(SecondFactors::TotpSecret).binary().not_null())
                    .col(text_null(SecondFactors::PinHash, 255))
                    .col(ColumnDef::new(SecondFactors::NewPinRequired).boolean().not_null())
                    // The last accepted TOTP time step: a code is accepted once.
                    .col(ColumnDef::new(SecondFactors::LastAcceptedStep).big_integer().null())
                    .col(millis(SecondFactors::AssignedAt))
                    .col(millis(SecondFactors::UpdatedAt))
                    .foreign_key(&mut fk(SecondFactors::Table, SecondFactors::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LoginChallenges::Table)
                    .col(ColumnDef::new(LoginChallenges::IdHash).string_len(64).not_null().primary_key())
                    .col(text(LoginChallenges::UserId, 36))
                    .col(text(LoginChallenges::Kind, 16))
                    .col(millis(LoginChallenges::CreatedAt))
                    .col(millis(LoginChallenges::ExpiresAt))
                    .col(millis_null(LoginChallenges::ConsumedAt))
                    .foreign_key(&mut fk(LoginChallenges::Table, LoginChallenges::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    // UUIDv7: ordered by time, so it doubles as a stable page cursor.
                    .col(id(AuditEvents::Id))
                    .col(millis(AuditEvents::OccurredAt))
                    .col(text_null(AuditEvents::SubscriptionId, 36))
                    .col(text_null(AuditEvents::ActorUserId, 36))
                    .col(text_null(AuditEvents::ActorLogin, 64))
                    .col(text(AuditEvents::Action, 64))
                    .col(text_null(AuditEvents::TargetUserId, 36))
                    .col(text_null(AuditEvents::TargetLogin, 64))
                    .col(text(AuditEvents::Outcome, 16))
                    .col(text_null(AuditEvents::Reason, 64))
                    .col(text_null(AuditEvents::SourceIp, 64))
                    .col(ColumnDef::new(AuditEvents::Detail).text().null())
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("ix_audit_subscription_id", AuditEvents::Table, &["subscription_id", "id"])).await?;
        manager.create_index(index("ix_audit_target", AuditEvents::Table, &["target_user_id"])).await?;
        manager.create_index(index("ix_audit_actor", AuditEvents::Table, &["actor_user_id"])).await?;

        manager
            .create_table(
                Table::create()
                    .table(EmailOutbox::Table)
                    .col(id(EmailOutbox::Id))
                    // RFC 5322 Message-ID, fixed at enqueue time so a redelivery is recognisable.
                    .col(text(EmailOutbox::MessageId, 200).unique_key())
                    .col(text(EmailOutbox::Kind, 32))
                    .col(text_null(EmailOutbox::UserId, 36))
                    .col(text(EmailOutbox::Recipient, 254))
                    .col(text(EmailOutbox::Subject, 200))
                    .col(ColumnDef::new(EmailOutbox::BodyText).text().not_null())
                    .col(ColumnDef::new(EmailOutbox::BodyHtml).text().not_null())
                    .col(millis(EmailOutbox::CreatedAt))
                    .col(millis(EmailOutbox::NextAttemptAt))
                    .col(ColumnDef::new(EmailOutbox::Attempts).integer().not_null().default(0))
                    .col(millis_null(EmailOutbox::SentAt))
                    .col(millis_null(EmailOutbox::FailedAt))
                    .col(ColumnDef::new(EmailOutbox::LastError).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("ix_outbox_pending", EmailOutbox::Table, &["sent_at", "failed_at", "next_attempt_at"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MaintenanceWindows::Table)
                    .col(id(MaintenanceWindows::Id))
                    .col(text(MaintenanceWindows::Title, 200))
                    .col(millis(MaintenanceWindows::StartsAt))
                    .col(millis(MaintenanceWindows::EndsAt))
                    // Comma-separated component names; empty means the whole platform.
                    .col(text(MaintenanceWindows::Components, 500))
                    .col(text_null(MaintenanceWindows::CreatedBy, 64))
                    .col(millis(MaintenanceWindows::CreatedAt))
                    .col(millis_null(MaintenanceWindows::CancelledAt))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("ix_maintenance_ends", MaintenanceWindows::Table, &["ends_at"])).await?;

        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .col(ColumnDef::new(SigningKeys::Kid).string_len(64).not_null().primary_key())
                    .col(text(SigningKeys::Algorithm, 16))
                    // PKCS#8 DER; empty for keys loaded from configured PEM files.
                    .col(ColumnDef::new(SigningKeys::PrivateKey).binary().not_null())
                    .col(ColumnDef::new(SigningKeys::PublicKey).binary().not_null())
                    .col(millis(SigningKeys::CreatedAt))
                    // Set when a newer key takes over signing; published until `expires_at`.
                    .col(millis_null(SigningKeys::RetiredAt))
                    .col(millis_null(SigningKeys::ExpiresAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RateCounters::Table)
                    // e.g. "login:ip:127.0.0.1", "reset:user:<id>".
                    .col(ColumnDef::new(RateCounters::Key).string_len(200).not_null().primary_key())
                    .col(millis(RateCounters::WindowStart))
                    .col(ColumnDef::new(RateCounters::Count).integer().not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SpentNonces::Table)
                    // e.g. a captcha solution: accepted once.
                    .col(ColumnDef::new(SpentNonces::Key).string_len(200).not_null().primary_key())
                    .col(millis(SpentNonces::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables: [DynIden; 15] = [
            SpentNonces::Table.into_iden(),
            RateCounters::Table.into_iden(),
            SigningKeys::Table.into_iden(),
            MaintenanceWindows::Table.into_iden(),
            EmailOutbox::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            LoginChallenges::Table.into_iden(),
            SecondFactors::Table.into_iden(),
            ActivationTokens::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            Sessions::Table.into_iden(),
            PasswordCredentials::Table.into_iden(),
            Users::Table.into_iden(),
            BusinessUnits::Table.into_iden(),
            Subscriptions::Table.into_iden(),
        ];
        for table in tables {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Subscriptions {
    Table,
    Id,
    Name,
    LoginPrefix,
    PlatformId,
    UsersDefineOwnPassword,
    LockoutThreshold,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BusinessUnits {
    Table,
    Id,
    SubscriptionId,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    SubscriptionId,
    BusinessUnitId,
    UserLogin,
    Email,
    FirstName,
    LastName,
    Role,
    Status,
    StatusReason,
    FailedLogins,
    CreatedAt,
    UpdatedAt,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum PasswordCredentials {
    Table,
    UserId,
    Hash,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
    RevokeReason,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenHash,
    SessionId,
    CreatedAt,
    ExpiresAt,
    RotatedAt,
}

#[derive(DeriveIden)]
enum ActivationTokens {
    Table,
    Id,
    TokenHash,
    UserId,
    Purpose,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    SupersededAt,
    SealedSecret,
}

#[derive(DeriveIden)]
enum SecondFactors {
    Table,
    UserId,
    TotpSecret,
    PinHash,
    NewPinRequired,
    LastAcceptedStep,
    AssignedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum LoginChallenges {
    Table,
    IdHash,
    UserId,
    Kind,
    CreatedAt,
    ExpiresAt,
    ConsumedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    SubscriptionId,
    ActorUserId,
    ActorLogin,
    Action,
    TargetUserId,
    TargetLogin,
    Outcome,
    Reason,
    SourceIp,
    Detail,
}

#[derive(DeriveIden)]
enum EmailOutbox {
    Table,
    Id,
    MessageId,
    Kind,
    UserId,
    Recipient,
    Subject,
    BodyText,
    BodyHtml,
    CreatedAt,
    NextAttemptAt,
    Attempts,
    SentAt,
    FailedAt,
    LastError,
}

#[derive(DeriveIden)]
enum MaintenanceWindows {
    Table,
    Id,
    Title,
    StartsAt,
    EndsAt,
    Components,
    CreatedBy,
    CreatedAt,
    CancelledAt,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Algorithm,
    PrivateKey,
    PublicKey,
    CreatedAt,
    RetiredAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum RateCounters {
    Table,
    Key,
    WindowStart,
    Count,
}

#[derive(DeriveIden)]
enum SpentNonces {
    Table,
    Key,
    ExpiresAt,
}
