//! Issuing one-time links (DESIGN §2.5).

use sea_orm::ConnectionTrait;

use super::App;
use crate::{
    crypto::random,
    domain::{Error, Secret, link::LinkPurpose},
    store::links::{self as link_rows, NewLink},
};

/// Issues a link for `user_id`, superseding the user's earlier link of the
/// same purpose, and returns its URL. Only the token's hash is stored.
pub async fn issue<C: ConnectionTrait>(
    app: &App,
    conn: &C,
    user_id: &str,
    purpose: LinkPurpose,
) -> Result<Secret, Error> {
    issue_sealing(app, conn, user_id, purpose, None).await
}

/// Issues a link that carries `secret`, sealed so that only the link opens it.
pub async fn issue_sealing<C: ConnectionTrait>(
    app: &App,
    conn: &C,
    user_id: &str,
    purpose: LinkPurpose,
    secret: Option<&Secret>,
) -> Result<Secret, Error> {
    let mut urls = issue_sealing_many(app, conn, &[(user_id, secret)], purpose).await?;
    urls.pop().ok_or_else(|| Error::internal("no link was issued"))
}

/// [`issue_sealing`] for many users at once; the URLs in the order of `links`.
pub async fn issue_sealing_many<C: ConnectionTrait>(
    app: &App,
    conn: &C,
    links: &[(&str, Option<&Secret>)],
    purpose: LinkPurpose,
) -> Result<Vec<Secret>, Error> {
    let now = app.clock.now_ms();
    let ttl_ms = i64::try_from(app.config.activation.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let tokens: Vec<Secret> = links.iter().map(|_| random::token()).collect();
    let token_hashes: Vec<String> = tokens.iter().map(|token| random::token_hash(token.expose())).collect();
    let rows = links
        .iter()
        .zip(tokens.iter().zip(&token_hashes))
        .map(|(&(user_id, secret), (token, token_hash))| NewLink {
            user_id,
            purpose,
            token_hash,
            expires_at_ms: now.saturating_add(ttl_ms),
            sealed_secret: secret.map(|secret| crate::crypto::seal::seal(token, secret)),
        })
        .collect();
    link_rows::issue_many(conn, rows, now).await?;
    Ok(tokens.iter().map(|token| link_url(&app.config.public_url, token)).collect())
}

/// `<public_url>/activate/<token>`.
pub fn link_url(public_url: &str, token: &Secret) -> Secret {
    Secret::new(format!("{}/activate/{}", public_url.trim_end_matches('/'), token.expose()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_hang_off_the_public_url() {
        let token = Secret::new("abc");
        assert_eq!(link_url("https://id.example.com/", &token).expose(), "https://id.example.com/activate/abc");
        assert_eq!(link_url("http://127.0.0.1:8080", &token).expose(), "http://127.0.0.1:8080/activate/abc");
    }
}
