//! Opaque page tokens (AIP-158): the keyset cursor plus a fingerprint of the
//! filters and the cursor, so a token is refused when replayed with other
//! filters or altered. The fingerprint is a checksum, not a signature: a
//! forged cursor only moves where a listing starts, never what it may show.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Error;

#[derive(Serialize, Deserialize)]
struct Payload {
    /// The cursor: the last key of the previous page.
    a: String,
    /// Fingerprint of the query the token belongs to and of the cursor.
    f: String,
}

/// A short fingerprint of the query's filters.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn encode(cursor: &str, fingerprint: &str) -> String {
    let payload = Payload { a: cursor.to_owned(), f: self::fingerprint(&[fingerprint, cursor]) };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap_or_default())
}

/// The cursor inside `token`, if it was made for this query; empty token: start.
pub fn decode(token: &str, fingerprint: &str) -> Result<Option<String>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token", "is not a token this query returned: start again without it");
    if token.len() > 1024 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let payload: Payload = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    // Only the very token `encode` writes: no other spelling of the same payload.
    if payload.a.is_empty() || encode(&payload.a, fingerprint) != token {
        return Err(invalid());
    }
    Ok(Some(payload.a))
}

/// AIP-158 page size: 0 means the default, above the maximum is capped,
/// negative is an error.
pub fn page_size(requested: i32, default: u64, max: u64) -> Result<u64, Error> {
    match u64::try_from(requested) {
        Ok(0) => Ok(default),
        Ok(size) => Ok(size.min(max)),
        Err(_) => Err(Error::invalid("page_size", "must not be negative")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_for_its_own_query_only() {
        let query = fingerprint(&["unit", "READER", ""]);
        let token = encode("fran_m", &query);
        assert_eq!(decode(&token, &query).unwrap().as_deref(), Some("fran_m"));
        assert!(decode(&token, &fingerprint(&["unit", "MANAGER", ""])).is_err());
        assert_eq!(decode("", &query).unwrap(), None);
    }

    #[test]
    fn altered_tokens_are_refused() {
        let query = fingerprint(&[]);
        let token = encode("fran_m", &query);
        let mut altered = token.clone();
        altered.pop();
        for bad in [altered.as_str(), "%%%", "e30", &"A".repeat(2000), "bm90IGpzb24"] {
            let error = decode(bad, &query).unwrap_err();
            assert!(error.to_string().starts_with("page_token is not a token"), "{bad}: {error}");
        }
    }

    #[test]
    fn fingerprints_do_not_confuse_boundaries() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }

    #[test]
    fn page_sizes_default_cap_and_refuse_negatives() {
        assert_eq!(page_size(0, 50, 500).unwrap(), 50);
        assert_eq!(page_size(10, 50, 500).unwrap(), 10);
        assert_eq!(page_size(100_000, 50, 500).unwrap(), 500);
        assert!(page_size(-1, 50, 500).is_err());
    }
}
