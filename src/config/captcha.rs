//! `captcha`: the proof-of-work challenge of self-service password reset.

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// The embedded proof-of-work captcha of self-service password reset (see docs/decisions.md).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CaptchaConfig {
    /// Leading zero bits asked of SHA-256(challenge ":" nonce): about 2^bits hashes per solution.
    /// The base, asked while forgot-password is quiet.
    pub difficulty_bits: u32,
    /// The most bits asked while forgot-password is hammered.
    pub max_difficulty_bits: u32,
    /// Forgot-password requests per minute (every replica together) above which
    /// each doubling of the rate asks one bit more.
    pub busy_requests_per_minute: u64,
    /// How long a challenge may be solved and used, in seconds.
    pub ttl_secs: u64,
    /// Key signing the challenges, base64 (standard or url-safe), at least 32 bytes once
    /// decoded. Replicas behind one load balancer must share it; unset: a random key per
    /// process, made at start (challenges then fail on another replica or after a restart).
    pub hmac_key: Option<String>,
}

impl Default for CaptchaConfig {
    fn default() -> Self {
        Self {
            difficulty_bits: 18,
            max_difficulty_bits: 22,
            busy_requests_per_minute: 60,
            ttl_secs: 300,
            hmac_key: None,
        }
    }
}

impl CaptchaConfig {
    /// The decoded `hmac_key`, when set and valid.
    pub fn key_bytes(&self) -> Option<Vec<u8>> {
        super::decode_key(self.hmac_key.as_deref()?.trim(), 32)
    }
}

impl std::fmt::Debug for CaptchaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptchaConfig")
            .field("difficulty_bits", &self.difficulty_bits)
            .field("max_difficulty_bits", &self.max_difficulty_bits)
            .field("busy_requests_per_minute", &self.busy_requests_per_minute)
            .field("ttl_secs", &self.ttl_secs)
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "***"))
            .finish()
    }
}

impl CaptchaConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=32).contains(&self.difficulty_bits) {
            return Err(bad("captcha.difficulty_bits", "must be 1 to 32"));
        }
        if !(self.difficulty_bits..=32).contains(&self.max_difficulty_bits) {
            return Err(bad("captcha.max_difficulty_bits", "must be `captcha.difficulty_bits` to 32"));
        }
        if self.busy_requests_per_minute == 0 {
            return Err(bad("captcha.busy_requests_per_minute", "must be at least 1"));
        }
        if !(30..=3600).contains(&self.ttl_secs) {
            return Err(bad("captcha.ttl_secs", "must be 30 to 3600"));
        }
        if self.hmac_key.is_some() && self.key_bytes().is_none() {
            return Err(bad("captcha.hmac_key", "must be base64 (standard or url-safe) of at least 32 bytes"));
        }
        Ok(())
    }
}
