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
    /// When the ring was last read from the database, and how long that read
    /// is trusted: a key withdrawn elsewhere stops verifying here within it.
    loaded_at: Mutex<Instant>,
    freshness: Duration,
    reloading: tokio::sync::Mutex<()>,
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
                if keys::find(store.connection(), &key.kid).await?.is_some_and(|row| row.revoked_at.is_some()) {
                    return Err(Error::invalid(
                        "tokens.signing_key_file",
                        format!("holds key {}, which was revoked: configure a new key", key.kid),
                    ));
                }
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
            loaded_at: Mutex::new(Instant::now()),
            freshness: Duration::from_millis(config.tokens.revocation_cache_ms),
            reloading: tokio::sync::Mutex::new(()),
        };
        Ok(manager)
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        Arc::clone(&self.ring.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub async fn reload(&self, store: &Store, now_ms: i64) -> Result<(), Error> {
        let started = Instant::now();
        let ring = load(store, self.pinned.as_ref(), now_ms).await?;
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
        *self.loaded_at.lock().unwrap_or_else(|e| e.into_inner()) = started;
        Ok(())
    }

    fn is_stale(&self) -> bool {
        self.loaded_at.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= self.freshness
    }

    /// Re-reads the keys when the last read is older than the revocation
    /// bound (`tokens.revocation_cache_ms`), so that `identity keys revoke` on
    /// any machine reaches this replica as fast as a session revocation does.
    /// One caller reads, the others wait for its result; one small query a
    /// second at most.
    pub async fn refresh_if_stale(&self, store: &Store, now_ms: i64) {
        if !self.is_stale() {
            return;
        }
        let _reading = self.reloading.lock().await;
        if !self.is_stale() {
            return;
        }
        if let Err(error) = self.reload(store, now_ms).await {
            // Tried: the next attempt waits for the bound again rather than
            // every request hammering a failing database.
            *self.loaded_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            tracing::warn!(%error, "could not reload signing keys");
        }
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
        self.refresh_if_stale(store, now_ms).await;
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

/// What `identity keys revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The key that signs from now on, when the withdrawn key was the signer.
    pub new_signer: Option<String>,
}

/// Withdraws signing key `kid` now (a leak): it is no longer published, every
/// replica refuses its tokens within `tokens.revocation_cache_ms`, and when it
/// was the signer a new key takes over in the same transaction.
pub async fn revoke(store: &Store, config: &Config, kid: &str, now_ms: i64) -> Result<Revoked, Error> {
    if let Some(path) = &config.tokens.signing_key_file
        && let Ok(pem) = std::fs::read_to_string(path)
        && jwt::key_from_pem(&pem).is_ok_and(|key| key.kid == kid)
    {
        return Err(Error::FailedPrecondition {
            reason: crate::domain::ErrorReason::PinnedSigningKey,
            message: format!(
                "{kid} is the key of tokens.signing_key_file: replace that file (and restart), then revoke {kid}"
            ),
        });
    }
    let txn = store.begin_write().await?;
    if !keys::revoke(&txn, kid, now_ms).await? {
        return Err(Error::NotFound(format!("no signing key {kid} (or it was revoked already)")));
    }
    let can_sign =
        keys::published(&txn, now_ms).await?.iter().any(|k| k.retired_at.is_none() && !k.private_key.is_empty());
    let new_signer = if can_sign || config.tokens.signing_key_file.is_some() {
        None
    } else {
        let key = jwt::generate_key();
        keys::insert(&txn, &key, now_ms).await?;
        Some(key.kid)
    };
    txn.commit().await.map_err(StoreError::from)?;
    Ok(Revoked { new_signer })
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
