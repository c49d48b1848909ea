//! Values accepted once (captcha solutions), remembered in `spent_nonces`
//! until they expire. Shared by every replica through the database.

use sea_orm::ConnectionTrait;

use super::{StoreResult, sql};

/// How long a key is kept past its own expiry before housekeeping forgets it: a
/// replica whose clock lags behind the purging one's could otherwise still
/// accept a value whose key was already forgotten.
pub const PURGE_GRACE_MS: i64 = 10 * 60 * 1000;

/// Records `key` as spent until `expires_at_ms`: true the first time, false
/// when it was already spent. One `INSERT … ON CONFLICT DO NOTHING`, so of
/// concurrent spends on any replicas exactly one gets true, and a repeat
/// inside a PostgreSQL transaction does not abort that transaction.
pub async fn spend<C: ConnectionTrait>(conn: &C, key: &str, expires_at_ms: i64) -> StoreResult<bool> {
    let inserted = sql::execute(
        conn,
        "INSERT INTO spent_nonces (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        [key.into(), expires_at_ms.into()],
    )
    .await?;
    Ok(inserted == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::in_memory as store;

    #[tokio::test]
    async fn a_key_is_spent_once() {
        let store = store().await;
        let conn = store.connection();
        assert!(spend(conn, "captcha:0123", 1_000).await.unwrap());
        assert!(!spend(conn, "captcha:0123", 1_000).await.unwrap());
        assert!(!spend(conn, "captcha:0123", 9_000).await.unwrap());
        assert!(spend(conn, "captcha:4567", 1_000).await.unwrap());
    }

    #[tokio::test]
    async fn a_repeat_inside_a_transaction_leaves_it_usable() {
        let store = store().await;
        let txn = store.begin_write().await.unwrap();
        assert!(spend(&txn, "captcha:aa", 1_000).await.unwrap());
        assert!(!spend(&txn, "captcha:aa", 1_000).await.unwrap());
        assert!(spend(&txn, "captcha:bb", 1_000).await.unwrap());
        txn.commit().await.unwrap();
        assert!(!spend(store.connection(), "captcha:bb", 1_000).await.unwrap());
    }
}
