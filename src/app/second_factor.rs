//! The SecurID-style second factor (DESIGN §2.7): a password opens a
//! challenge; the passcode is the tokencode alone in new-PIN mode, otherwise
//! PIN + tokencode; each tokencode is accepted once; failures count towards
//! lockout like wrong passwords.

use super::{
    App, access,
    caller::{Caller, RequestContext},
    login::{self, Standing},
    sessions,
    sessions::IssuedSession,
};
use crate::{
    crypto::{password::Verification, random, totp},
    domain::{
        Error, Secret, UserRef, UserStatus,
        passcode::{self, check_new_pin},
        permissions::Action,
    },
    store::{
        StoreError, Writes,
        audit::{self, AuditRecord},
        entities::{login_challenge, user},
        second_factors, users,
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Passcode,
    NewPin,
}

impl ChallengeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Passcode => "PASSCODE",
            ChallengeKind::NewPin => "NEW_PIN",
        }
    }
}

#[derive(Debug)]
pub struct ChallengeView {
    pub challenge_id: Secret,
    pub kind: ChallengeKind,
    pub expires_at_ms: i64,
    pub prompt: &'static str,
    /// A passcode challenge of a user without a PIN: the tokencode alone.
    pub tokencode_only: bool,
}

pub enum PasscodeOutcome {
    Session(IssuedSession),
    /// First login, or after a PIN reset: choose a PIN.
    NewPin(ChallengeView),
}

const CHALLENGE_EXPIRED: &str = "The login attempt expired or was already completed: log in again";

/// After a correct password, inside the login's transaction (the user's row
/// locked): a passcode challenge when the user holds a token.
pub async fn challenge_if_enrolled<C: sea_orm::ConnectionTrait>(
    app: &App,
    conn: &C,
    user: &user::Model,
    event: &AuditRecord,
) -> Result<Option<ChallengeView>, Error> {
    let Some(factor) = second_factors::find(conn, &user.id).await? else {
        return Ok(None);
    };
    let challenge = open_challenge(app, conn, &user.id, ChallengeKind::Passcode, factor.new_pin_required).await?;
    audit::record(conn, event.clone(), app.clock.now_ms()).await?;
    Ok(Some(challenge))
}

async fn open_challenge<C: sea_orm::ConnectionTrait>(
    app: &App,
    conn: &C,
    user_id: &str,
    kind: ChallengeKind,
    new_pin_mode: bool,
) -> Result<ChallengeView, Error> {
    let id = random::token();
    let now = app.clock.now_ms();
    let expires = now + sessions::secs_to_ms(app.config.second_factor.challenge_ttl_secs);
    second_factors::insert_challenge(conn, &random::token_hash(id.expose()), user_id, kind.as_str(), now, expires)
        .await?;
    let prompt = match (kind, new_pin_mode) {
        (ChallengeKind::NewPin, _) => "Choose a new PIN of 4 to 8 digits",
        (ChallengeKind::Passcode, true) => "Enter the tokencode only: you will then choose a PIN",
        (ChallengeKind::Passcode, false) => "Enter your PIN followed by the tokencode, as one entry",
    };
    let tokencode_only = kind == ChallengeKind::Passcode && new_pin_mode;
    Ok(ChallengeView { challenge_id: id, kind, expires_at_ms: expires, prompt, tokencode_only })
}

/// A live challenge of `kind` and its ACTIVE user.
async fn live_challenge(
    app: &App,
    challenge_id: &Secret,
    kind: ChallengeKind,
) -> Result<(login_challenge::Model, user::Model), Error> {
    let expired = || Error::Unauthenticated(CHALLENGE_EXPIRED.to_owned());
    if challenge_id.is_empty() || challenge_id.expose().len() > 128 {
        return Err(expired());
    }
    let conn = app.store.connection();
    let challenge = second_factors::find_challenge(conn, &random::token_hash(challenge_id.expose()))
        .await?
        .filter(|c| c.consumed_at.is_none() && c.expires_at > app.clock.now_ms())
        .ok_or_else(expired)?;
    if challenge.kind != kind.as_str() {
        return Err(Error::FailedPrecondition {
            reason: crate::domain::ErrorReason::WrongChallenge,
            message: match kind {
                ChallengeKind::Passcode => "this challenge asks for a new PIN: use SetNewPin".to_owned(),
                ChallengeKind::NewPin => "this challenge asks for a passcode: use SubmitPasscode".to_owned(),
            },
        });
    }
    let user = users::find_by_id(conn, &challenge.user_id).await?.ok_or_else(expired)?;
    match login::standing(&user) {
        Standing::Active => Ok((challenge, user)),
        // The lock deleted the user's challenges; one read just before that
        // ends the same way, whatever passcode came with it.
        Standing::Locked => Err(expired()),
        Standing::Unavailable(problem) => Err(Error::AccountUnavailable(problem)),
    }
}

/// Inside a passcode step's transaction, with the user's row locked: records
/// the successful login and returns the account as it is now, or the error
/// when it stopped being ACTIVE since the challenge was read (`when_locked`:
/// what a locked account answers there).
async fn succeed_if_active<C: sea_orm::ConnectionTrait>(
    conn: &C,
    user_id: &str,
    now: i64,
    when_locked: Error,
) -> Result<user::Model, Error> {
    if let Some(user) = users::record_successful_login(conn, user_id, now).await? {
        return Ok(user);
    }
    let user = users::find_by_id(conn, user_id).await?;
    Err(match user.as_ref().map(login::standing) {
        Some(Standing::Unavailable(problem)) => Error::AccountUnavailable(problem),
        Some(Standing::Locked) => when_locked,
        _ => Error::Unauthenticated(CHALLENGE_EXPIRED.to_owned()),
    })
}

pub async fn submit_passcode(
    app: &App,
    challenge_id: &Secret,
    passcode_text: &Secret,
    ctx: &RequestContext,
) -> Result<PasscodeOutcome, Error> {
    let (challenge, user) = live_challenge(app, challenge_id, ChallengeKind::Passcode).await?;
    let factor = second_factors::find(app.store.connection(), &user.id)
        .await?
        .ok_or_else(|| Error::Unauthenticated(CHALLENGE_EXPIRED.to_owned()))?;
    let now = app.clock.now_ms();
    let parsed = passcode::parse(passcode_text.expose(), factor.new_pin_required);
    let step = match &parsed {
        Ok(p) => {
            let secret = second_factors::totp_secret(&app.data_keys, &factor).map_err(Error::internal)?;
            totp::matching_step(&secret, p.tokencode, now / 1000)?
        }
        Err(_) => None,
    };
    // Check the PIN whatever the tokencode said: no hint which part was wrong.
    let pin_ok = match (&parsed, factor.new_pin_required) {
        (_, true) => true,
        (Ok(p), false) => {
            let pin = Secret::new(p.pin.unwrap_or_default());
            matches!(app.hasher.verify(pin, factor.pin_hash.clone()).await?, Verification::Match { .. })
        }
        (Err(_), false) => {
            app.hasher.verify(Secret::new(""), None).await?;
            false
        }
    };
    let accepted = match step {
        Some(step) if pin_ok => second_factors::claim_step(app.store.connection(), &user.id, step, now).await?,
        _ => false,
    };
    if !accepted {
        login::fail(app, Some(&user), &user.user_login, ctx, "INVALID_PASSCODE").await?;
        return Err(Error::InvalidPasscode);
    }
    let txn = app.store.begin_write().await?;
    // As a login does: a password change either committed before, and deleted
    // the challenge, or waits for this commit and revokes the session.
    users::lock(&txn, &[&user.id]).await?;
    if !second_factors::consume_challenge(&txn, &challenge.id_hash, now).await? {
        return Err(Error::Unauthenticated(CHALLENGE_EXPIRED.to_owned()));
    }
    let outcome = if factor.new_pin_required {
        PasscodeOutcome::NewPin(open_challenge(app, &txn, &user.id, ChallengeKind::NewPin, true).await?)
    } else {
        // Locked since the challenge was read (by failures elsewhere): the
        // answer a wrong passcode got in the same moment.
        let user = succeed_if_active(&txn, &user.id, now, Error::InvalidPasscode).await?;
        let mut writes = Writes::default();
        let session = sessions::open(app, &mut writes, &user)?;
        audit::record_with(
            &mut writes,
            login::login_event(&user, &user.user_login, ctx).detail("passcode accepted"),
            now,
        );
        writes.run(&txn).await?;
        PasscodeOutcome::Session(session)
    };
    txn.commit().await.map_err(StoreError::from)?;
    Ok(outcome)
}

pub async fn set_new_pin(
    app: &App,
    challenge_id: &Secret,
    pin: &Secret,
    ctx: &RequestContext,
) -> Result<IssuedSession, Error> {
    let (challenge, user) = live_challenge(app, challenge_id, ChallengeKind::NewPin).await?;
    check_new_pin(pin.expose())?;
    let pin_hash = app.hasher.hash(pin.clone()).await?;
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    users::lock(&txn, &[&user.id]).await?;
    if !second_factors::consume_challenge(&txn, &challenge.id_hash, now).await? {
        return Err(Error::Unauthenticated(CHALLENGE_EXPIRED.to_owned()));
    }
    let user = succeed_if_active(&txn, &user.id, now, Error::Unauthenticated(CHALLENGE_EXPIRED.to_owned())).await?;
    second_factors::set_pin(&txn, &user.id, &pin_hash, now).await?;
    let mut writes = Writes::default();
    let session = sessions::open(app, &mut writes, &user)?;
    let event = AuditRecord::new("pin.set", ctx.source_ip.clone())
        .subscription(&user.subscription_id)
        .actor(&user.id, &user.user_login)
        .target(Some(&user.id), &user.user_login);
    audit::record_with(&mut writes, event, now);
    audit::record_with(&mut writes, login::login_event(&user, &user.user_login, ctx).detail("new PIN set"), now);
    writes.run(&txn).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(session)
}

#[derive(Debug)]
pub struct AssignedToken {
    pub otpauth_uri: Secret,
    pub qr_svg: String,
    pub qr_png: Vec<u8>,
}

/// Assigns a software token, replacing a lost or expired one: the old secret
/// stops working and the user chooses a new PIN at the next login.
pub async fn assign_token(
    app: &App,
    caller: &Caller,
    target: &UserRef,
    ctx: &RequestContext,
) -> Result<AssignedToken, Error> {
    let actor = access::active_user(app, caller).await?;
    let target = access::find_target(app, &actor, target).await?;
    access::authorize(&actor, Action::AssignToken, &target)?;
    let secret = totp::new_secret();
    let uri = totp::provisioning_uri(&secret, &app.config.second_factor.issuer, &target.user_login)?;
    let (qr_svg, qr_png) = totp::qr_codes(&uri)?;
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    users::lock(&txn, &[&target.id]).await?;
    let replacing = second_factors::find(&txn, &target.id).await?.is_some();
    second_factors::assign(&txn, &app.data_keys, &target.id, &secret, now).await?;
    // Sessions made without this token (after a compromise, say) must not
    // outlive its assignment by refreshing for weeks.
    let revoked = sessions::end_credential_use(app, &txn, &[&target.id], "TOKEN_ASSIGNED").await?;
    let event = AuditRecord::new("token.assign", ctx.source_ip.clone())
        .subscription(&target.subscription_id)
        .actor(&actor.id, &actor.user_login)
        .target(Some(&target.id), &target.user_login)
        .detail(if replacing { "replaced the previous token" } else { "first token" });
    audit::record(&txn, event, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    app.revocations.mark_all_revoked(&revoked);
    Ok(AssignedToken { otpauth_uri: Secret::new(uri), qr_svg, qr_png })
}

/// An admin puts a user's token back into new-PIN mode.
pub async fn reset_pin(app: &App, caller: &Caller, target: &UserRef, ctx: &RequestContext) -> Result<(), Error> {
    let actor = access::active_user(app, caller).await?;
    let target = access::find_target(app, &actor, target).await?;
    access::authorize(&actor, Action::ResetPin, &target)?;
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    users::lock(&txn, &[&target.id]).await?;
    if !second_factors::reset_pin(&txn, &target.id, now).await? {
        return Err(Error::FailedPrecondition {
            reason: crate::domain::ErrorReason::NoToken,
            message: format!("`{}` has no token: assign one first", target.user_login),
        });
    }
    let revoked = sessions::end_credential_use(app, &txn, &[&target.id], "PIN_RESET").await?;
    if target.status == UserStatus::Active || target.status == UserStatus::PendingActivation {
        let mail = crate::mail::templates::pin_reset(&target.user_login);
        super::notify::email(app, &txn, &target, &mail).await?;
    }
    let event = AuditRecord::new("pin.reset", ctx.source_ip.clone())
        .subscription(&target.subscription_id)
        .actor(&actor.id, &actor.user_login)
        .target(Some(&target.id), &target.user_login);
    audit::record(&txn, event, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    app.revocations.mark_all_revoked(&revoked);
    Ok(())
}
