//! Use cases: one function per business operation, taking typed input and
//! returning domain results. Edges (gRPC, gateway, CLI) call these; these call
//! `domain` for rules and `store` for data.

pub mod access;
pub mod audit_log;
pub mod bootstrap;
pub mod caller;
pub mod credentials;
pub mod data_keys;
pub mod forgot;
pub mod housekeeping;
pub mod keys;
pub mod links;
pub mod login;
pub mod notify;
pub mod platform;
pub mod redemption;
pub mod reset;
pub mod second_factor;
pub mod sessions;
pub mod support;
pub mod taken_logins;
pub mod throttle;
pub mod users;
pub mod verified_tokens;

use std::{sync::Arc, time::Duration};

use keys::KeyManager;
use sessions::RevocationCache;

use crate::{
    clock::{SharedClock, SystemClock},
    config::Config,
    crypto::{
        captcha::{CaptchaVerifier, ProofOfWork},
        data_keys::DataKeys,
        password::PasswordHasher,
    },
    domain::Error,
    store::Store,
};

/// Everything a use case needs, shared by every request.
pub struct App {
    pub config: Arc<Config>,
    pub store: Store,
    pub hasher: PasswordHasher,
    pub clock: SharedClock,
    pub keys: KeyManager,
    /// Seal TOTP secrets and queued email bodies (see [`data_keys`]).
    pub data_keys: DataKeys,
    pub revocations: RevocationCache,
    /// Issues the embedded proof-of-work challenges.
    pub captcha: ProofOfWork,
    /// Checks captcha solutions; the proof of work unless another is plugged in.
    pub captcha_verifier: Arc<dyn CaptchaVerifier>,
    pub status_cache: platform::StatusCache,
}

impl App {
    /// Readies the use cases: the hashing pool and the signing keys.
    pub async fn start(config: Config, store: Store) -> Result<Self, Error> {
        Self::start_with_clock(config, store, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(config: Config, store: Store, clock: SharedClock) -> Result<Self, Error> {
        let hasher = PasswordHasher::new(&config.argon2, &config.hashing)?;
        let keys = KeyManager::start(&store, &config, clock.now_ms()).await?;
        let data_keys = data_keys::load(&store, &config).await?;
        let revocations = RevocationCache::new(Duration::from_millis(config.tokens.revocation_cache_ms));
        let captcha = ProofOfWork::from_config(&config.captcha);
        let captcha_verifier: Arc<dyn CaptchaVerifier> = Arc::new(captcha.clone());
        Ok(Self {
            config: Arc::new(config),
            store,
            hasher,
            clock,
            keys,
            data_keys,
            revocations,
            captcha,
            captcha_verifier,
            status_cache: platform::StatusCache::default(),
        })
    }

    /// The right-hand side of Message-IDs: the public host name.
    pub fn message_domain(&self) -> String {
        url::Url::parse(&self.config.public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "identity.invalid".to_owned())
    }
}
