//! Envelope encryption of secrets at rest (TOTP secrets, queued email bodies)
//! under data keys that live outside the database. Every sealed value names
//! the key that sealed it, so a rotation can re-seal rows while both keys open.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    ChaCha20Poly1305, Key, Nonce,
    aead::{Aead, KeyInit, Payload},
};

const NONCE_LEN: usize = 12;
/// Bytes of a data key.
pub const KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataKeyError {
    #[error("data key `{0}` is not configured")]
    Missing(String),
    /// Altered bytes, or a value moved to another row (the row is bound in).
    #[error("a value sealed under data key `{0}` does not open")]
    Corrupt(String),
}

/// The configured data keys: `current` seals, every one of them opens.
pub struct DataKeys {
    current: String,
    ciphers: BTreeMap<String, ChaCha20Poly1305>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys").field("current", &self.current).field("ids", &self.ids()).finish()
    }
}

/// A value sealed under key `key_id`: `nonce || ciphertext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

/// A key id is also a file name: short, and nothing a path could hide in.
pub fn valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !id.starts_with('-')
}

impl DataKeys {
    /// `current` must be one of `keys`.
    pub fn new(current: &str, keys: Vec<(String, [u8; KEY_LEN])>) -> Result<Self, DataKeyError> {
        let ciphers: BTreeMap<String, ChaCha20Poly1305> =
            keys.into_iter().map(|(id, key)| (id, ChaCha20Poly1305::new(&Key::from(key)))).collect();
        if !ciphers.contains_key(current) {
            return Err(DataKeyError::Missing(current.to_owned()));
        }
        Ok(Self { current: current.to_owned(), ciphers })
    }

    /// A key that lives as long as the process: for a database that does too.
    pub fn ephemeral() -> Self {
        let id = format!("mem-{}", super::random::string_from(b"0123456789abcdef", 8));
        let cipher = ChaCha20Poly1305::new(&Key::from(super::random::bytes::<KEY_LEN>()));
        Self { current: id.clone(), ciphers: BTreeMap::from([(id, cipher)]) }
    }

    pub fn current_id(&self) -> &str {
        &self.current
    }

    pub fn has(&self, id: &str) -> bool {
        self.ciphers.contains_key(id)
    }

    pub fn ids(&self) -> Vec<&str> {
        self.ciphers.keys().map(String::as_str).collect()
    }

    /// Seals `plain` under the current key, bound to `aad` (the row it belongs to).
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Sealed {
        let nonce = super::random::bytes::<NONCE_LEN>();
        // Encryption fails only past ChaCha20's 256 GiB message limit.
        let ciphertext =
            self.ciphers[&self.current].encrypt(&Nonce::from(nonce), Payload { msg: plain, aad }).unwrap_or_default();
        Sealed { key_id: self.current.clone(), bytes: [nonce.as_slice(), &ciphertext].concat() }
    }

    pub fn open(&self, key_id: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, DataKeyError> {
        let cipher = self.ciphers.get(key_id).ok_or_else(|| DataKeyError::Missing(key_id.to_owned()))?;
        let corrupt = || DataKeyError::Corrupt(key_id.to_owned());
        if sealed.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| corrupt())?;
        cipher.decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad }).map_err(|_| corrupt())
    }

    /// [`Self::seal`] for a text column: base64. Empty stays empty, so that
    /// a scrubbed body needs no key.
    pub fn seal_text(&self, aad: &[u8], plain: &str) -> String {
        if plain.is_empty() {
            return String::new();
        }
        STANDARD.encode(self.seal(aad, plain.as_bytes()).bytes)
    }

    pub fn open_text(&self, key_id: &str, aad: &[u8], sealed: &str) -> Result<String, DataKeyError> {
        if sealed.is_empty() {
            return Ok(String::new());
        }
        let corrupt = || DataKeyError::Corrupt(key_id.to_owned());
        let bytes = STANDARD.decode(sealed).map_err(|_| corrupt())?;
        String::from_utf8(self.open(key_id, aad, &bytes)?).map_err(|_| corrupt())
    }
}

/// A key as written in a key file: base64 (standard or url-safe) of 32 bytes.
pub fn decode_key(text: &str) -> Option<[u8; KEY_LEN]> {
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    let bytes =
        STANDARD.decode(text).or_else(|_| URL_SAFE.decode(text)).or_else(|_| URL_SAFE_NO_PAD.decode(text)).ok()?;
    bytes.try_into().ok()
}

/// A new random key, base64, as a key file holds it.
pub fn generate_key_text() -> String {
    STANDARD.encode(super::random::bytes::<KEY_LEN>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(current: &str) -> DataKeys {
        DataKeys::new(current, vec![("a".to_owned(), [1; KEY_LEN]), ("b".to_owned(), [2; KEY_LEN])]).unwrap()
    }

    #[test]
    fn the_current_key_seals_and_any_configured_key_opens() {
        let old = keys("a").seal(b"row-1", b"secret");
        assert_eq!(old.key_id, "a");
        let rotated = keys("b");
        assert_eq!(rotated.open(&old.key_id, b"row-1", &old.bytes).unwrap(), b"secret");
        assert_eq!(rotated.seal(b"row-1", b"secret").key_id, "b");
        let without_a = DataKeys::new("b", vec![("b".to_owned(), [2; KEY_LEN])]).unwrap();
        assert_eq!(without_a.open("a", b"row-1", &old.bytes), Err(DataKeyError::Missing("a".to_owned())));
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_own_row_and_unaltered() {
        let keys = keys("a");
        let sealed = keys.seal(b"row-1", b"secret");
        assert_eq!(keys.open("a", b"row-2", &sealed.bytes), Err(DataKeyError::Corrupt("a".to_owned())));
        let mut altered = sealed.bytes.clone();
        altered[NONCE_LEN] ^= 1;
        assert!(keys.open("a", b"row-1", &altered).is_err());
        assert!(keys.open("a", b"row-1", &[]).is_err());
        assert_ne!(keys.seal(b"row-1", b"secret").bytes, sealed.bytes, "a fresh nonce each time");
    }

    #[test]
    fn text_columns_are_base64_and_empty_stays_empty() {
        let keys = keys("a");
        let sealed = keys.seal_text(b"mail-1", "Your link: https://x/t/abc");
        assert!(!sealed.contains("https"));
        assert_eq!(keys.open_text("a", b"mail-1", &sealed).unwrap(), "Your link: https://x/t/abc");
        assert_eq!(keys.seal_text(b"mail-1", ""), "");
        assert_eq!(keys.open_text("gone", b"mail-1", "").unwrap(), "");
    }

    #[test]
    fn key_files_and_ids_are_checked() {
        assert_eq!(decode_key(&generate_key_text()).map(|k| k.len()), Some(KEY_LEN));
        assert!(decode_key("c2hvcnQ=").is_none());
        assert!(valid_key_id("dk-2026_12"));
        for bad in ["", "..data", "a/b", "-x", &"k".repeat(65)] {
            assert!(!valid_key_id(bad), "{bad}");
        }
        assert!(DataKeys::new("c", vec![("a".to_owned(), [1; KEY_LEN])]).is_err());
    }
}
