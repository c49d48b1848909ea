//! Scheduled maintenance windows.

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::{StoreResult, entities::maintenance_window, new_id, sql};

pub struct NewWindow<'a> {
    pub title: &'a str,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub components: &'a [String],
    pub created_by: &'a str,
}

pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    new: NewWindow<'_>,
    now_ms: i64,
) -> StoreResult<maintenance_window::Model> {
    Ok(maintenance_window::ActiveModel {
        id: Set(new_id()),
        title: Set(new.title.to_owned()),
        starts_at: Set(new.starts_at_ms),
        ends_at: Set(new.ends_at_ms),
        components: Set(new.components.join(",")),
        created_by: Set(Some(new.created_by.to_owned())),
        created_at: Set(now_ms),
        cancelled_at: Set(None),
    }
    .insert(conn)
    .await?)
}

/// Windows not cancelled and not over at `now`, earliest start first.
pub async fn current_and_upcoming<C: ConnectionTrait>(
    conn: &C,
    now_ms: i64,
) -> StoreResult<Vec<maintenance_window::Model>> {
    Ok(maintenance_window::Entity::find()
        .filter(maintenance_window::Column::CancelledAt.is_null())
        .filter(maintenance_window::Column::EndsAt.gt(now_ms))
        .order_by_asc(maintenance_window::Column::StartsAt)
        .order_by_asc(maintenance_window::Column::Id)
        .all(conn)
        .await?)
}

/// A live window sharing any instant with `[start, end)`.
pub async fn overlapping<C: ConnectionTrait>(
    conn: &C,
    start_ms: i64,
    end_ms: i64,
) -> StoreResult<Option<maintenance_window::Model>> {
    Ok(maintenance_window::Entity::find()
        .filter(maintenance_window::Column::CancelledAt.is_null())
        .filter(maintenance_window::Column::StartsAt.lt(end_ms))
        .filter(maintenance_window::Column::EndsAt.gt(start_ms))
        .one(conn)
        .await?)
}

pub async fn find<C: ConnectionTrait>(conn: &C, id: &str) -> StoreResult<Option<maintenance_window::Model>> {
    Ok(maintenance_window::Entity::find_by_id(id.to_owned()).one(conn).await?)
}

/// Cancels a window that has not ended; true when this call cancelled it.
pub async fn cancel<C: ConnectionTrait>(conn: &C, id: &str, now_ms: i64) -> StoreResult<bool> {
    let changed = sql::execute(
        conn,
        "UPDATE maintenance_windows SET cancelled_at = $1 WHERE id = $2 AND cancelled_at IS NULL AND ends_at > $1",
        [now_ms.into(), id.into()],
    )
    .await?;
    Ok(changed == 1)
}
