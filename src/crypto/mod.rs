//! Cryptography: the bounded argon2 pool and one-time tokens.

pub mod password;
pub mod random;
