//! Sealing a secret to a one-time link: the admin-reset "view your new
//! password" link carries the only key that opens it. The database holds the
//! sealed bytes and the token's hash, so the database alone reveals nothing.

use chacha20poly1305::{
    ChaCha20Poly1305, Key, Nonce,
    aead::{Aead, KeyInit},
};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::domain::Secret;

const SALT: &[u8] = b"identity/link-seal/v1";
const NONCE_LEN: usize = 12;

fn cipher(token: &str) -> ChaCha20Poly1305 {
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(SALT), token.as_bytes()).expand(b"seal", &mut key);
    ChaCha20Poly1305::new(&Key::from(key))
}

/// `nonce || ciphertext`, openable only with `token`.
pub fn seal(token: &Secret, secret: &Secret) -> Vec<u8> {
    let nonce = super::random::bytes::<NONCE_LEN>();
    let ciphertext =
        cipher(token.expose()).encrypt(&Nonce::from(nonce), secret.expose().as_bytes()).unwrap_or_default();
    [nonce.as_slice(), &ciphertext].concat()
}

/// The secret, or None when `token` is not the one it was sealed to (or the bytes were altered).
pub fn open(token: &Secret, sealed: &[u8]) -> Option<Secret> {
    if sealed.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let plain = cipher(token.expose()).decrypt(&Nonce::from(nonce), ciphertext).ok()?;
    String::from_utf8(plain).ok().map(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_link_token_opens_the_seal() {
        let token = Secret::new("token-one");
        let sealed = seal(&token, &Secret::new("Xk2#password"));
        assert_eq!(open(&token, &sealed).unwrap().expose(), "Xk2#password");
        assert!(open(&Secret::new("token-two"), &sealed).is_none());
        let mut altered = sealed.clone();
        altered[NONCE_LEN] ^= 1;
        assert!(open(&token, &altered).is_none());
        assert!(open(&token, &[]).is_none());
    }
}
