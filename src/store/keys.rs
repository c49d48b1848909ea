//! The keys that sign access tokens, and how long each stays published.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::Expr,
};

use super::{StoreResult, entities::signing_key};
use crate::crypto::jwt::{ALGORITHM, NewKey};

/// Keys that may still verify a live token: never expiring, or not yet.
pub async fn published<C: ConnectionTrait>(conn: &C, now_ms: i64) -> StoreResult<Vec<signing_key::Model>> {
    Ok(signing_key::Entity::find()
        .filter(signing_key::Column::RevokedAt.is_null())
        .filter(
            Condition::any()
                .add(signing_key::Column::ExpiresAt.is_null())
                .add(signing_key::Column::ExpiresAt.gt(now_ms)),
        )
        .all(conn)
        .await?)
}

/// Stores a key as given: a key configured from a file is stored with an
/// empty `private_pkcs8_der`, so its secret stays in the file.
pub async fn insert<C: ConnectionTrait>(conn: &C, key: &NewKey, now_ms: i64) -> StoreResult<signing_key::Model> {
    Ok(signing_key::ActiveModel {
        kid: Set(key.kid.clone()),
        algorithm: Set(ALGORITHM.to_owned()),
        private_key: Set(key.private_pkcs8_der.clone()),
        public_key: Set(key.public_raw.to_vec()),
        created_at: Set(now_ms),
        retired_at: Set(None),
        expires_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(conn)
    .await?)
}

/// Like [`insert`], but a key already stored (put there by another replica
/// configured with the same file) is left as it is. One statement: on
/// PostgreSQL a failed INSERT would abort the surrounding transaction.
pub async fn insert_if_absent<C: ConnectionTrait>(conn: &C, key: &NewKey, now_ms: i64) -> StoreResult<()> {
    super::sql::execute(
        conn,
        "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kid) DO NOTHING",
        [
            key.kid.clone().into(),
            ALGORITHM.into(),
            key.private_pkcs8_der.clone().into(),
            key.public_raw.to_vec().into(),
            now_ms.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Stops the current signing keys signing, but keeps them published until
/// `publish_until_ms` so the tokens they signed keep verifying. Insert the
/// successor in the same transaction. Returns how many keys were retired.
pub async fn retire_signing_keys<C: ConnectionTrait>(conn: &C, now_ms: i64, publish_until_ms: i64) -> StoreResult<u64> {
    retire_all_but(conn, None, now_ms, publish_until_ms).await
}

/// Retires every signing key except `keep`; each stays published (verifying)
/// until `publish_until_ms`, when the tokens it signed have all expired.
pub async fn retire_all_but<C: ConnectionTrait>(
    conn: &C,
    keep: Option<&str>,
    now_ms: i64,
    publish_until_ms: i64,
) -> StoreResult<u64> {
    let mut update = signing_key::Entity::update_many()
        .col_expr(signing_key::Column::RetiredAt, Expr::value(now_ms))
        .col_expr(signing_key::Column::ExpiresAt, Expr::value(publish_until_ms))
        .filter(signing_key::Column::RetiredAt.is_null());
    if let Some(kid) = keep {
        update = update.filter(signing_key::Column::Kid.ne(kid));
    }
    Ok(update.exec(conn).await?.rows_affected)
}

/// Withdraws a key at once: no longer published nor trusted, its private half
/// erased. True when the key existed and was not withdrawn already.
pub async fn revoke<C: ConnectionTrait>(conn: &C, kid: &str, now_ms: i64) -> StoreResult<bool> {
    let changed = super::sql::execute(
        conn,
        "UPDATE signing_keys SET revoked_at = $1, retired_at = COALESCE(retired_at, $1), expires_at = $1, \
         private_key = $2 WHERE kid = $3 AND revoked_at IS NULL",
        [now_ms.into(), Vec::<u8>::new().into(), kid.into()],
    )
    .await?;
    Ok(changed == 1)
}

pub async fn find<C: ConnectionTrait>(conn: &C, kid: &str) -> StoreResult<Option<signing_key::Model>> {
    Ok(signing_key::Entity::find_by_id(kid.to_owned()).one(conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{crypto::jwt::generate_key, store::Store};

    #[tokio::test]
    async fn rotation_retires_the_signer_and_publishes_it_until_told() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        store.migrate_up().await.unwrap();
        let conn = store.connection();
        let (old, new) = (generate_key(), generate_key());

        insert(conn, &old, 1_000).await.unwrap();
        assert_eq!(retire_signing_keys(conn, 2_000, 5_000).await.unwrap(), 1);
        insert(conn, &new, 2_000).await.unwrap();

        let rows = published(conn, 4_999).await.unwrap();
        let retired = rows.iter().find(|r| r.kid == old.kid).unwrap();
        assert_eq!((retired.retired_at, retired.expires_at), (Some(2_000), Some(5_000)));
        assert_eq!(rows.len(), 2);
        let rows = published(conn, 5_000).await.unwrap();
        assert_eq!(rows.iter().map(|r| &r.kid).collect::<Vec<_>>(), [&new.kid]);
    }
}
