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
    email_each(app, conn, &[(user, mail)]).await
}

/// [`email`] for many users at once.
pub async fn email_each<C: ConnectionTrait>(
    app: &App,
    conn: &C,
    mails: &[(&user::Model, &Rendered)],
) -> Result<(), Error> {
    let emails = mails
        .iter()
        .map(|&(user, mail)| NewEmail {
            kind: mail.kind,
            user_id: Some(&user.id),
            recipient: &user.email,
            subject: &mail.subject,
            body_text: &mail.text,
            body_html: &mail.html,
        })
        .collect();
    outbox::enqueue_many(conn, &app.data_keys, emails, &app.message_domain(), app.clock.now_ms()).await?;
    Ok(())
}
