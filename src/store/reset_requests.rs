//! Retry-safe `ResetPasswords`: the first outcome of each (caller, request id)
//! for a day, sealed under the request id. The claim is made inside the
//! batch's own transaction, so the outcome is stored if and only if the
//! resets are, and of concurrent duplicates exactly one claims.

use sea_orm::ConnectionTrait;

use super::{StoreResult, sql};

/// A request seen before: what it asked for, and its sealed outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub fingerprint: String,
    pub sealed_outcome: Vec<u8>,
}

/// Claims `key` for this transaction: true when no request made since
/// `since_ms` holds it (an older one is forgotten first), false when one does.
/// A concurrent claim on PostgreSQL waits for the other transaction to end,
/// then sees its row; one `INSERT … ON CONFLICT DO NOTHING` leaves the
/// transaction usable either way.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    key: &str,
    actor_user_id: &str,
    fingerprint: &str,
    since_ms: i64,
    now_ms: i64,
) -> StoreResult<bool> {
    sql::execute(conn, "DELETE FROM reset_requests WHERE key = $1 AND created_at < $2", [key.into(), since_ms.into()])
        .await?;
    let inserted = sql::execute(
        conn,
        "INSERT INTO reset_requests (key, actor_user_id, fingerprint, outcome, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
        [key.into(), actor_user_id.into(), fingerprint.into(), Vec::<u8>::new().into(), now_ms.into()],
    )
    .await?;
    Ok(inserted == 1)
}

/// Stores the outcome of a request this transaction claimed.
pub async fn complete<C: ConnectionTrait>(conn: &C, key: &str, sealed_outcome: Vec<u8>) -> StoreResult<()> {
    sql::execute(conn, "UPDATE reset_requests SET outcome = $1 WHERE key = $2", [sealed_outcome.into(), key.into()])
        .await?;
    Ok(())
}

/// The request made under `key` since `since_ms`, if any.
pub async fn find<C: ConnectionTrait>(conn: &C, key: &str, since_ms: i64) -> StoreResult<Option<Seen>> {
    let row = sql::query_one(
        conn,
        "SELECT fingerprint, outcome FROM reset_requests WHERE key = $1 AND created_at >= $2",
        [key.into(), since_ms.into()],
    )
    .await?;
    Ok(match row {
        Some(row) => Some(Seen { fingerprint: row.try_get_by_index(0)?, sealed_outcome: row.try_get_by_index(1)? }),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::in_memory as store;

    #[tokio::test]
    async fn a_request_is_claimed_once_a_day() {
        let store = store().await;
        let conn = store.connection();
        assert!(claim(conn, "k1", "actor", "fp", 0, 1_000).await.unwrap());
        assert!(!claim(conn, "k1", "actor", "fp", 0, 2_000).await.unwrap());
        complete(conn, "k1", vec![1, 2, 3]).await.unwrap();
        let seen = find(conn, "k1", 0).await.unwrap().unwrap();
        assert_eq!(seen, Seen { fingerprint: "fp".to_owned(), sealed_outcome: vec![1, 2, 3] });
        assert!(find(conn, "k1", 1_001).await.unwrap().is_none(), "older than the window: gone");
        assert!(claim(conn, "k1", "actor", "fp2", 1_001, 90_000).await.unwrap(), "an expired claim is replaced");
        assert_eq!(find(conn, "k1", 0).await.unwrap().unwrap().fingerprint, "fp2");
        let purged =
            crate::store::purge::purge_batch(conn, crate::domain::retention::Expiring::ResetRequests, 90_001, 10);
        assert_eq!(purged.await.unwrap(), 1, "housekeeping forgets it after the window");
        assert!(find(conn, "k1", 0).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_claim_rolled_back_leaves_nothing() {
        let store = store().await;
        let txn = store.begin_write().await.unwrap();
        assert!(claim(&txn, "k", "actor", "fp", 0, 1_000).await.unwrap());
        txn.rollback().await.unwrap();
        assert!(find(store.connection(), "k", 0).await.unwrap().is_none());
    }
}
