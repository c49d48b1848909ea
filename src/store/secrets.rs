//! Secrets at rest: which data key sealed which rows, and re-sealing them one
//! row at a time under another (a rotation, while replicas keep serving).

use std::collections::BTreeMap;

use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value};

use super::{
    StoreResult,
    entities::{email_outbox, second_factor},
    sql,
};
use crate::crypto::data_keys::Sealed;

/// The row a TOTP secret is sealed to: moved to another row, it does not open.
pub fn totp_aad(user_id: &str) -> Vec<u8> {
    format!("second_factors.totp_secret:{user_id}").into_bytes()
}

/// The row an email body is sealed to.
pub fn email_aad(id: &str, part: &str) -> Vec<u8> {
    format!("email_outbox.{part}:{id}").into_bytes()
}

/// Rows per data key (None: rows in clear, from before encryption), both tables together.
pub async fn rows_per_key<C: ConnectionTrait>(conn: &C) -> StoreResult<BTreeMap<Option<String>, u64>> {
    let mut counts = BTreeMap::new();
    for table in ["second_factors", "email_outbox"] {
        let rows = sql::query_all(conn, &format!("SELECT data_key_id, COUNT(*) FROM {table} GROUP BY data_key_id"), [])
            .await?;
        for row in rows {
            let key: Option<String> = row.try_get_by_index(0)?;
            let count: i64 = row.try_get_by_index(1)?;
            *counts.entry(key).or_insert(0) += u64::try_from(count).unwrap_or_default();
        }
    }
    Ok(counts)
}

/// One sealed value under `key_id` and the row it is bound to, to prove a key
/// file holds the key that sealed the rows: (aad, sealed bytes).
pub async fn sample_under<C: ConnectionTrait>(conn: &C, key_id: &str) -> StoreResult<Option<(Vec<u8>, Vec<u8>)>> {
    if let Some(factor) =
        second_factor::Entity::find().filter(second_factor::Column::DataKeyId.eq(key_id)).one(conn).await?
    {
        return Ok(Some((totp_aad(&factor.user_id), factor.totp_secret)));
    }
    let email = email_outbox::Entity::find()
        .filter(email_outbox::Column::DataKeyId.eq(key_id))
        .filter(email_outbox::Column::BodyText.ne(""))
        .one(conn)
        .await?;
    Ok(email.and_then(|email| {
        use base64::Engine;
        let sealed = base64::engine::general_purpose::STANDARD.decode(&email.body_text).ok()?;
        Some((email_aad(&email.id, "body_text"), sealed))
    }))
}

/// Up to `limit` second factors not sealed under `key_id`.
pub async fn factors_not_under<C: ConnectionTrait>(
    conn: &C,
    key_id: &str,
    limit: u64,
) -> StoreResult<Vec<second_factor::Model>> {
    Ok(second_factor::Entity::find()
        .filter(
            Condition::any()
                .add(second_factor::Column::DataKeyId.is_null())
                .add(second_factor::Column::DataKeyId.ne(key_id)),
        )
        .order_by_asc(second_factor::Column::UserId)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Up to `limit` emails not sealed under `key_id`.
pub async fn emails_not_under<C: ConnectionTrait>(
    conn: &C,
    key_id: &str,
    limit: u64,
) -> StoreResult<Vec<email_outbox::Model>> {
    Ok(email_outbox::Entity::find()
        .filter(
            Condition::any()
                .add(email_outbox::Column::DataKeyId.is_null())
                .add(email_outbox::Column::DataKeyId.ne(key_id)),
        )
        .order_by_asc(email_outbox::Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}

/// `AND data_key_id = $n` or `AND data_key_id IS NULL`, pushing the value when there is one.
fn same_key(key_id: Option<&str>, values: &mut Vec<Value>) -> String {
    match key_id {
        Some(id) => {
            values.push(id.into());
            format!(" AND data_key_id = ${}", values.len())
        }
        None => " AND data_key_id IS NULL".to_owned(),
    }
}

/// Replaces a TOTP secret by its re-sealed form, only if the row still holds
/// what was read: a token assigned meanwhile is newer and stays.
pub async fn reseal_factor<C: ConnectionTrait>(
    conn: &C,
    seen: &second_factor::Model,
    sealed: &Sealed,
) -> StoreResult<bool> {
    let mut values: Vec<Value> = vec![
        sealed.bytes.clone().into(),
        sealed.key_id.clone().into(),
        seen.user_id.clone().into(),
        seen.totp_secret.clone().into(),
    ];
    let same = same_key(seen.data_key_id.as_deref(), &mut values);
    let changed = sql::execute(
        conn,
        &format!(
            "UPDATE second_factors SET totp_secret = $1, data_key_id = $2 WHERE user_id = $3 AND totp_secret = $4{same}"
        ),
        values,
    )
    .await?;
    Ok(changed == 1)
}

/// Replaces an email's bodies by their re-sealed forms, only if the row still
/// holds what was read: a body scrubbed meanwhile stays scrubbed.
pub async fn reseal_email<C: ConnectionTrait>(
    conn: &C,
    seen: &email_outbox::Model,
    key_id: &str,
    body_text: &str,
    body_html: &str,
) -> StoreResult<bool> {
    let mut values: Vec<Value> = vec![
        body_text.into(),
        body_html.into(),
        key_id.into(),
        seen.id.clone().into(),
        seen.body_text.clone().into(),
        seen.body_html.clone().into(),
    ];
    let same = same_key(seen.data_key_id.as_deref(), &mut values);
    let changed = sql::execute(
        conn,
        &format!(
            "UPDATE email_outbox SET body_text = $1, body_html = $2, data_key_id = $3 \
             WHERE id = $4 AND body_text = $5 AND body_html = $6{same}"
        ),
        values,
    )
    .await?;
    Ok(changed == 1)
}
