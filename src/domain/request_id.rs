//! Client-chosen request ids that make a batch reset safe to retry: what an
//! id may look like, and what makes two requests "the same request".

use sha2::{Digest, Sha256};

use super::Error;

pub const MIN_LEN: usize = 16;
pub const MAX_LEN: usize = 128;

/// How long an id stays bound to its first outcome.
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;

/// `None` for an empty id (no retry safety asked for). At least [`MIN_LEN`]
/// characters because the id is also the key that seals the stored outcome:
/// a UUID (36) is the intended value.
pub fn parse(raw: &str) -> Result<Option<String>, Error> {
    if raw.is_empty() {
        return Ok(None);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if !(MIN_LEN..=MAX_LEN).contains(&raw.len()) || !raw.chars().all(allowed) {
        return Err(Error::invalid(
            "request_id",
            format!("must be {MIN_LEN}-{MAX_LEN} characters of letters, digits, `-`, `_`, `.`, `:` (a random UUID)"),
        ));
    }
    Ok(Some(raw.to_owned()))
}

/// What a reset request asks for, independent of the order its targets were
/// listed in: a retry that lists them differently is still the same request.
pub fn fingerprint(all: bool, notify_by_email: bool, logins: &[String], ids: &[String]) -> String {
    let mut hasher = Sha256::new();
    hasher.update([u8::from(all), u8::from(notify_by_email)]);
    for (tag, names) in [(b'l', logins), (b'i', ids)] {
        let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            hasher.update([tag]);
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
        }
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn ids_are_bounded_and_plain() {
        assert_eq!(parse("").unwrap(), None);
        let uuid = "3f2b8c1e-7d4a-4e0b-9a51-1c2d3e4f5a6b";
        assert_eq!(parse(uuid).unwrap().as_deref(), Some(uuid));
        assert!(parse("short").is_err());
        assert!(parse(&"a".repeat(MAX_LEN + 1)).is_err());
        assert!(parse(&"a".repeat(MAX_LEN)).is_ok());
        assert!(parse("0123456789abcdef 0").is_err(), "no spaces");
        assert!(parse("0123456789abcdéf").is_err(), "ASCII only");
    }

    #[test]
    fn the_same_request_whatever_the_order() {
        let a = fingerprint(false, false, &names(&["bob", "alice"]), &names(&["id1"]));
        assert_eq!(a, fingerprint(false, false, &names(&["alice", "bob", "bob"]), &names(&["id1"])));
        assert_ne!(a, fingerprint(false, true, &names(&["alice", "bob"]), &names(&["id1"])));
        assert_ne!(a, fingerprint(true, false, &names(&["alice", "bob"]), &names(&["id1"])));
        assert_ne!(a, fingerprint(false, false, &names(&["alice"]), &names(&["id1"])));
        // A login is not an id of the same spelling.
        assert_ne!(fingerprint(false, false, &names(&["x"]), &[]), fingerprint(false, false, &[], &names(&["x"])));
        assert_eq!(a.len(), 64);
    }
}
