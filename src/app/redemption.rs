//! One-time links (DESIGN §2.5): inspecting never consumes; redeeming consumes
//! atomically and then activates, shows the sealed password, or sets the
//! chosen one.

use super::{
    App,
    caller::RequestContext,
    forgot::{CaptchaSolution, spend_captcha},
    second_factor::AssignedToken,
    sessions,
};
use crate::{
    crypto::{random, seal, totp},
    domain::{Error, Role, Secret, StatusReason, UserStatus, link::LinkPurpose},
    store::{
        StoreError,
        audit::{self, AuditRecord},
        entities::{link, user},
        links as link_rows, tenancy, users,
    },
};

/// The message of the support pages for every unusable link.
pub const KEY_NOT_VALID: &str = "The activation key is not valid";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkProblem {
    Unknown,
    Used,
    Expired,
    Superseded,
    AccountUnavailable,
}

impl LinkProblem {
    fn error(self) -> Error {
        let reason = match self {
            LinkProblem::Unknown => crate::domain::ErrorReason::ActivationKeyUnknown,
            LinkProblem::Used => crate::domain::ErrorReason::ActivationKeyUsed,
            LinkProblem::Expired => crate::domain::ErrorReason::ActivationKeyExpired,
            LinkProblem::Superseded => crate::domain::ErrorReason::ActivationKeySuperseded,
            LinkProblem::AccountUnavailable => crate::domain::ErrorReason::ActivationAccountUnavailable,
        };
        Error::FailedPrecondition { reason, message: KEY_NOT_VALID.to_owned() }
    }
}

#[derive(Debug)]
pub struct LinkInfo {
    pub purpose: LinkPurpose,
    pub user_id: String,
    pub user_login: String,
    pub expires_at_ms: i64,
    pub requires_new_password: bool,
    pub password_rules: Vec<String>,
}

struct Live {
    link: link::Model,
    purpose: LinkPurpose,
    user: user::Model,
    requires_new_password: bool,
}

async fn live_link(app: &App, token: &Secret) -> Result<Result<Live, LinkProblem>, Error> {
    if token.is_empty() || token.expose().len() > 128 {
        return Ok(Err(LinkProblem::Unknown));
    }
    let conn = app.store.connection();
    let Some(link) = link_rows::find_by_hash(conn, &random::token_hash(token.expose())).await? else {
        return Ok(Err(LinkProblem::Unknown));
    };
    if link.used_at.is_some() {
        return Ok(Err(LinkProblem::Used));
    }
    if link.superseded_at.is_some() {
        return Ok(Err(LinkProblem::Superseded));
    }
    if link.expires_at <= app.clock.now_ms() {
        return Ok(Err(LinkProblem::Expired));
    }
    let purpose = link.purpose;
    let Some(user) = users::find_by_id(conn, &link.user_id).await? else {
        return Ok(Err(LinkProblem::AccountUnavailable));
    };
    let status = user.status;
    let usable = user.role != Role::Contact
        && match purpose {
            // A welcome link activates: once the account is active it has served its purpose.
            LinkPurpose::Welcome => status == UserStatus::PendingActivation,
            LinkPurpose::AdminReset => matches!(status, UserStatus::PendingActivation | UserStatus::Active),
            LinkPurpose::ForgotPassword => status == UserStatus::Active,
            // The token is the user's whatever their status; it opens nothing alone.
            LinkPurpose::TokenEnrollment => status != UserStatus::Deleted,
        };
    if !usable {
        // The user was read after the link: a redemption landing in between
        // activates the account, and then the link's own state is the reason.
        if let Some(current) = link_rows::find_by_hash(conn, &link.token_hash).await? {
            if current.used_at.is_some() {
                return Ok(Err(LinkProblem::Used));
            }
            if current.superseded_at.is_some() {
                return Ok(Err(LinkProblem::Superseded));
            }
        }
        return Ok(Err(LinkProblem::AccountUnavailable));
    }
    // Forgot links follow the subscription like welcome links (DESIGN §2.4):
    // where the service generates passwords, a user must not choose one here.
    let requires_new_password = match purpose {
        LinkPurpose::AdminReset | LinkPurpose::TokenEnrollment => false,
        LinkPurpose::ForgotPassword | LinkPurpose::Welcome => {
            tenancy::find_subscription(conn, &user.subscription_id).await?.is_some_and(|s| s.users_define_own_password)
        }
    };
    Ok(Ok(Live { link, purpose, user, requires_new_password }))
}

/// What a link is for. Never consumes it: mail scanners and double clicks are harmless.
pub async fn inspect(app: &App, token: &Secret) -> Result<Result<LinkInfo, LinkProblem>, Error> {
    Ok(live_link(app, token).await?.map(|live| LinkInfo {
        purpose: live.purpose,
        user_id: live.user.id,
        user_login: live.user.user_login,
        expires_at_ms: live.link.expires_at,
        requires_new_password: live.requires_new_password,
        password_rules: if live.requires_new_password { app.config.password_policy.rules() } else { Vec::new() },
    }))
}

#[derive(Debug)]
pub struct Redeemed {
    pub user_id: String,
    pub user_login: String,
    /// The password the service generated, shown once.
    pub generated_password: Option<Secret>,
    /// A token-enrolment link's new token, shown once.
    pub token: Option<AssignedToken>,
}

pub async fn redeem(
    app: &App,
    token: &Secret,
    new_password: Secret,
    captcha: Option<CaptchaSolution>,
    ctx: &RequestContext,
) -> Result<Redeemed, Error> {
    let live = live_link(app, token).await?.map_err(LinkProblem::error)?;
    if let Some(solution) = &captcha {
        spend_captcha(app, solution).await?;
    }
    let user = &live.user;
    // Refused before consuming: a form that posts a password to a link that
    // generates one must not burn the link and lose the password it holds.
    if !live.requires_new_password && !new_password.is_empty() {
        return Err(Error::invalid(
            "new_password",
            "must be empty: this link does not take a password, the service generates one and shows it once",
        ));
    }
    if live.purpose == LinkPurpose::TokenEnrollment {
        return enrol(app, token, &live, ctx).await;
    }
    // Check the chosen password before consuming, so a weak one does not burn the link.
    let (password_to_store, generated) = match (live.purpose, live.requires_new_password) {
        (LinkPurpose::AdminReset, _) => {
            let sealed =
                live.link.sealed_secret.as_deref().ok_or_else(|| Error::internal("reset link without a password"))?;
            let password = seal::open(token, sealed).ok_or_else(|| Error::internal("reset link does not open"))?;
            (None, Some(password))
        }
        (_, true) => {
            if new_password.is_empty() {
                return Err(Error::invalid("new_password", "is required: choose a password"));
            }
            app.config.password_policy.check(
                &new_password,
                &user.user_login,
                &[&user.email, &user.first_name, &user.last_name],
            )?;
            (Some(new_password), None)
        }
        (_, false) => {
            let generated = random::password(&app.config.password_policy, &user.user_login);
            (Some(generated.clone()), Some(generated))
        }
    };
    let hash = match &password_to_store {
        Some(password) => Some(app.hasher.hash(password.clone()).await?),
        None => None,
    };

    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    // First, as a login takes it before opening a session: see `sessions::end_credential_use`.
    users::lock(&txn, &[&user.id]).await?;
    if !link_rows::consume(&txn, &live.link.token_hash, now).await? {
        // Someone redeemed it first (or it just expired): exactly one redemption wins.
        return Err(LinkProblem::Used.error());
    }
    // The user holds the credentials now: every other link of theirs is void.
    link_rows::supersede_all(&txn, &user.id, now).await?;
    if let Some(hash) = &hash {
        users::set_password_hash(&txn, &user.id, hash, now).await?;
    }
    if user.status == UserStatus::PendingActivation {
        users::change_status(
            &txn,
            &user.id,
            UserStatus::PendingActivation,
            UserStatus::Active,
            StatusReason::SelfService,
            now,
        )
        .await?;
    }
    // A new password ends every session and open login challenge made with the old one.
    let revoked = if hash.is_some() {
        sessions::end_credential_use(app, &txn, &[&user.id], "PASSWORD_SET").await?
    } else {
        Vec::new()
    };
    let event = AuditRecord::new("activation.redeem", ctx.source_ip.clone())
        .subscription(&user.subscription_id)
        .target(Some(&user.id), &user.user_login)
        .detail(live.purpose.as_str());
    audit::record(&txn, event, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    app.revocations.mark_all_revoked(&revoked);
    Ok(Redeemed {
        user_id: user.id.clone(),
        user_login: user.user_login.clone(),
        generated_password: generated,
        token: None,
    })
}

/// A token-enrolment link shows the new token once: it consumes only itself
/// (the user's other links, sessions and password stay as they are).
async fn enrol(app: &App, token: &Secret, live: &Live, ctx: &RequestContext) -> Result<Redeemed, Error> {
    let sealed = live.link.sealed_secret.as_deref().ok_or_else(|| Error::internal("enrolment link without a token"))?;
    let uri = seal::open(token, sealed).ok_or_else(|| Error::internal("enrolment link does not open"))?;
    let (qr_svg, qr_png) = totp::qr_codes(uri.expose())?;
    let user = &live.user;
    let now = app.clock.now_ms();
    let txn = app.store.begin_write().await?;
    if !link_rows::consume(&txn, &live.link.token_hash, now).await? {
        return Err(LinkProblem::Used.error());
    }
    let event = AuditRecord::new("activation.redeem", ctx.source_ip.clone())
        .subscription(&user.subscription_id)
        .target(Some(&user.id), &user.user_login)
        .detail(live.purpose.as_str());
    audit::record(&txn, event, now).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(Redeemed {
        user_id: user.id.clone(),
        user_login: user.user_login.clone(),
        generated_password: None,
        token: Some(AssignedToken { otpauth_uri: uri, qr_svg, qr_png }),
    })
}
