//! One-time links: stored only as the hash of their token, bound to one user
//! and one purpose, superseded by a newer link of the same purpose.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::{StoreResult, entities::link, new_id};
use crate::domain::link::LinkPurpose;

pub struct NewLink<'a> {
    pub user_id: &'a str,
    pub purpose: LinkPurpose,
    pub token_hash: &'a str,
    pub expires_at_ms: i64,
    pub sealed_secret: Option<Vec<u8>>,
}

/// Supersedes the user's live links of the same purpose, then stores the new one.
pub async fn issue<C: ConnectionTrait>(conn: &C, link: NewLink<'_>, now_ms: i64) -> StoreResult<()> {
    issue_many(conn, vec![link], now_ms).await
}

/// [`issue`] for many users (one link each), a few hundred per statement.
pub async fn issue_many<C: ConnectionTrait>(conn: &C, links: Vec<NewLink<'_>>, now_ms: i64) -> StoreResult<()> {
    for chunk in links.chunks(super::sql::BATCH_ROWS) {
        let user_ids: Vec<&str> = chunk.iter().map(|link| link.user_id).collect();
        // Serialise issuers per user: under READ COMMITTED the UPDATE below cannot see
        // a link another open transaction is inserting, and both would stay live.
        super::users::lock(conn, &user_ids).await?;
        let pairs = (0..chunk.len()).map(|i| format!("(${}, ${})", 2 * i + 2, 2 * i + 3)).collect::<Vec<_>>();
        let mut values: Vec<sea_orm::Value> = vec![now_ms.into()];
        for link in chunk {
            values.extend([link.user_id.into(), link.purpose.into()]);
        }
        super::sql::execute(
            conn,
            &format!(
                "UPDATE activation_tokens SET superseded_at = $1 \
                 WHERE used_at IS NULL AND superseded_at IS NULL AND (user_id, purpose) IN (VALUES {})",
                pairs.join(", ")
            ),
            values,
        )
        .await?;
        let rows = chunk.iter().map(|link| link::ActiveModel {
            id: Set(new_id()),
            token_hash: Set(link.token_hash.to_owned()),
            user_id: Set(link.user_id.to_owned()),
            purpose: Set(link.purpose),
            created_at: Set(now_ms),
            expires_at: Set(link.expires_at_ms),
            used_at: Set(None),
            superseded_at: Set(None),
            sealed_secret: Set(link.sealed_secret.clone()),
        });
        link::Entity::insert_many(rows).exec_without_returning(conn).await?;
    }
    Ok(())
}

pub async fn find_by_hash<C: ConnectionTrait>(conn: &C, token_hash: &str) -> StoreResult<Option<link::Model>> {
    Ok(link::Entity::find().filter(link::Column::TokenHash.eq(token_hash)).one(conn).await?)
}

/// Consumes a live link with one conditional UPDATE: of concurrent
/// redemptions exactly one changes the row.
pub async fn consume<C: ConnectionTrait>(conn: &C, token_hash: &str, now_ms: i64) -> StoreResult<bool> {
    let changed = super::sql::execute(
        conn,
        "UPDATE activation_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND superseded_at IS NULL AND expires_at > $1",
        [now_ms.into(), token_hash.into()],
    )
    .await?;
    Ok(changed == 1)
}

/// Supersedes every live link of a user, whatever its purpose: after a
/// password or email change, links sent earlier must not open the account.
pub async fn supersede_all<C: ConnectionTrait>(conn: &C, user_id: &str, now_ms: i64) -> StoreResult<()> {
    supersede_all_of(conn, &[user_id], now_ms).await
}

/// [`supersede_all`] for many users, a few hundred per statement.
pub async fn supersede_all_of<C: ConnectionTrait>(conn: &C, user_ids: &[&str], now_ms: i64) -> StoreResult<()> {
    for chunk in user_ids.chunks(super::sql::BATCH_ROWS) {
        let ids = super::sql::placeholders(2, chunk.len());
        let mut values: Vec<sea_orm::Value> = vec![now_ms.into()];
        values.extend(chunk.iter().map(|&id| id.into()));
        super::sql::execute(
            conn,
            &format!(
                "UPDATE activation_tokens SET superseded_at = $1 \
                 WHERE user_id IN ({ids}) AND used_at IS NULL AND superseded_at IS NULL"
            ),
            values,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::users::tests::store_with_users;

    fn link<'a>(user_id: &'a str, purpose: LinkPurpose, token_hash: &'a str) -> NewLink<'a> {
        NewLink { user_id, purpose, token_hash, expires_at_ms: 1_000_000, sealed_secret: None }
    }

    async fn superseded_at<C: ConnectionTrait>(conn: &C, token_hash: &str) -> Option<i64> {
        find_by_hash(conn, token_hash).await.unwrap().unwrap().superseded_at
    }

    #[tokio::test]
    async fn a_batch_of_links_supersedes_only_each_users_earlier_link_of_the_same_purpose() {
        let (store, users) = store_with_users(&["acme_ann", "acme_bob"]).await;
        let (ann, bob) = (users[0].id.as_str(), users[1].id.as_str());
        let conn = store.connection();
        issue(conn, link(ann, LinkPurpose::Welcome, "ann-welcome"), 1).await.unwrap();
        issue(conn, link(ann, LinkPurpose::ForgotPassword, "ann-forgot"), 1).await.unwrap();
        issue(conn, link(bob, LinkPurpose::Welcome, "bob-welcome"), 1).await.unwrap();

        issue_many(
            conn,
            vec![
                link(ann, LinkPurpose::Welcome, "ann-welcome-2"),
                link(bob, LinkPurpose::ForgotPassword, "bob-forgot"),
            ],
            2,
        )
        .await
        .unwrap();
        assert_eq!(superseded_at(conn, "ann-welcome").await, Some(2));
        for live in ["ann-forgot", "bob-welcome", "ann-welcome-2", "bob-forgot"] {
            assert_eq!(superseded_at(conn, live).await, None, "{live}");
        }

        supersede_all_of(conn, &[ann, bob], 3).await.unwrap();
        for earlier in ["ann-forgot", "bob-welcome", "ann-welcome-2", "bob-forgot"] {
            assert_eq!(superseded_at(conn, earlier).await, Some(3), "{earlier}");
        }
        assert_eq!(superseded_at(conn, "ann-welcome").await, Some(2), "a superseded link keeps its time");
    }
}
