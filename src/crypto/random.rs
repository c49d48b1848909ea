//! Random secrets from the operating system's CSPRNG, and the hashes under
//! which one-time secrets are stored.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::{Rng, RngExt};
use sha2::{Digest, Sha256};

use crate::domain::Secret;

/// A 256-bit random token, base64url without padding (43 characters):
/// safe in URLs, emails and HTTP headers.
pub fn token() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(URL_SAFE_NO_PAD.encode(bytes))
}

/// The form under which a one-time token is stored: SHA-256, hex. A 256-bit
/// random token needs no salt or slow hash; only possession of the token
/// itself opens anything.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `length` characters drawn uniformly from `alphabet`.
pub fn string_from(alphabet: &[u8], length: usize) -> String {
    let mut rng = rand::rng();
    (0..length).map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())])).collect()
}

pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let a = token();
        let b = token();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(a.expose()).unwrap().len(), 32);
    }

    #[test]
    fn token_hash_is_hex_sha256() {
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn strings_use_only_the_alphabet() {
        let s = string_from(b"ab", 64);
        assert_eq!(s.len(), 64);
        assert!(s.chars().all(|c| c == 'a' || c == 'b'));
    }
}

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
/// No `]` (so `]]>` can never close a CDATA section), no quotes, backslash or space.
const SYMBOLS: &[u8] = b"!#$%&()*+,-./:;<=?@^_{|}~";

pub const GENERATED_PASSWORD_LENGTH: usize = 20;

/// A generated password: 20 characters (or the policy's minimum, if longer)
/// from a CSPRNG with every character class, checked against `policy` (and so
/// against the login).
pub fn password(policy: &crate::domain::password_policy::PasswordPolicy, login: &str) -> Secret {
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    let length = GENERATED_PASSWORD_LENGTH.max(policy.min_length);
    loop {
        let mut chars: Vec<char> = string_from(&all, length - 4).chars().collect();
        for class in [LOWER, UPPER, DIGITS, SYMBOLS] {
            let c = string_from(class, 1).chars().next().unwrap_or('x');
            let at = rand::rng().random_range(0..=chars.len());
            chars.insert(at, c);
        }
        let candidate = Secret::new(chars.into_iter().collect::<String>());
        if policy.check(&candidate, login, &[]).is_ok() {
            return candidate;
        }
    }
}

#[cfg(test)]
mod password_tests {
    use super::*;
    use crate::domain::password_policy::PasswordPolicy;

    #[test]
    fn generated_passwords_are_long_varied_and_cdata_safe() {
        let policy = PasswordPolicy::default();
        for _ in 0..200 {
            let generated = password(&policy, "fran_m");
            let value = generated.expose();
            assert_eq!(value.chars().count(), GENERATED_PASSWORD_LENGTH);
            assert!(value.chars().any(|c| c.is_ascii_lowercase()));
            assert!(value.chars().any(|c| c.is_ascii_uppercase()));
            assert!(value.chars().any(|c| c.is_ascii_digit()));
            assert!(!value.contains(']') && !value.contains(' '));
            assert!(policy.check(&generated, "fran_m", &[]).is_ok());
        }
    }
}
