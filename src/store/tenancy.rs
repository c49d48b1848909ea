//! Subscriptions and their business units.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};

use super::{
    StoreResult,
    entities::{business_unit, subscription, user},
    new_id,
};
use crate::domain::{Role, UserStatus};

/// The name of the business unit every subscription has (DESIGN §1).
pub const DEFAULT_UNIT: &str = "Unassigned";

pub struct NewSubscription<'a> {
    pub name: &'a str,
    pub login_prefix: &'a str,
    pub platform_id: &'a str,
    pub users_define_own_password: bool,
    pub lockout_threshold: i32,
}

/// Inserts a subscription and its `Unassigned` unit.
pub async fn insert_subscription<C: ConnectionTrait>(
    conn: &C,
    new: NewSubscription<'_>,
    now_ms: i64,
) -> StoreResult<(subscription::Model, business_unit::Model)> {
    let subscription = subscription::ActiveModel {
        id: Set(new_id()),
        name: Set(new.name.to_owned()),
        login_prefix: Set(new.login_prefix.to_owned()),
        platform_id: Set(new.platform_id.to_owned()),
        users_define_own_password: Set(new.users_define_own_password),
        lockout_threshold: Set(new.lockout_threshold),
        created_at: Set(now_ms),
        updated_at: Set(now_ms),
    }
    .insert(conn)
    .await?;
    let unit = insert_business_unit(conn, &subscription.id, DEFAULT_UNIT, now_ms).await?;
    Ok((subscription, unit))
}

pub async fn insert_business_unit<C: ConnectionTrait>(
    conn: &C,
    subscription_id: &str,
    name: &str,
    now_ms: i64,
) -> StoreResult<business_unit::Model> {
    Ok(business_unit::ActiveModel {
        id: Set(new_id()),
        subscription_id: Set(subscription_id.to_owned()),
        name: Set(name.to_owned()),
        created_at: Set(now_ms),
    }
    .insert(conn)
    .await?)
}

pub async fn count_subscriptions<C: ConnectionTrait>(conn: &C) -> StoreResult<u64> {
    Ok(subscription::Entity::find().count(conn).await?)
}

pub async fn find_subscription<C: ConnectionTrait>(conn: &C, id: &str) -> StoreResult<Option<subscription::Model>> {
    Ok(subscription::Entity::find_by_id(id.to_owned()).one(conn).await?)
}

pub async fn find_business_unit_by_name<C: ConnectionTrait>(
    conn: &C,
    subscription_id: &str,
    name: &str,
) -> StoreResult<Option<business_unit::Model>> {
    Ok(business_unit::Entity::find()
        .filter(business_unit::Column::SubscriptionId.eq(subscription_id))
        .filter(business_unit::Column::Name.eq(name))
        .one(conn)
        .await?)
}

/// Every business unit of a subscription, by name.
pub async fn list_business_units<C: ConnectionTrait>(
    conn: &C,
    subscription_id: &str,
) -> StoreResult<Vec<business_unit::Model>> {
    Ok(business_unit::Entity::find()
        .filter(business_unit::Column::SubscriptionId.eq(subscription_id))
        .order_by_asc(business_unit::Column::Name)
        .all(conn)
        .await?)
}

pub async fn find_business_unit<C: ConnectionTrait>(conn: &C, id: &str) -> StoreResult<Option<business_unit::Model>> {
    Ok(business_unit::Entity::find_by_id(id.to_owned()).one(conn).await?)
}

pub async fn find_subscription_by_prefix<C: ConnectionTrait>(
    conn: &C,
    prefix: &str,
) -> StoreResult<Option<subscription::Model>> {
    Ok(subscription::Entity::find().filter(subscription::Column::LoginPrefix.eq(prefix)).one(conn).await?)
}

/// Serialises changes to who governs a subscription (its Managers) until the
/// transaction ends, so two Administrators deactivating the last two Managers
/// at once cannot both succeed. PostgreSQL only: SQLite's BEGIN IMMEDIATE
/// already lets one writer in at a time. `NO KEY UPDATE` leaves inserts that
/// reference the subscription unblocked.
pub async fn lock_governance<C: ConnectionTrait>(conn: &C, subscription_id: &str) -> StoreResult<()> {
    if conn.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    super::sql::query_all(
        conn,
        "SELECT 1 FROM subscriptions WHERE id = $1 FOR NO KEY UPDATE",
        [subscription_id.into()],
    )
    .await?;
    Ok(())
}

/// The subscription's ACTIVE users of `role`: its Managers govern it and
/// hear of every rescue; the operators hear of a rescue of one of their own.
pub async fn active_with_role<C: ConnectionTrait>(
    conn: &C,
    subscription_id: &str,
    role: Role,
) -> StoreResult<Vec<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::SubscriptionId.eq(subscription_id))
        .filter(user::Column::Role.eq(role))
        .filter(user::Column::Status.eq(UserStatus::Active))
        .all(conn)
        .await?)
}
