//! Use cases: one function per business operation, taking typed input and
//! returning domain results. Edges (gRPC, gateway, CLI) call these; these call
//! `domain` for rules and `store` for data.

pub mod bootstrap;
pub mod links;

use std::sync::Arc;

use crate::{
    clock::{SharedClock, SystemClock},
    config::Config,
    crypto::password::PasswordHasher,
    domain::Error,
    store::Store,
};

/// Everything a use case needs, shared by every request.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub store: Store,
    pub hasher: PasswordHasher,
    pub clock: SharedClock,
}

impl App {
    pub fn new(config: Config, store: Store) -> Result<Self, Error> {
        Self::with_clock(config, store, Arc::new(SystemClock))
    }

    pub fn with_clock(config: Config, store: Store, clock: SharedClock) -> Result<Self, Error> {
        let hasher = PasswordHasher::new(&config.argon2, &config.hashing)?;
        Ok(Self {
            config: Arc::new(config),
            store,
            hasher,
            clock,
        })
    }
}
