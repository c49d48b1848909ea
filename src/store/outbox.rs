//! The transactional email outbox: a message is a row written in the same
//! transaction as the change it tells about; a dispatcher delivers it.

use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};

use super::{StoreResult, entities::email_outbox, new_id};

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
    email: NewEmail<'_>,
    message_domain: &str,
    now_ms: i64,
) -> StoreResult<String> {
    let id = new_id();
    let message_id = format!("<{id}@{message_domain}>");
    email_outbox::ActiveModel {
        id: Set(id),
        message_id: Set(message_id.clone()),
        kind: Set(email.kind.to_owned()),
        user_id: Set(email.user_id.map(str::to_owned)),
        recipient: Set(email.recipient.to_owned()),
        subject: Set(email.subject.to_owned()),
        body_text: Set(email.body_text.to_owned()),
        body_html: Set(email.body_html.to_owned()),
        created_at: Set(now_ms),
        next_attempt_at: Set(now_ms),
        attempts: Set(0),
        sent_at: Set(None),
        failed_at: Set(None),
        last_error: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(message_id)
}
