//! The transactional email outbox: a message is a row written in the same
//! transaction as the change it tells about; a dispatcher delivers it.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};

use super::{StoreResult, entities::email_outbox, new_id, secrets::email_aad, sql};
use crate::crypto::data_keys::{DataKeyError, DataKeys};

pub struct NewEmail<'a> {
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body_text: &'a str,
    pub body_html: &'a str,
}

/// Queues an email; returns its Message-ID, fixed now so that a redelivery
/// after a crash is recognisable as the same message.
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    keys: &DataKeys,
    email: NewEmail<'_>,
    message_domain: &str,
    now_ms: i64,
) -> StoreResult<String> {
    let ids = enqueue_many(conn, keys, vec![email], message_domain, now_ms).await?;
    ids.into_iter().next().ok_or_else(|| sea_orm::DbErr::RecordNotInserted.into())
}

/// [`enqueue`] for many emails, a few hundred per statement; their Message-IDs in order.
/// Bodies carry one-time links: they are sealed under the current data key.
pub async fn enqueue_many<C: ConnectionTrait>(
    conn: &C,
    keys: &DataKeys,
    emails: Vec<NewEmail<'_>>,
    message_domain: &str,
    now_ms: i64,
) -> StoreResult<Vec<String>> {
    let mut message_ids = Vec::with_capacity(emails.len());
    for chunk in emails.chunks(sql::BATCH_ROWS) {
        let mut rows = Vec::with_capacity(chunk.len());
        for email in chunk {
            let id = new_id();
            let message_id = format!("<{id}@{message_domain}>");
            message_ids.push(message_id.clone());
            rows.push(email_outbox::ActiveModel {
                id: Set(id.clone()),
                message_id: Set(message_id),
                kind: Set(email.kind.to_owned()),
                user_id: Set(email.user_id.map(str::to_owned)),
                recipient: Set(email.recipient.to_owned()),
                subject: Set(email.subject.to_owned()),
                body_text: Set(keys.seal_text(&email_aad(&id, "body_text"), email.body_text)),
                body_html: Set(keys.seal_text(&email_aad(&id, "body_html"), email.body_html)),
                data_key_id: Set(Some(keys.current_id().to_owned())),
                created_at: Set(now_ms),
                next_attempt_at: Set(now_ms),
                attempts: Set(0),
                sent_at: Set(None),
                failed_at: Set(None),
                last_error: Set(None),
            });
        }
        email_outbox::Entity::insert_many(rows).exec_without_returning(conn).await?;
    }
    Ok(message_ids)
}

/// `email` with its bodies in clear, for the transport (a row from before
/// encryption is in clear already).
pub fn opened(keys: &DataKeys, email: &email_outbox::Model) -> Result<email_outbox::Model, DataKeyError> {
    let Some(key_id) = &email.data_key_id else {
        return Ok(email.clone());
    };
    Ok(email_outbox::Model {
        body_text: keys.open_text(key_id, &email_aad(&email.id, "body_text"), &email.body_text)?,
        body_html: keys.open_text(key_id, &email_aad(&email.id, "body_html"), &email.body_html)?,
        ..email.clone()
    })
}

// Delivery. Every replica runs a dispatcher; a row is sent by whichever claims
// it first with one conditional UPDATE, and marked with the outcome after.

/// Pending rows (neither sent nor failed) due by `now_ms`, oldest first.
pub async fn due<C: ConnectionTrait>(conn: &C, now_ms: i64, limit: u64) -> StoreResult<Vec<email_outbox::Model>> {
    Ok(email_outbox::Entity::find()
        .filter(email_outbox::Column::SentAt.is_null())
        .filter(email_outbox::Column::FailedAt.is_null())
        .filter(email_outbox::Column::NextAttemptAt.lte(now_ms))
        .order_by_asc(email_outbox::Column::CreatedAt)
        .order_by_asc(email_outbox::Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Takes a due row for one delivery by moving its next attempt to `until_ms`
/// (the lease). The UPDATE only matches while `next_attempt_at` still holds the
/// value this replica read, so of several replicas exactly one gets `true`; if
/// the claimer dies, the row is due again once the lease ends.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    seen_next_attempt_at: i64,
    until_ms: i64,
) -> StoreResult<bool> {
    let changed = sql::execute(
        conn,
        "UPDATE email_outbox SET next_attempt_at = $1 \
         WHERE id = $2 AND next_attempt_at = $3 AND sent_at IS NULL AND failed_at IS NULL",
        [until_ms.into(), id.into(), seen_next_attempt_at.into()],
    )
    .await?;
    Ok(changed == 1)
}

/// The relay (or folder) took the message. Its body goes at once: it carries
/// one-time links; what stays (recipient, kind, times) is the record of delivery.
pub async fn mark_sent<C: ConnectionTrait>(conn: &C, id: &str, now_ms: i64) -> StoreResult<()> {
    sql::execute(
        conn,
        "UPDATE email_outbox SET sent_at = $1, attempts = attempts + 1, body_text = '', body_html = '' \
         WHERE id = $2 AND sent_at IS NULL AND failed_at IS NULL",
        [now_ms.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// A delivery failed but may succeed later: try again at `next_attempt_at`.
pub async fn mark_retry<C: ConnectionTrait>(conn: &C, id: &str, next_attempt_at: i64, error: &str) -> StoreResult<()> {
    sql::execute(
        conn,
        "UPDATE email_outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 \
         WHERE id = $3 AND sent_at IS NULL AND failed_at IS NULL",
        [next_attempt_at.into(), error.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// The message will never be delivered: refused for good, or out of attempts.
/// Nobody will read its body either, so it goes like a delivered one's.
pub async fn mark_failed<C: ConnectionTrait>(conn: &C, id: &str, now_ms: i64, error: &str) -> StoreResult<()> {
    sql::execute(
        conn,
        "UPDATE email_outbox SET attempts = attempts + 1, failed_at = $1, last_error = $2, \
         body_text = '', body_html = '' \
         WHERE id = $3 AND sent_at IS NULL AND failed_at IS NULL",
        [now_ms.into(), error.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// What is waiting to be delivered, for status pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BacklogStats {
    /// Rows neither sent nor failed.
    pub pending: u64,
    /// `created_at` of the oldest of them.
    pub oldest_pending_at: Option<i64>,
    /// The error that holds up the oldest pending row that has one.
    pub last_error: Option<String>,
}

pub async fn backlog_stats<C: ConnectionTrait>(conn: &C) -> StoreResult<BacklogStats> {
    let pending = "FROM email_outbox WHERE sent_at IS NULL AND failed_at IS NULL";
    let Some(row) = sql::query_one(conn, &format!("SELECT COUNT(*), MIN(created_at) {pending}"), []).await? else {
        return Ok(BacklogStats::default());
    };
    let count: i64 = row.try_get_by_index(0)?;
    let oldest_pending_at: Option<i64> = row.try_get_by_index(1)?;
    let last_error = sql::query_one(
        conn,
        &format!("SELECT last_error {pending} AND last_error IS NOT NULL ORDER BY created_at, id LIMIT 1"),
        [],
    )
    .await?
    .map(|row| row.try_get_by_index::<String>(0))
    .transpose()?;
    Ok(BacklogStats { pending: u64::try_from(count).unwrap_or_default(), oldest_pending_at, last_error })
}
