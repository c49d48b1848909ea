//! One-time links: stored only as the hash of their token, bound to one user
//! and one purpose, superseded by a newer link of the same purpose.

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::Expr};

use super::{StoreResult, entities::activation_token, new_id};

pub struct NewLink<'a> {
    pub user_id: &'a str,
    pub purpose: &'a str,
    pub token_hash: &'a str,
    pub expires_at_ms: i64,
    pub sealed_secret: Option<Vec<u8>>,
}

/// Supersedes the user's live links of the same purpose, then stores the new one.
pub async fn issue<C: ConnectionTrait>(conn: &C, link: NewLink<'_>, now_ms: i64) -> StoreResult<()> {
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        // Serialise issuers per user: under READ COMMITTED the UPDATE below cannot see
        // a link another open transaction is inserting, and both would stay live.
        // (SQLite writers are serialised already by BEGIN IMMEDIATE.)
        super::sql::execute(conn, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", [link.user_id.into()]).await?;
    }
    activation_token::Entity::update_many()
        .col_expr(activation_token::Column::SupersededAt, Expr::value(now_ms))
        .filter(activation_token::Column::UserId.eq(link.user_id))
        .filter(activation_token::Column::Purpose.eq(link.purpose))
        .filter(activation_token::Column::UsedAt.is_null())
        .filter(activation_token::Column::SupersededAt.is_null())
        .exec(conn)
        .await?;
    activation_token::ActiveModel {
        id: Set(new_id()),
        token_hash: Set(link.token_hash.to_owned()),
        user_id: Set(link.user_id.to_owned()),
        purpose: Set(link.purpose.to_owned()),
        created_at: Set(now_ms),
        expires_at: Set(link.expires_at_ms),
        used_at: Set(None),
        superseded_at: Set(None),
        sealed_secret: Set(link.sealed_secret),
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub async fn find_by_hash<C: ConnectionTrait>(
    conn: &C,
    token_hash: &str,
) -> StoreResult<Option<activation_token::Model>> {
    Ok(activation_token::Entity::find().filter(activation_token::Column::TokenHash.eq(token_hash)).one(conn).await?)
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
    super::sql::execute(
        conn,
        "UPDATE activation_tokens SET superseded_at = $1 WHERE user_id = $2 AND used_at IS NULL AND superseded_at IS NULL",
        [now_ms.into(), user_id.into()],
    )
    .await?;
    Ok(())
}
