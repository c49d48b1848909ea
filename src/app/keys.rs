//! The signing keys a replica uses: created on first start (or read from a
//! configured PEM file), kept in the database so every replica verifies every
//! key, re-read periodically so a rotation reaches all replicas.

use std::{
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use crate::{
    config::Config,
    crypto::jwt::{self, KeyRing, NewKey, Signed, TokenRejection},
    domain::Error,
    store::{Store, StoreError, keys},
};

use super::verified_tokens::VerifiedTokens;

/// Unknown `kid`s trigger an early reload at most this often.
const FORCED_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

pub struct KeyManager {
    ring: RwLock<Arc<KeyRing>>,
    /// A key from `tokens.signing_key_file`, which signs instead of database keys.
    pinned: Option<NewKey>,
    last_forced_reload: Mutex<Option<Instant>>,
    verified: VerifiedTokens,
}

impl KeyManager {
    /// Publishes the configured key, or makes sure a database key can sign,
    /// then loads the published keys.
    pub async fn start(store: &Store, config: &Config, now_ms: i64) -> Result<Self, Error> {
        let pinned = match &config.tokens.signing_key_file {
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    Error::invalid("tokens.signing_key_file", format!("cannot be read ({}): {e}", path.display()))
                })?;
                let key = jwt::key_from_pem(&pem)?;
                warn_if_readable_by_others(path);
                // Only the public half goes to the database; the private key stays in the file.
                let public_only = NewKey { private_pkcs8_der: Vec::new(), ..key.clone() };
                let txn = store.begin_write().await?;
                keys::insert_if_absent(&txn, &public_only, now_ms).await?;
                // A replaced file (say, after a leak) or earlier database keys must stop
                // verifying once the tokens they signed have expired.
                keys::retire_all_but(&txn, Some(&key.kid), now_ms, publish_until(config, now_ms)).await?;
                txn.commit().await.map_err(StoreError::from)?;
                Some(key)
            }
            None => {
                let published = keys::published(store.connection(), now_ms).await?;
                let can_sign = published.iter().any(|k| k.retired_at.is_none() && !k.private_key.is_empty());
                if !can_sign {
                    keys::insert(store.connection(), &jwt::generate_key(), now_ms).await?;
                    tracing::info!("created a signing key");
                }
                None
            }
        };
        let manager = Self {
            ring: RwLock::new(Arc::new(load(store, pinned.as_ref(), now_ms).await?)),
            pinned,
            last_forced_reload: Mutex::new(None),
            verified: VerifiedTokens::new(config.tokens.verified_cache_entries),
        };
        Ok(manager)
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        Arc::clone(&self.ring.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub async fn reload(&self, store: &Store, now_ms: i64) -> Result<(), Error> {
        let ring = load(store, self.pinned.as_ref(), now_ms).await?;
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
        Ok(())
    }

    /// Verifies an access token; a `kid` this replica has not seen yet (a
    /// rotation elsewhere) triggers one early reload.
    pub async fn verify(
        &self,
        store: &Store,
        token: &str,
        issuer: &str,
        audience: &str,
        now_ms: i64,
    ) -> Result<Arc<Signed>, TokenRejection> {
        let signed = self.verify_signature(store, token, now_ms).await?;
        jwt::check_claims(&signed.claims, issuer, audience, now_ms / 1000)?;
        // The cache's own copy, shared: a deep copy of the claims was nine
        // allocations per call on the hottest path (docs/PERFORMANCE.md).
        Ok(signed)
    }

    async fn verify_signature(&self, store: &Store, token: &str, now_ms: i64) -> Result<Arc<Signed>, TokenRejection> {
        let digest = self.verified.digest(token);
        if let Some(known) = digest.as_ref().and_then(|digest| self.verified.get(digest))
            && self.ring.read().unwrap_or_else(|e| e.into_inner()).has_kid(&known.kid)
        {
            return Ok(known);
        }
        let signed = match self.ring().verify_signature(token) {
            Err(TokenRejection::UnknownKey) if self.may_force_reload() => {
                if let Err(e) = self.reload(store, now_ms).await {
                    tracing::warn!(error = %e, "could not reload signing keys");
                }
                self.ring().verify_signature(token)
            }
            other => other,
        };
        let signed = Arc::new(signed?);
        if let Some(digest) = digest {
            self.verified.insert(digest, Arc::clone(&signed));
        }
        Ok(signed)
    }

    fn may_force_reload(&self) -> bool {
        let mut last = self.last_forced_reload.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|at| at.elapsed() >= FORCED_RELOAD_INTERVAL);
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

async fn load(store: &Store, pinned: Option<&NewKey>, now_ms: i64) -> Result<KeyRing, Error> {
    let rows = keys::published(store.connection(), now_ms).await?;
    match pinned {
        Some(key) => KeyRing::from_rows_with_signer(rows, now_ms, key),
        None => KeyRing::from_rows(rows, now_ms),
    }
}

/// When a retired key stops verifying: one minute beyond the longest token
/// life covers clock skew and the verification leeway.
fn publish_until(config: &Config, now_ms: i64) -> i64 {
    now_ms + super::sessions::secs_to_ms(config.tokens.access_ttl_secs) + 60_000
}

/// Starts signing with a new key. The old keys stay published until every
/// token they signed has expired, so nobody is logged out.
pub async fn rotate(store: &Store, config: &Config, now_ms: i64) -> Result<String, Error> {
    if config.tokens.signing_key_file.is_some() {
        return Err(Error::FailedPrecondition {
            reason: crate::domain::ErrorReason::PinnedSigningKey,
            message: "tokens.signing_key_file is set: rotate by replacing that file".to_owned(),
        });
    }
    let key = jwt::generate_key();
    let txn = store.begin_write().await?;
    keys::retire_signing_keys(&txn, now_ms, publish_until(config, now_ms)).await?;
    keys::insert(&txn, &key, now_ms).await?;
    txn.commit().await.map_err(StoreError::from)?;
    Ok(key.kid)
}

/// The service only reads the key file (the operator writes it), so it
/// cannot make it private; it says so when others may read it.
fn warn_if_readable_by_others(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", metadata.permissions().mode() & 0o777),
                "tokens.signing_key_file can be read by other users: make it 0600"
            );
        }
    }
}
