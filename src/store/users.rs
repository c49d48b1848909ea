//! Users and their password credentials.

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::OnConflict};

use super::{
    StoreResult,
    entities::{password_credential, user},
    new_id,
};
use crate::domain::{Role, UserLogin, UserStatus};

pub struct NewUser<'a> {
    pub subscription_id: &'a str,
    pub business_unit_id: Option<&'a str>,
    pub user_login: &'a UserLogin,
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub role: Role,
    pub status: UserStatus,
}

pub async fn insert_user<C: ConnectionTrait>(conn: &C, new: NewUser<'_>, now_ms: i64) -> StoreResult<user::Model> {
    Ok(user::ActiveModel {
        id: Set(new_id()),
        subscription_id: Set(new.subscription_id.to_owned()),
        business_unit_id: Set(new.business_unit_id.map(str::to_owned)),
        user_login: Set(new.user_login.as_str().to_owned()),
        email: Set(new.email.to_owned()),
        first_name: Set(new.first_name.to_owned()),
        last_name: Set(new.last_name.to_owned()),
        role: Set(new.role.as_str().to_owned()),
        status: Set(new.status.as_str().to_owned()),
        status_reason: Set(None),
        failed_logins: Set(0),
        created_at: Set(now_ms),
        updated_at: Set(now_ms),
        last_login_at: Set(None),
    }
    .insert(conn)
    .await?)
}

/// Exact, case-sensitive lookup (the column is compared byte for byte on
/// both engines).
pub async fn find_by_login<C: ConnectionTrait>(conn: &C, login: &str) -> StoreResult<Option<user::Model>> {
    Ok(user::Entity::find().filter(user::Column::UserLogin.eq(login)).one(conn).await?)
}

pub async fn find_by_id<C: ConnectionTrait>(conn: &C, id: &str) -> StoreResult<Option<user::Model>> {
    Ok(user::Entity::find_by_id(id.to_owned()).one(conn).await?)
}

/// Sets or replaces a user's password hash.
pub async fn set_password_hash<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    hash: &str,
    now_ms: i64,
) -> StoreResult<()> {
    password_credential::Entity::insert(password_credential::ActiveModel {
        user_id: Set(user_id.to_owned()),
        hash: Set(hash.to_owned()),
        updated_at: Set(now_ms),
    })
    .on_conflict(
        OnConflict::column(password_credential::Column::UserId)
            .update_columns([password_credential::Column::Hash, password_credential::Column::UpdatedAt])
            .to_owned(),
    )
    .exec(conn)
    .await?;
    Ok(())
}

pub async fn password_hash<C: ConnectionTrait>(conn: &C, user_id: &str) -> StoreResult<Option<String>> {
    Ok(password_credential::Entity::find_by_id(user_id.to_owned()).one(conn).await?.map(|credential| credential.hash))
}

/// After a failed attempt on an ACTIVE account: counts it and, when the count
/// reaches `threshold`, locks the account — all in one UPDATE guarded by
/// `status = 'ACTIVE'`, so under any concurrency exactly one statement locks.
/// None when the account was not ACTIVE (nothing counted).
pub async fn record_failed_login<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    threshold: i32,
    now_ms: i64,
) -> StoreResult<Option<FailedLogin>> {
    let row = super::sql::query_one(
        conn,
        "UPDATE users SET failed_logins = failed_logins + 1, \
           status = CASE WHEN failed_logins + 1 >= $1 THEN 'INACTIVE' ELSE status END, \
           status_reason = CASE WHEN failed_logins + 1 >= $1 THEN 'LOCKED' ELSE status_reason END, \
           updated_at = $2 \
         WHERE id = $3 AND status = 'ACTIVE' \
         RETURNING failed_logins, status",
        [threshold.into(), now_ms.into(), user_id.into()],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    let failed_logins: i32 = row.try_get_by_index(0)?;
    let status: String = row.try_get_by_index(1)?;
    Ok(Some(FailedLogin { failed_logins, locked: status == UserStatus::Inactive.as_str() }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedLogin {
    pub failed_logins: i32,
    /// This very attempt locked the account.
    pub locked: bool,
}

/// After a success: the consecutive-failure count starts again.
pub async fn record_successful_login<C: ConnectionTrait>(conn: &C, user_id: &str, now_ms: i64) -> StoreResult<()> {
    super::sql::execute(
        conn,
        "UPDATE users SET failed_logins = 0, last_login_at = $1 WHERE id = $2",
        [now_ms.into(), user_id.into()],
    )
    .await?;
    Ok(())
}

/// Renames a login; a taken login is a `Duplicate`.
pub async fn rename<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    new_login: &UserLogin,
    now_ms: i64,
) -> StoreResult<()> {
    super::sql::execute(
        conn,
        "UPDATE users SET user_login = $1, updated_at = $2 WHERE id = $3",
        [new_login.as_str().into(), now_ms.into(), user_id.into()],
    )
    .await?;
    Ok(())
}
