//! Cryptography: the bounded argon2 pool, Ed25519 access tokens and one-time tokens.

pub mod captcha;
pub mod data_keys;
mod hash_workers;
pub mod jwt;
pub mod password;
pub mod random;
pub mod seal;
pub mod totp;
