//! Emails to users, queued in the outbox inside the caller's transaction.

use sea_orm::ConnectionTrait;

use super::App;
use crate::{
    domain::Error,
    mail::templates::Rendered,
    store::{
        entities::user,
        outbox::{self, NewEmail},
    },
};

/// Queues `mail` to `user`; it is sent only if the caller's transaction commits.
pub async fn email<C: ConnectionTrait>(app: &App, conn: &C, user: &user::Model, mail: &Rendered) -> Result<(), Error> {
    outbox::enqueue(
        conn,
        NewEmail {
            kind: mail.kind,
            user_id: Some(&user.id),
            recipient: &user.email,
            subject: &mail.subject,
            body_text: &mail.text,
            body_html: &mail.html,
        },
        &app.message_domain(),
        app.clock.now_ms(),
    )
    .await?;
    Ok(())
}
