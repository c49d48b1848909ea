//! Sessions: an access JWT plus an opaque refresh token rotated on every use.
//! Reusing a rotated refresh token revokes the whole session. Revocation is
//! read from the database through a short per-replica cache.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use quick_cache::sync::{Cache, EntryAction, EntryResult};
use sea_orm::ConnectionTrait;

use super::{
    App,
    caller::{Caller, RequestContext},
};
use crate::{
    crypto::{
        jwt::{AccessClaims, Signed, TokenRejection},
        random,
    },
    domain::{Error, Role, Secret, UserStatus},
    store::{
        StoreError, Writes,
        audit::{self, AuditRecord},
        entities::user,
        new_id, second_factors,
        sessions::{self, Rotation},
        users,
    },
};

/// A session handed to a client.
#[derive(Debug)]
pub struct IssuedSession {
    pub access_token: Secret,
    pub refresh_token: Secret,
    pub access_expires_at_ms: i64,
    pub refresh_expires_at_ms: i64,
    pub session_id: String,
    pub user_id: String,
    pub user_login: String,
}

/// Opens a session for `user`: its rows go among the caller's writes, to be
/// run in the caller's transaction. The tokens are good only once they are run.
pub fn open(app: &App, writes: &mut Writes, user: &user::Model) -> Result<IssuedSession, Error> {
    let now = app.clock.now_ms();
    let session_id = new_id();
    let refresh_expires = now + secs_to_ms(app.config.tokens.refresh_ttl_secs);
    sessions::insert_session(writes, &session_id, &user.id, now, refresh_expires);
    issue_tokens(app, writes, user, &session_id, refresh_expires)
}

fn issue_tokens(
    app: &App,
    writes: &mut Writes,
    user: &user::Model,
    session_id: &str,
    refresh_expires: i64,
) -> Result<IssuedSession, Error> {
    let now = app.clock.now_ms();
    let refresh_token = random::token();
    sessions::insert_refresh_token(
        writes,
        &random::token_hash(refresh_token.expose()),
        session_id,
        now,
        refresh_expires,
    );
    let tokens = &app.config.tokens;
    let access_expires = now + secs_to_ms(tokens.access_ttl_secs);
    let claims = AccessClaims {
        iss: tokens.issuer_or(&app.config.public_url).to_owned(),
        aud: tokens.audience.clone(),
        sub: user.id.clone(),
        exp: access_expires / 1000,
        iat: now / 1000,
        nbf: now / 1000,
        jti: new_id(),
        sid: session_id.to_owned(),
        subscription: user.subscription_id.clone(),
        role: user.role.as_str().to_owned(),
        login: user.user_login.clone(),
    };
    let access_token = Secret::new(app.keys.ring().sign(&claims)?);
    Ok(IssuedSession {
        access_token,
        refresh_token,
        access_expires_at_ms: claims.exp * 1000,
        refresh_expires_at_ms: refresh_expires,
        session_id: session_id.to_owned(),
        user_id: user.id.clone(),
        user_login: user.user_login.clone(),
    })
}

const REFRESH_INVALID: &str = "The refresh token is not valid: log in again";

/// Rotates a refresh token: exactly one of concurrent uses succeeds; a reuse
/// revokes the session.
pub async fn refresh(app: &App, refresh_token: &Secret, ctx: &RequestContext) -> Result<IssuedSession, Error> {
    if refresh_token.is_empty() || refresh_token.expose().len() > 256 {
        return Err(Error::Unauthenticated(REFRESH_INVALID.to_owned()));
    }
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    let grace = secs_to_ms(app.config.tokens.refresh_reuse_grace_secs);
    let rotation =
        sessions::rotate_refresh_token(&txn, &random::token_hash(refresh_token.expose()), now, grace).await?;
    let outcome = match rotation {
        Rotation::Rotated { session_id } | Rotation::RacedRotation { session_id } => {
            let session = sessions::find_session(&txn, &session_id).await?;
            let user = match &session {
                Some(s) if s.revoked_at.is_none() && s.expires_at > now => users::find_by_id(&txn, &s.user_id).await?,
                _ => None,
            };
            match user {
                Some(user) if user.status == UserStatus::Active => {
                    let expires = session.map_or(now, |s| s.expires_at);
                    let mut writes = Writes::default();
                    let issued = issue_tokens(app, &mut writes, &user, &session_id, expires)?;
                    writes.run(&txn).await?;
                    Ok(issued)
                }
                _ => Err(Error::Unauthenticated("The session has ended: log in again".to_owned())),
            }
        }
        Rotation::Reused { session_id } => {
            let revoked = sessions::revoke_session(&txn, &session_id, "REFRESH_TOKEN_REUSE", now).await?;
            if revoked && let Some(session) = sessions::find_session(&txn, &session_id).await? {
                let user = users::find_by_id(&txn, &session.user_id).await?;
                let mut event =
                    AuditRecord::new("session.refresh_reuse", ctx.source_ip.clone()).failed("REFRESH_TOKEN_REUSE");
                if let Some(user) = &user {
                    event = event.subscription(&user.subscription_id).target(Some(&user.id), &user.user_login);
                }
                audit::record(&txn, event.detail(format!("session {session_id} revoked")), now).await?;
            }
            app.revocations.mark_revoked(&session_id);
            Err(Error::Unauthenticated(
                "This refresh token was already used: the session has been revoked, log in again".to_owned(),
            ))
        }
        Rotation::Expired | Rotation::Unknown => Err(Error::Unauthenticated(REFRESH_INVALID.to_owned())),
    };
    // The rotation (or the revocation) holds whatever the outcome.
    txn.commit().await.map_err(StoreError::from)?;
    outcome
}

pub async fn logout(app: &App, caller: &Caller, ctx: &RequestContext) -> Result<(), Error> {
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    sessions::revoke_session(&txn, &caller.session_id, "LOGOUT", now).await?;
    let event = AuditRecord::new("auth.logout", ctx.source_ip.clone())
        .subscription(&caller.subscription_id)
        .actor(&caller.user_id, &caller.user_login)
        .target(Some(&caller.user_id), &caller.user_login);
    audit::record(&txn, event, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    app.revocations.mark_revoked(&caller.session_id);
    Ok(())
}

/// Revokes every session of a user inside the caller's transaction; call
/// [`RevocationCache::mark_all_revoked`] with the result after the commit.
pub async fn revoke_all<C: ConnectionTrait>(
    app: &App,
    conn: &C,
    user_id: &str,
    reason: &str,
) -> Result<Vec<String>, Error> {
    Ok(sessions::revoke_user_sessions(conn, user_id, reason, app.clock.now_ms()).await?)
}

/// [`revoke_all`] for many users at once.
pub async fn revoke_all_of<C: ConnectionTrait>(
    app: &App,
    conn: &C,
    user_ids: &[&str],
    reason: &str,
) -> Result<Vec<String>, Error> {
    Ok(sessions::revoke_sessions_of(conn, user_ids, reason, app.clock.now_ms()).await?)
}

/// A credential of these users changed (password, token, PIN) or their
/// account was locked: every session and every open login challenge made
/// before ends, inside the caller's transaction. The caller locks the users'
/// rows first (`users::lock`), as a login does before it opens a session, so
/// that a login in flight either commits first, and is revoked here, or sees
/// the change. Call [`RevocationCache::mark_all_revoked`] with the result
/// after the commit.
pub async fn end_credential_use<C: ConnectionTrait>(
    app: &App,
    conn: &C,
    user_ids: &[&str],
    reason: &str,
) -> Result<Vec<String>, Error> {
    second_factors::delete_challenges_of(conn, user_ids).await?;
    revoke_all_of(app, conn, user_ids, reason).await
}

/// Why an access token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Invalid(TokenRejection),
    Revoked,
}

/// Verifies an access token: signature, expiry, issuer, audience, then revocation.
/// The claims come shared with the cache of verified tokens: callers copy
/// only the fields they answer with.
pub async fn validate(app: &App, token: &str) -> Result<Arc<Signed>, TokenProblem> {
    let tokens = &app.config.tokens;
    let signed = app
        .keys
        .verify(&app.store, token, tokens.issuer_or(&app.config.public_url), &tokens.audience, app.clock.now_ms())
        .await
        .map_err(TokenProblem::Invalid)?;
    match app.revocations.is_live(app, &signed.claims.sid).await {
        Ok(true) => Ok(signed),
        Ok(false) => Err(TokenProblem::Revoked),
        // Fail closed: a token whose session cannot be checked is not trusted.
        Err(_) => Err(TokenProblem::Revoked),
    }
}

/// The caller named by a valid access token.
pub fn caller_from(claims: &AccessClaims) -> Result<Caller, TokenProblem> {
    let role = Role::parse(&claims.role).ok_or(TokenProblem::Invalid(TokenRejection::Malformed))?;
    Ok(Caller {
        user_id: claims.sub.clone(),
        user_login: claims.login.clone(),
        subscription_id: claims.subscription.clone(),
        role,
        session_id: claims.sid.clone(),
    })
}

/// A replica's memory of which sessions are live. Revocations made here are
/// seen at once; those made by another replica within `revocation_cache_ms`.
/// Bounded in number by quick_cache (S3-FIFO): a session it forgets is read
/// from its row again, and the row is what decides.
pub struct RevocationCache {
    ttl: Duration,
    seen: Cache<String, Seen>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Final: a revoked session never comes back.
    Revoked,
    /// Trusted until `ttl` after this instant.
    LiveAt(Instant),
}

/// The most sessions a replica remembers, bounding its memory (about 100 bytes each).
const REVOCATION_CACHE_MAX: usize = 100_000;

impl RevocationCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, seen: Cache::new(REVOCATION_CACHE_MAX) }
    }

    pub async fn is_live(&self, app: &App, session_id: &str) -> Result<bool, Error> {
        if let Some(live) = self.cached(session_id) {
            return Ok(live);
        }
        let now = app.clock.now_ms();
        let live = sessions::find_session(app.store.connection(), session_id)
            .await?
            .is_some_and(|s| s.revoked_at.is_none() && s.expires_at > now);
        if live {
            self.remember_live(session_id, Instant::now());
        } else {
            self.mark_revoked(session_id);
        }
        Ok(live)
    }

    /// What this replica may answer without reading the session's row.
    fn cached(&self, session_id: &str) -> Option<bool> {
        match self.seen.get(session_id)? {
            Seen::Revoked => Some(false),
            Seen::LiveAt(checked) => (checked.elapsed() < self.ttl).then_some(true),
        }
    }

    /// A revocation noted while the row was being read is newer than the
    /// read, so it stays.
    fn remember_live(&self, session_id: &str, checked: Instant) {
        let entry = self.seen.entry(session_id, Some(Duration::ZERO), |_, seen| {
            if let Seen::LiveAt(at) = seen {
                *at = checked;
            }
            EntryAction::Retain(())
        });
        if let EntryResult::Vacant(slot) = entry {
            let _ = slot.insert(Seen::LiveAt(checked));
        }
    }

    pub fn mark_revoked(&self, session_id: &str) {
        self.seen.insert(session_id.to_owned(), Seen::Revoked);
    }

    pub fn mark_all_revoked(&self, session_ids: &[String]) {
        for id in session_ids {
            self.mark_revoked(id);
        }
    }
}

pub fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_is_trusted_for_the_ttl_and_a_revocation_for_good() {
        let cache = RevocationCache::new(Duration::from_secs(60));
        assert_eq!(cache.cached("s1"), None, "an unknown session is read from its row");
        cache.remember_live("s1", Instant::now());
        assert_eq!(cache.cached("s1"), Some(true));
        cache.mark_revoked("s1");
        assert_eq!(cache.cached("s1"), Some(false));
        cache.remember_live("s1", Instant::now());
        assert_eq!(cache.cached("s1"), Some(false), "a read that raced the revocation does not undo it");
    }

    #[test]
    fn liveness_past_the_ttl_is_read_again() {
        let cache = RevocationCache::new(Duration::from_millis(1_000));
        let long_ago = Instant::now().checked_sub(Duration::from_millis(1_001)).expect("the clock is past 1 s");
        cache.remember_live("s1", long_ago);
        assert_eq!(cache.cached("s1"), None);
        cache.remember_live("s1", Instant::now());
        assert_eq!(cache.cached("s1"), Some(true), "a fresh read renews the entry");
        cache.mark_all_revoked(&["s1".to_owned(), "s2".to_owned()]);
        assert_eq!((cache.cached("s1"), cache.cached("s2")), (Some(false), Some(false)));
    }

    #[test]
    fn memory_is_bounded() {
        let cache = RevocationCache::new(Duration::from_secs(60));
        for i in 0..REVOCATION_CACHE_MAX + 1_000 {
            cache.mark_revoked(&format!("session-{i}"));
        }
        assert!(cache.seen.len() <= REVOCATION_CACHE_MAX, "{} entries", cache.seen.len());
    }
}
