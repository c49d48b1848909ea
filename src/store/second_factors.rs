//! Software tokens, PINs, and the short-lived login challenges between a
//! password and a passcode.

use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set, sea_query::OnConflict};

use super::{
    StoreResult,
    entities::{login_challenge, second_factor},
    sql,
};
use crate::crypto::data_keys::{DataKeyError, DataKeys};

/// The clear TOTP secret of `factor` (a row from before encryption is in clear).
pub fn totp_secret(keys: &DataKeys, factor: &second_factor::Model) -> Result<Vec<u8>, DataKeyError> {
    match &factor.data_key_id {
        Some(key_id) => keys.open(key_id, &super::secrets::totp_aad(&factor.user_id), &factor.totp_secret),
        None => Ok(factor.totp_secret.clone()),
    }
}

/// Assigns (or replaces) a user's token: a new secret, sealed under the
/// current data key, no PIN, new-PIN mode.
pub async fn assign<C: ConnectionTrait>(
    conn: &C,
    keys: &DataKeys,
    user_id: &str,
    secret: &[u8],
    now_ms: i64,
) -> StoreResult<()> {
    let sealed = keys.seal(&super::secrets::totp_aad(user_id), secret);
    second_factor::Entity::insert(second_factor::ActiveModel {
        user_id: Set(user_id.to_owned()),
        totp_secret: Set(sealed.bytes),
        data_key_id: Set(Some(sealed.key_id)),
        pin_hash: Set(None),
        new_pin_required: Set(true),
        last_accepted_step: Set(None),
        assigned_at: Set(now_ms),
        updated_at: Set(now_ms),
    })
    .on_conflict(
        OnConflict::column(second_factor::Column::UserId)
            .update_columns([
                second_factor::Column::TotpSecret,
                second_factor::Column::DataKeyId,
                second_factor::Column::PinHash,
                second_factor::Column::NewPinRequired,
                second_factor::Column::LastAcceptedStep,
                second_factor::Column::AssignedAt,
                second_factor::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec(conn)
    .await?;
    Ok(())
}

pub async fn find<C: ConnectionTrait>(conn: &C, user_id: &str) -> StoreResult<Option<second_factor::Model>> {
    Ok(second_factor::Entity::find_by_id(user_id.to_owned()).one(conn).await?)
}

/// Accepts time step `step` once: only a step newer than every step accepted
/// before passes, whatever the concurrency.
pub async fn claim_step<C: ConnectionTrait>(conn: &C, user_id: &str, step: i64, now_ms: i64) -> StoreResult<bool> {
    let changed = sql::execute(
        conn,
        "UPDATE second_factors SET last_accepted_step = $1, updated_at = $2 \
         WHERE user_id = $3 AND (last_accepted_step IS NULL OR last_accepted_step < $1)",
        [step.into(), now_ms.into(), user_id.into()],
    )
    .await?;
    Ok(changed == 1)
}

pub async fn set_pin<C: ConnectionTrait>(conn: &C, user_id: &str, pin_hash: &str, now_ms: i64) -> StoreResult<()> {
    sql::execute(
        conn,
        "UPDATE second_factors SET pin_hash = $1, new_pin_required = $2, updated_at = $3 WHERE user_id = $4",
        [pin_hash.into(), false.into(), now_ms.into(), user_id.into()],
    )
    .await?;
    Ok(())
}

/// Back to new-PIN mode; true when the user has a token.
pub async fn reset_pin<C: ConnectionTrait>(conn: &C, user_id: &str, now_ms: i64) -> StoreResult<bool> {
    let changed = sql::execute(
        conn,
        "UPDATE second_factors SET pin_hash = NULL, new_pin_required = $1, updated_at = $2 WHERE user_id = $3",
        [true.into(), now_ms.into(), user_id.into()],
    )
    .await?;
    Ok(changed == 1)
}

pub async fn insert_challenge<C: ConnectionTrait>(
    conn: &C,
    id_hash: &str,
    user_id: &str,
    kind: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> StoreResult<()> {
    login_challenge::ActiveModel {
        id_hash: Set(id_hash.to_owned()),
        user_id: Set(user_id.to_owned()),
        kind: Set(kind.to_owned()),
        created_at: Set(now_ms),
        expires_at: Set(expires_at_ms),
        consumed_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub async fn find_challenge<C: ConnectionTrait>(
    conn: &C,
    id_hash: &str,
) -> StoreResult<Option<login_challenge::Model>> {
    Ok(login_challenge::Entity::find_by_id(id_hash.to_owned()).one(conn).await?)
}

/// Uses a challenge up: true for exactly one caller, while it is live.
pub async fn consume_challenge<C: ConnectionTrait>(conn: &C, id_hash: &str, now_ms: i64) -> StoreResult<bool> {
    let changed = sql::execute(
        conn,
        "UPDATE login_challenges SET consumed_at = $1 WHERE id_hash = $2 AND consumed_at IS NULL AND expires_at > $1",
        [now_ms.into(), id_hash.into()],
    )
    .await?;
    Ok(changed == 1)
}

/// Voids every open login challenge of these users (their credentials
/// changed), a few hundred users per statement.
pub async fn delete_challenges_of<C: ConnectionTrait>(conn: &C, user_ids: &[&str]) -> StoreResult<()> {
    for chunk in user_ids.chunks(sql::BATCH_ROWS) {
        let ids = sql::placeholders(1, chunk.len());
        let values: Vec<sea_orm::Value> = chunk.iter().map(|&id| id.into()).collect();
        sql::execute(conn, &format!("DELETE FROM login_challenges WHERE user_id IN ({ids})"), values).await?;
    }
    Ok(())
}
