//! `tokens` and `second_factor`: access and refresh tokens, software tokens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// Software tokens (PIN + tokencode).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SecondFactorConfig {
    /// Issuer shown by authenticator apps.
    pub issuer: String,
    /// How long a passcode or new-PIN challenge lives, in seconds.
    pub challenge_ttl_secs: u64,
}

impl Default for SecondFactorConfig {
    fn default() -> Self {
        Self { issuer: "identity".to_owned(), challenge_ttl_secs: 300 }
    }
}

/// Access and refresh tokens.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// `iss` of access tokens (default: the public URL).
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Access token lifetime, in seconds (default 15 minutes).
    pub access_ttl_secs: u64,
    /// Refresh token lifetime when unused, in seconds (default 30 days).
    pub refresh_ttl_secs: u64,
    /// For this many seconds after a refresh token is rotated, presenting it again
    /// rotates it once more instead of revoking the session as a replay (two tabs
    /// of one browser refreshing at once). 0: every reuse revokes.
    pub refresh_reuse_grace_secs: u64,
    /// Ed25519 private key (PKCS#8 PEM) to sign with instead of keys kept in the database.
    pub signing_key_file: Option<PathBuf>,
    /// How often each replica re-reads the published keys, in seconds.
    pub key_reload_secs: u64,
    /// How long a replica may trust its cached view of a session's revocation, in milliseconds.
    pub revocation_cache_ms: u64,
    /// Access tokens whose signature a replica remembers having checked (0: none).
    pub verified_cache_entries: usize,
}

/// Remembered token signatures: a million is about 1 GiB of memory.
pub const MAX_VERIFIED_CACHE_ENTRIES: usize = 1_000_000;

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: "identity".to_owned(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            refresh_reuse_grace_secs: 10,
            signing_key_file: None,
            key_reload_secs: 30,
            revocation_cache_ms: 1000,
            verified_cache_entries: 10_000,
        }
    }
}

impl TokenConfig {
    /// The issuer, defaulting to the public URL.
    pub fn issuer_or<'a>(&'a self, public_url: &'a str) -> &'a str {
        if self.issuer.is_empty() { public_url } else { &self.issuer }
    }
}

impl SecondFactorConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(30..=3600).contains(&self.challenge_ttl_secs) {
            return Err(bad("second_factor.challenge_ttl_secs", "must be 30 to 3600"));
        }
        if self.issuer.trim().is_empty() || self.issuer.contains(':') {
            return Err(bad("second_factor.issuer", "must be a name without ':'"));
        }
        Ok(())
    }
}

impl TokenConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(10..=86_400).contains(&self.access_ttl_secs) {
            return Err(bad("tokens.access_ttl_secs", "must be 10 to 86400"));
        }
        if self.refresh_ttl_secs < self.access_ttl_secs {
            return Err(bad("tokens.refresh_ttl_secs", "must be at least `tokens.access_ttl_secs`"));
        }
        if self.refresh_reuse_grace_secs > 60 {
            return Err(bad("tokens.refresh_reuse_grace_secs", "must be 0 to 60: a longer window hides a replay"));
        }
        if self.audience.is_empty() {
            return Err(bad("tokens.audience", "must not be empty"));
        }
        if self.key_reload_secs == 0 {
            return Err(bad("tokens.key_reload_secs", "must be at least 1"));
        }
        // The cache sizes its tables up front: an absurd figure would fail at start, not politely.
        if self.verified_cache_entries > MAX_VERIFIED_CACHE_ENTRIES {
            return Err(bad(
                "tokens.verified_cache_entries",
                format!("must be at most {MAX_VERIFIED_CACHE_ENTRIES} (about 1 KiB each; 0 turns the cache off)"),
            ));
        }
        Ok(())
    }
}
