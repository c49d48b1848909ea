//! Self-service "forgot password" (DESIGN §2.4). The answer is the same
//! whatever the outcome, and it leaves before the outcome is worked out, so
//! neither its words nor its timing tell whether an account exists.

use std::sync::Arc;

use super::{App, caller::RequestContext, links, notify};
use crate::{
    crypto::{
        captcha::{CaptchaError, Challenge, difficulty_under_pressure, recent_rate},
        random::token_hash,
    },
    domain::{Error, Role, UserStatus, link::LinkPurpose},
    mail::templates,
    store::{
        StoreError,
        audit::{self, AuditRecord},
        nonces, rate, tenancy, users,
    },
};

/// The one answer to every well-formed request.
pub const ANSWER: &str = "If the username and email address match an active account, an email with a link to reset \
                          the password is on its way. Check your inbox.";

const HOUR_MS: i64 = 3600 * 1000;

pub struct ForgotInput {
    pub user_login: String,
    pub email: String,
    pub captcha_challenge: String,
    pub captcha_nonce: String,
}

/// A solved challenge of [`captcha_challenge`], as a form or an RPC sent it.
pub struct CaptchaSolution {
    pub challenge: String,
    pub nonce: String,
}

/// Checks a solution and spends it, so that it buys one attempt only.
pub async fn spend_captcha(app: &App, solution: &CaptchaSolution) -> Result<(), Error> {
    if solution.challenge.is_empty() {
        return Err(Error::invalid("captcha", "is required: solve a challenge from GetCaptchaChallenge"));
    }
    let now = app.clock.now_ms();
    let solved = app
        .captcha_verifier
        .verify(&solution.challenge, &solution.nonce, now)
        .await
        .map_err(|error| Error::invalid("captcha", captcha_message(error)))?;
    if !nonces::spend(app.store.connection(), &solved.spent_key, solved.expires_at_ms).await? {
        return Err(Error::invalid("captcha", "was already used: ask for a new challenge"));
    }
    Ok(())
}

pub async fn request_password_reset(
    app: &Arc<App>,
    input: ForgotInput,
    ctx: &RequestContext,
) -> Result<&'static str, Error> {
    if input.user_login.is_empty() || input.user_login.len() > 256 {
        return Err(Error::invalid("user_login", "must be 1 to 256 characters"));
    }
    if input.email.is_empty() || input.email.len() > 254 {
        return Err(Error::invalid("email", "must be 1 to 254 characters"));
    }
    let solution = CaptchaSolution { challenge: input.captcha_challenge, nonce: input.captcha_nonce };
    spend_captcha(app, &solution).await?;
    let now = app.clock.now_ms();
    // Counted once solved: the rate that makes later challenges harder is paid for in work.
    rate::hit(app.store.connection(), &pressure_key(now.div_euclid(PRESSURE_WINDOW_MS)), PRESSURE_WINDOW_MS, now)
        .await?;
    throttle(app, &input.user_login, ctx, now).await?;
    // Work out and send the outcome after answering: same words, same time, whatever it is.
    let (app, ctx) = (Arc::clone(app), ctx.clone());
    tokio::spawn(async move {
        if let Err(error) = act(&app, &input.user_login, &input.email, &ctx).await {
            tracing::error!(%error, "self-service reset failed");
        }
    });
    Ok(ANSWER)
}

/// The window of the forgot-password rate that sets the captcha difficulty.
const PRESSURE_WINDOW_MS: i64 = 60 * 1000;

/// One counter per minute, in the database, so that every replica asks for
/// the same work; the rate is read over the current and the previous minute.
fn pressure_key(minute: i64) -> String {
    format!("captcha:pressure:{minute}")
}

/// A challenge for GetCaptchaChallenge: the base difficulty while
/// forgot-password is quiet, more bits while it is hammered (see
/// `captcha::difficulty_under_pressure`). The rate is read at most once a
/// second per replica, however many challenges are asked for.
pub async fn captcha_challenge(app: &App) -> Challenge {
    let now = app.clock.now_ms();
    let bits = match app.captcha.remembered_difficulty(now) {
        Some(bits) => bits,
        None => match current_difficulty(app, now).await {
            Ok(bits) => {
                app.captcha.remember_difficulty(now, bits);
                bits
            }
            Err(error) => {
                // Forgot-password needs the database anyway; the challenge need not.
                tracing::warn!(%error, "cannot read the forgot-password rate: the last difficulty stands");
                app.captcha.last_difficulty()
            }
        },
    };
    app.captcha.issue_with(bits, now)
}

async fn current_difficulty(app: &App, now: i64) -> Result<u32, Error> {
    let minute = now.div_euclid(PRESSURE_WINDOW_MS);
    let keys = [pressure_key(minute), pressure_key(minute - 1)];
    let keys = [keys[0].as_str(), keys[1].as_str()];
    // Two windows back covers the previous minute's counter whenever it started.
    let counts = rate::counts(app.store.connection(), &keys, 2 * PRESSURE_WINDOW_MS, now).await?;
    let count = |i: usize| u64::try_from(counts.get(i).copied().unwrap_or(0)).unwrap_or(0);
    let recent = recent_rate(count(1), count(0), now.rem_euclid(PRESSURE_WINDOW_MS), PRESSURE_WINDOW_MS);
    let c = &app.config.captcha;
    Ok(difficulty_under_pressure(c.difficulty_bits, c.max_difficulty_bits, c.busy_requests_per_minute, recent))
}

fn captcha_message(error: CaptchaError) -> &'static str {
    match error {
        CaptchaError::Expired => "expired: ask for a new challenge",
        CaptchaError::Unsolved => "is not solved: the nonce does not meet the difficulty",
        CaptchaError::Malformed | CaptchaError::BadSignature => "is not a challenge this service issued",
    }
}

async fn throttle(app: &App, login: &str, ctx: &RequestContext, now: i64) -> Result<(), Error> {
    let policy = &app.config.reset;
    let mut keys = vec![(format!("forgot:user:{}", &token_hash(login)[..32]), policy.forgot_per_login_per_hour)];
    if let Some(ip) = &ctx.source_ip {
        keys.push((format!("forgot:ip:{ip}"), policy.forgot_per_ip_per_hour));
    }
    for (key, limit) in keys {
        let (count, window_start) = rate::hit(app.store.connection(), &key, HOUR_MS, now).await?;
        if i64::from(count) > i64::from(limit) {
            let seconds = u64::try_from((window_start + HOUR_MS - now + 999) / 1000).unwrap_or(1).max(1);
            return Err(Error::Throttled { retry_after: std::time::Duration::from_secs(seconds) });
        }
    }
    Ok(())
}

async fn act(app: &App, login: &str, email: &str, ctx: &RequestContext) -> Result<(), Error> {
    let now = app.clock.now_ms();
    let user = users::find_by_login(app.store.connection(), login)
        .await?
        .filter(|user| user.email.trim().eq_ignore_ascii_case(email.trim()) && user.role != Role::Contact);
    let txn = app.store.begin_write().await?;
    let mut event = AuditRecord::new("password.forgot", ctx.source_ip.clone());
    match &user {
        Some(user) if user.status == UserStatus::Active => {
            let link = links::issue(app, &txn, &user.id, LinkPurpose::ForgotPassword).await?;
            let chooses = tenancy::find_subscription(&txn, &user.subscription_id)
                .await?
                .is_none_or(|subscription| subscription.users_define_own_password);
            let hours = app.config.activation.ttl_secs / 3600;
            let mail = templates::forgot_password(&user.user_login, link.expose(), hours, chooses);
            notify::email(app, &txn, user, &mail).await?;
            event = event.subscription(&user.subscription_id).target(Some(&user.id), &user.user_login);
        }
        Some(user) if user.status == UserStatus::Inactive => {
            notify::email(app, &txn, user, &templates::account_inactive(&user.user_login)).await?;
            event = event
                .subscription(&user.subscription_id)
                .target(Some(&user.id), &user.user_login)
                .failed("ACCOUNT_INACTIVE");
        }
        Some(user) => {
            event =
                event.subscription(&user.subscription_id).target(Some(&user.id), &user.user_login).failed("NOT_ACTIVE");
        }
        None => {
            let typed: String = login.chars().take(crate::domain::login::LOGIN_MAX).collect();
            event = event.target(None, &typed).failed("NO_MATCH");
        }
    }
    audit::record(&txn, event, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(())
}
