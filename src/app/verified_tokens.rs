//! Access tokens whose signature this replica has already checked. A service
//! validates the same token on each request of a session; remembering the
//! signature check saves the Ed25519 verification, which costs more than the
//! rest of a ValidateToken call (docs/PERFORMANCE.md). Envoy's `jwt_authn`
//! filter keeps the same kind of cache.
//!
//! Only the signature is remembered: that its key is still published, the
//! claims against the clock, issuer and audience, and the session's
//! revocation are checked on every call. Entries are keyed by the token's
//! SHA-256, so the cache holds no bearer tokens, and bounded in number
//! (quick_cache's S3-FIFO keeps the tokens in use).

use std::sync::Arc;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use crate::crypto::jwt::{MAX_TOKEN_BYTES, Signed};

pub type TokenDigest = [u8; 32];

pub struct VerifiedTokens {
    cache: Option<Cache<TokenDigest, Arc<Signed>>>,
}

impl VerifiedTokens {
    /// A cache of at most `entries` tokens; none at all for 0.
    pub fn new(entries: usize) -> Self {
        Self { cache: (entries > 0).then(|| Cache::new(entries)) }
    }

    /// The key of `token`, when there is a cache to look it up in. A token
    /// too long to be ours is refused unread, so it is not hashed either.
    pub fn digest(&self, token: &str) -> Option<TokenDigest> {
        let cache = self.cache.as_ref().filter(|_| token.len() <= MAX_TOKEN_BYTES);
        cache.map(|_| Sha256::digest(token.as_bytes()).into())
    }

    pub fn get(&self, digest: &TokenDigest) -> Option<Arc<Signed>> {
        self.cache.as_ref()?.get(digest)
    }

    pub fn insert(&self, digest: TokenDigest, signed: Arc<Signed>) {
        if let Some(cache) = &self.cache {
            cache.insert(digest, signed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::jwt::AccessClaims;

    fn signed(kid: &str) -> Arc<Signed> {
        let claims = AccessClaims {
            iss: "https://id.example".into(),
            aud: "identity".into(),
            sub: "u".into(),
            exp: 2,
            iat: 1,
            nbf: 1,
            jti: "j".into(),
            sid: "s".into(),
            subscription: "sub".into(),
            role: "reader".into(),
            login: "l".into(),
        };
        Arc::new(Signed { kid: kid.into(), claims })
    }

    #[test]
    fn remembers_a_token_by_its_digest_only() {
        let cache = VerifiedTokens::new(16);
        let digest = cache.digest("a.b.c").unwrap();
        assert!(cache.get(&digest).is_none());
        cache.insert(digest, signed("k1"));
        assert_eq!(cache.get(&digest).unwrap().kid, "k1");
        assert!(cache.get(&cache.digest("a.b.d").unwrap()).is_none(), "another token is another entry");
    }

    #[test]
    fn a_disabled_cache_remembers_nothing_and_hashes_nothing() {
        let cache = VerifiedTokens::new(0);
        assert_eq!(cache.digest("a.b.c"), None);
        cache.insert([0; 32], signed("k1"));
        assert!(cache.get(&[0; 32]).is_none());
    }

    #[test]
    fn tokens_too_long_to_be_ours_are_not_hashed() {
        let cache = VerifiedTokens::new(16);
        assert!(cache.digest(&"a".repeat(MAX_TOKEN_BYTES)).is_some());
        assert_eq!(cache.digest(&"a".repeat(MAX_TOKEN_BYTES + 1)), None);
    }

    #[test]
    fn holds_at_most_its_capacity() {
        let cache = VerifiedTokens::new(100);
        for i in 0..1_000 {
            cache.insert(cache.digest(&format!("token-{i}")).unwrap(), signed("k"));
        }
        let kept = (0..1_000).filter(|i| cache.get(&cache.digest(&format!("token-{i}")).unwrap()).is_some()).count();
        assert!(kept <= 100, "kept {kept}");
        assert!(kept > 0);
    }
}
