//! Fixed-window counters shared by every replica: throttles and quotas.

use super::{StoreResult, sql};

/// Counts one hit on `key` and returns the count in the current window and
/// when that window started. One atomic upsert: concurrent hits on any
/// replica each get a distinct count.
pub async fn hit<C: sea_orm::ConnectionTrait>(
    conn: &C,
    key: &str,
    window_ms: i64,
    now_ms: i64,
) -> StoreResult<(i32, i64)> {
    let row = sql::query_one(
        conn,
        "INSERT INTO rate_counters (key, window_start, count) VALUES ($1, $2, 1) \
         ON CONFLICT (key) DO UPDATE SET \
           count = CASE WHEN rate_counters.window_start <= $3 THEN 1 ELSE rate_counters.count + 1 END, \
           window_start = CASE WHEN rate_counters.window_start <= $3 THEN $2 ELSE rate_counters.window_start END \
         RETURNING count, window_start",
        [key.into(), now_ms.into(), (now_ms - window_ms).into()],
    )
    .await?
    .ok_or_else(|| sea_orm::DbErr::RecordNotFound("rate counter upsert returned nothing".to_owned()))?;
    Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?))
}

/// Takes back one hit counted in the window that started at `window_start`.
pub async fn refund<C: sea_orm::ConnectionTrait>(conn: &C, key: &str, window_start: i64) -> StoreResult<()> {
    sql::execute(
        conn,
        "UPDATE rate_counters SET count = count - 1 WHERE key = $1 AND window_start = $2 AND count > 0",
        [key.into(), window_start.into()],
    )
    .await?;
    Ok(())
}

/// Forgets counters whose window ended before `before_ms`.
pub async fn purge<C: sea_orm::ConnectionTrait>(conn: &C, before_ms: i64) -> StoreResult<u64> {
    sql::execute(conn, "DELETE FROM rate_counters WHERE window_start < $1", [before_ms.into()]).await
}
