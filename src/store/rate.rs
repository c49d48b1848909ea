//! Fixed-window counters shared by every replica: throttles and quotas.

use super::{StoreResult, Writes, sql};

/// Counts one hit on `key` and returns the count in the current window and
/// when that window started.
pub async fn hit<C: sea_orm::ConnectionTrait>(
    conn: &C,
    key: &str,
    window_ms: i64,
    now_ms: i64,
) -> StoreResult<(i32, i64)> {
    let counted = hit_each(conn, &[key], window_ms, now_ms).await?;
    counted.into_iter().next().ok_or_else(|| missing_row().into())
}

/// Counts one hit on each of `keys` (distinct) and returns, in their order,
/// the count in the current window and when that window started. One atomic
/// upsert: concurrent hits on any replica each get a distinct count, and the
/// rows are taken in the order given, so callers that always list their keys
/// in the same order never deadlock.
pub async fn hit_each<C: sea_orm::ConnectionTrait>(
    conn: &C,
    keys: &[&str],
    window_ms: i64,
    now_ms: i64,
) -> StoreResult<Vec<(i32, i64)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // $1 is the first key, $2 now, then the other keys, then the window's oldest start.
    let rows = (0..keys.len())
        .map(|i| if i == 0 { "($1, $2, 1)".to_owned() } else { format!("(${}, $2, 1)", i + 2) })
        .collect::<Vec<_>>()
        .join(", ");
    let expired = format!("${}", keys.len() + 2);
    let statement = format!(
        "INSERT INTO rate_counters (key, window_start, count) VALUES {rows} \
         ON CONFLICT (key) DO UPDATE SET \
           count = CASE WHEN rate_counters.window_start <= {expired} THEN 1 ELSE rate_counters.count + 1 END, \
           window_start = CASE WHEN rate_counters.window_start <= {expired} THEN excluded.window_start \
                          ELSE rate_counters.window_start END \
         RETURNING key, count, window_start"
    );
    let mut values: Vec<sea_orm::Value> = vec![keys[0].into(), now_ms.into()];
    values.extend(keys[1..].iter().map(|&key| key.into()));
    values.push((now_ms - window_ms).into());
    let mut counted = std::collections::HashMap::with_capacity(keys.len());
    for row in sql::query_all(conn, &statement, values).await? {
        let key: String = row.try_get_by_index(0)?;
        counted.insert(key, (row.try_get_by_index(1)?, row.try_get_by_index(2)?));
    }
    keys.iter().map(|key| counted.remove(*key).ok_or_else(|| missing_row().into())).collect()
}

fn missing_row() -> sea_orm::DbErr {
    sea_orm::DbErr::RecordNotFound("rate counter upsert returned no row for a key".to_owned())
}

/// The hits on each of `keys` in its current window, in their order (0 for a
/// key never hit or whose window has ended), without counting one: a
/// read-only look before costly work, which `hit_each` then confirms.
pub async fn counts<C: sea_orm::ConnectionTrait>(
    conn: &C,
    keys: &[&str],
    window_ms: i64,
    now_ms: i64,
) -> StoreResult<Vec<i32>> {
    let mut counted = std::collections::HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(sql::BATCH_ROWS) {
        let statement = format!(
            "SELECT key, count FROM rate_counters WHERE window_start > $1 AND key IN ({})",
            sql::placeholders(2, chunk.len())
        );
        let mut values: Vec<sea_orm::Value> = vec![(now_ms - window_ms).into()];
        values.extend(chunk.iter().map(|&key| key.into()));
        for row in sql::query_all(conn, &statement, values).await? {
            let key: String = row.try_get_by_index(0)?;
            counted.insert(key, row.try_get_by_index::<i32>(1)?);
        }
    }
    Ok(keys.iter().map(|key| counted.get(*key).copied().unwrap_or(0)).collect())
}

/// Takes back one hit on each `(key, window_start)`, where that window is
/// still the key's current one. One statement whatever the number of keys, and
/// an upsert rather than an UPDATE because PostgreSQL takes an upsert's rows in
/// the order given, as [`hit_each`] does: an UPDATE of several rows takes them
/// in the order it finds them, and two logins from one address holding each
/// other's next row until commit deadlock. A row purged meanwhile comes back
/// holding nothing (count 0), for housekeeping to purge again. The keys must
/// be distinct: PostgreSQL refuses an upsert that reaches one row twice.
pub async fn refund_each<C: sea_orm::ConnectionTrait, K: AsRef<str>>(conn: &C, slots: &[(K, i64)]) -> StoreResult<()> {
    let mut writes = Writes::default();
    refund_each_with(&mut writes, slots);
    writes.run(conn).await
}

/// [`refund_each`], among other writes sent together.
pub fn refund_each_with<K: AsRef<str>>(writes: &mut Writes, slots: &[(K, i64)]) {
    if slots.is_empty() {
        return;
    }
    let rows = (0..slots.len()).map(|i| format!("(${}, ${}, 0)", 2 * i + 1, 2 * i + 2)).collect::<Vec<_>>().join(", ");
    let statement = format!(
        "INSERT INTO rate_counters (key, window_start, count) VALUES {rows} \
         ON CONFLICT (key) DO UPDATE SET count = rate_counters.count - 1 \
         WHERE rate_counters.window_start = excluded.window_start AND rate_counters.count > 0"
    );
    let values: Vec<sea_orm::Value> =
        slots.iter().flat_map(|(key, window_start)| [key.as_ref().into(), (*window_start).into()]).collect();
    writes.push(statement, values);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::in_memory as store;

    #[tokio::test]
    async fn each_key_is_counted_and_answered_in_the_order_given() {
        let store = store().await;
        let conn = store.connection();
        assert_eq!(hit_each(conn, &["b", "a"], 1_000, 10_000).await.unwrap(), vec![(1, 10_000), (1, 10_000)]);
        assert_eq!(hit(conn, "a", 1_000, 10_500).await.unwrap(), (2, 10_000));
        assert_eq!(
            hit_each(conn, &["a", "c", "b"], 1_000, 10_600).await.unwrap(),
            vec![(3, 10_000), (1, 10_600), (2, 10_000)]
        );
        assert!(hit_each(conn, &[], 1_000, 10_600).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn counts_read_the_current_window_without_counting() {
        let store = store().await;
        let conn = store.connection();
        hit_each(conn, &["a", "b"], 1_000, 10_000).await.unwrap();
        hit(conn, "a", 1_000, 10_100).await.unwrap();
        assert_eq!(counts(conn, &["a", "b", "never"], 1_000, 10_200).await.unwrap(), vec![2, 1, 0]);
        assert_eq!(counts(conn, &["a"], 1_000, 10_200).await.unwrap(), vec![2], "reading counts nothing");
        // An ended window counts as none.
        assert_eq!(counts(conn, &["a", "b"], 1_000, 11_000).await.unwrap(), vec![0, 0]);
        assert!(counts(conn, &[], 1_000, 11_000).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_ended_window_starts_afresh_and_refunds_reach_only_their_window() {
        let store = store().await;
        let conn = store.connection();
        hit_each(conn, &["k", "other"], 1_000, 10_000).await.unwrap();
        hit_each(conn, &["k"], 1_000, 10_100).await.unwrap();
        // A refund for a window that has ended changes nothing.
        refund_each(conn, &[("k", 9_000)]).await.unwrap();
        assert_eq!(hit(conn, "k", 1_000, 10_200).await.unwrap(), (3, 10_000));
        refund_each(conn, &[("k", 10_000), ("other", 10_000)]).await.unwrap();
        assert_eq!(hit_each(conn, &["k", "other"], 1_000, 10_300).await.unwrap(), vec![(3, 10_000), (1, 10_000)]);
        // At window_start + window the window has ended: counting restarts.
        assert_eq!(hit_each(conn, &["other", "k"], 1_000, 11_000).await.unwrap(), vec![(1, 11_000), (1, 11_000)]);
    }

    #[tokio::test]
    async fn refunds_never_count_below_zero_and_a_purged_key_comes_back_empty() {
        let store = store().await;
        let conn = store.connection();
        hit(conn, "k", 1_000, 10_000).await.unwrap();
        refund_each(conn, &[("k", 10_000)]).await.unwrap();
        refund_each(conn, &[("k", 10_000), ("purged", 10_000)]).await.unwrap();
        assert_eq!(counts(conn, &["k", "purged"], 1_000, 10_100).await.unwrap(), vec![0, 0]);
        assert_eq!(hit_each(conn, &["k", "purged"], 1_000, 10_200).await.unwrap(), vec![(1, 10_000), (1, 10_000)]);
        refund_each::<_, &str>(conn, &[]).await.unwrap();
    }
}
