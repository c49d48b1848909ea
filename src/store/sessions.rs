//! Sessions and their rotating refresh tokens.

use sea_orm::{ConnectionTrait, EntityTrait};

use super::{
    StoreResult, Writes,
    entities::{refresh_token, session},
    sql,
};

/// A new session, among other writes sent together.
pub fn insert_session(writes: &mut Writes, id: &str, user_id: &str, now_ms: i64, expires_at_ms: i64) {
    writes.push(
        sql::insert_statement("sessions", &["id", "user_id", "created_at", "expires_at"]),
        vec![id.into(), user_id.into(), now_ms.into(), expires_at_ms.into()],
    );
}

/// A session's new refresh token, among other writes sent together.
pub fn insert_refresh_token(writes: &mut Writes, token_hash: &str, session_id: &str, now_ms: i64, expires_at_ms: i64) {
    writes.push(
        sql::insert_statement("refresh_tokens", &["token_hash", "session_id", "created_at", "expires_at"]),
        vec![token_hash.into(), session_id.into(), now_ms.into(), expires_at_ms.into()],
    );
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// This call consumed the token; the session may get a new one.
    Rotated {
        session_id: String,
    },
    /// The token was consumed moments ago (within the grace): another request
    /// of the same holder raced this one; the session may get a new one too.
    RacedRotation {
        session_id: String,
    },
    /// The token was already consumed: someone replayed it.
    Reused {
        session_id: String,
    },
    Expired,
    Unknown,
}

/// Consumes a refresh token with one conditional UPDATE, so of two
/// concurrent uses exactly one rotates and the other sees a reuse.
pub async fn rotate_refresh_token<C: ConnectionTrait>(
    conn: &C,
    token_hash: &str,
    now_ms: i64,
    grace_ms: i64,
) -> StoreResult<Rotation> {
    let consumed = sql::execute(
        conn,
        "UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 AND rotated_at IS NULL AND expires_at > $1",
        [now_ms.into(), token_hash.into()],
    )
    .await?;
    let row = refresh_token::Entity::find_by_id(token_hash.to_owned()).one(conn).await?;
    Ok(match row {
        None => Rotation::Unknown,
        Some(row) if consumed == 1 => Rotation::Rotated { session_id: row.session_id },
        Some(row)
            if grace_ms > 0 && row.rotated_at.is_some_and(|at| now_ms - at < grace_ms) && row.expires_at > now_ms =>
        {
            Rotation::RacedRotation { session_id: row.session_id }
        }
        Some(row) if row.rotated_at.is_some() => Rotation::Reused { session_id: row.session_id },
        Some(_) => Rotation::Expired,
    })
}

pub async fn find_session<C: ConnectionTrait>(conn: &C, id: &str) -> StoreResult<Option<session::Model>> {
    Ok(session::Entity::find_by_id(id.to_owned()).one(conn).await?)
}

/// Revokes one session; true when this call revoked it.
pub async fn revoke_session<C: ConnectionTrait>(conn: &C, id: &str, reason: &str, now_ms: i64) -> StoreResult<bool> {
    let changed = sql::execute(
        conn,
        "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
        [now_ms.into(), reason.into(), id.into()],
    )
    .await?;
    Ok(changed == 1)
}

/// Revokes every live session of a user; returns their ids.
pub async fn revoke_user_sessions<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    reason: &str,
    now_ms: i64,
) -> StoreResult<Vec<String>> {
    revoke_sessions_of(conn, &[user_id], reason, now_ms).await
}

/// [`revoke_user_sessions`] for many users, a few hundred per statement.
pub async fn revoke_sessions_of<C: ConnectionTrait>(
    conn: &C,
    user_ids: &[&str],
    reason: &str,
    now_ms: i64,
) -> StoreResult<Vec<String>> {
    let mut revoked = Vec::new();
    for chunk in user_ids.chunks(super::sql::BATCH_ROWS) {
        let ids = super::sql::placeholders(3, chunk.len());
        let mut values: Vec<sea_orm::Value> = vec![now_ms.into(), reason.into()];
        values.extend(chunk.iter().map(|&id| id.into()));
        let statement = format!(
            "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 \
             WHERE user_id IN ({ids}) AND revoked_at IS NULL RETURNING id"
        );
        for row in super::sql::query_all(conn, &statement, values).await? {
            revoked.push(row.try_get_by_index::<String>(0)?);
        }
    }
    Ok(revoked)
}
