//! argon2id hashing of passwords and PINs on a bounded pool of dedicated
//! threads, off the async runtime.
//!
//! At most `workers` hashes run at once (each holds `memory_kib` of RAM), and
//! at most `queue` more callers wait; past that a caller gets
//! [`Error::Overloaded`] at once, so a flood of logins costs a bounded amount
//! of memory. A hash, once started, keeps its worker slot until it ends even
//! when its caller is cancelled: blocking work cannot be interrupted, and the
//! slot is what bounds the memory.
//!
//! Batches of more than one secret (a batch reset) hash on a second set of
//! `workers` threads at idle priority, resting between hashes while the
//! runtime's threads are busy serving calls (`hash_workers::Lane::Background`),
//! outside the admission slots: a batch takes neither a worker nor a waiting
//! place from logins and little of their CPU time, and its memory (another
//! `workers` hashes) is given back a few seconds after a batch ends.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, Version,
    password_hash::phc::{Output, ParamsString, Salt},
};
use rand::Rng as _;
use subtle::ConstantTimeEq as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::hash_workers::{CallLoad, Lane, Memory, Pacing, Workers};
use crate::{
    config::{Argon2Config, HashingConfig},
    domain::{Error, Secret},
};

/// The outcome of checking a secret against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The secret matches. `needs_rehash`: the hash was made with other
    /// parameters than the configured ones and should be replaced.
    Match {
        needs_rehash: bool,
    },
    Mismatch,
}

#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    limits: Argon2Config,
    admission: Arc<Semaphore>,
    /// Turns of every batch together: at most one job per background worker
    /// queued or running for all batches at once, so batches side by side
    /// take turns and a cancelled batch leaves little queued behind it.
    batch_turns: Arc<Semaphore>,
    /// New hashes computed since start (not verifications), for /metrics.
    made: AtomicU64,
    worker_count: usize,
    workers: Workers,
    background: Workers,
    /// A hash of a random secret with the configured parameters: verifying
    /// against it when a login is unknown costs exactly what a real check costs.
    dummy_hash: String,
}

impl PasswordHasher {
    /// Builds the pool and starts its threads. Computes the dummy hash, so
    /// call it once at start.
    pub fn new(argon2: &Argon2Config, hashing: &HashingConfig) -> Result<Self, Error> {
        let params = Params::new(argon2.memory_kib, argon2.iterations, argon2.parallelism, None)
            .map_err(|e| Error::internal(format!("argon2 parameters: {e}")))?;
        let worker_count = hashing.worker_count();
        let dummy_secret = super::random::token();
        let started = std::time::Instant::now();
        let dummy_hash = hash_blocking(&params, &mut Memory::new(params.block_count()), dummy_secret.expose())?;
        let background = Lane::Background(Pacing {
            load: CallLoad::of_current_runtime(),
            busy_share_percent: hashing.batch_share_percent,
            hash_cost: started.elapsed(),
            keep_memory: std::time::Duration::from_secs(5),
        });
        Ok(Self {
            inner: Arc::new(Inner {
                workers: Workers::start(Lane::Interactive, worker_count, params.block_count())?,
                background: Workers::start(background, worker_count, params.block_count())?,
                params,
                limits: argon2.clone(),
                admission: Arc::new(Semaphore::new(worker_count + hashing.queue)),
                batch_turns: Arc::new(Semaphore::new(worker_count.max(1))),
                made: AtomicU64::new(0),
                worker_count,
                dummy_hash,
            }),
        })
    }

    pub fn worker_count(&self) -> usize {
        self.inner.worker_count
    }

    /// Callers waiting for a worker right now.
    pub fn queue_depth(&self) -> usize {
        self.inner.workers.queued()
    }

    /// Hashes running right now.
    pub fn busy_workers(&self) -> usize {
        self.inner.workers.busy()
    }

    /// New hashes computed since start (passwords and PINs, single or batched).
    pub fn hashes_made(&self) -> u64 {
        self.inner.made.load(Ordering::Relaxed)
    }

    /// Hashes a new password or PIN with the configured parameters.
    pub async fn hash(&self, secret: Secret) -> Result<String, Error> {
        let admission = self.admit()?;
        self.run(admission, self.hash_job(secret)).await
    }

    fn hash_job(&self, secret: Secret) -> impl FnOnce(&mut Memory) -> Result<String, Error> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        move |memory| {
            inner.made.fetch_add(1, Ordering::Relaxed);
            hash_blocking(&inner.params, memory, secret.expose())
        }
    }

    /// Hashes many secrets, in parallel on every background worker, taking no
    /// admission slot (the lane's threads bound its memory). A single secret
    /// (a batch of one user, which a person is waiting on) goes to the
    /// interactive lane like a password change, waiting for an admission slot
    /// instead of being refused: it is one request.
    pub async fn hash_many(&self, mut secrets: Vec<Secret>) -> Result<Vec<String>, Error> {
        if secrets.len() == 1 {
            let admission = Arc::clone(&self.inner.admission).acquire_owned().await.map_err(Error::internal)?;
            return Ok(vec![self.run(Some(admission), self.hash_job(secrets.remove(0))).await?]);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (index, secret) in secrets.into_iter().enumerate() {
            let turn = Arc::clone(&self.inner.batch_turns).acquire_owned().await.map_err(Error::internal)?;
            let (inner, job) = (Arc::clone(&self.inner), self.hash_job(secret));
            tasks.spawn(async move {
                let hash = inner.background.run(job).await;
                drop(turn);
                (index, hash)
            });
        }
        let mut hashes = vec![String::new(); tasks.len()];
        while let Some(joined) = tasks.join_next().await {
            let (index, hash) = joined.map_err(Error::internal)?;
            hashes[index] = hash?;
        }
        Ok(hashes)
    }

    /// Checks `secret` against `stored`, a PHC string. With no stored hash
    /// (unknown login, no PIN), checks against the dummy hash and reports a
    /// mismatch, taking the same time as a real check.
    pub async fn verify(&self, secret: Secret, stored: Option<String>) -> Result<Verification, Error> {
        let admission = self.admit()?;
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.inner.dummy_hash.clone());
        let inner = Arc::clone(&self.inner);
        let verification =
            self.run(admission, move |memory| verify_blocking(&inner, memory, secret.expose(), &stored)).await?;
        Ok(if known { verification } else { Verification::Mismatch })
    }

    fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, Error> {
        Arc::clone(&self.inner.admission).try_acquire_owned().map(Some).map_err(|_| {
            metrics::counter!(crate::telemetry::metrics::HASH_REJECTED).increment(1);
            Error::Overloaded
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        admission: Option<OwnedSemaphorePermit>,
        work: impl FnOnce(&mut Memory) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.inner
            .workers
            .run(move |memory| {
                // The admission slot lives until the hash ends, whether or not anyone awaits it.
                let _slot = admission;
                work(memory)
            })
            .await
    }
}

fn argon2id(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// What argon2's own `hash_password` does, in reused memory.
fn hash_blocking(params: &Params, memory: &mut Memory, secret: &str) -> Result<String, Error> {
    let failed = |e: &dyn std::fmt::Display| Error::internal(format!("argon2 hash: {e}"));
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    memory
        .with(params.block_count(), |blocks| {
            argon2id(params.clone()).hash_password_into_with_memory(secret.as_bytes(), &salt, &mut output, blocks)
        })
        .map_err(|e| failed(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&output).map_err(|e| failed(&e))?),
    };
    Ok(hash.to_string())
}

fn verify_blocking(inner: &Inner, memory: &mut Memory, secret: &str, stored: &str) -> Result<Verification, Error> {
    let parsed = PasswordHash::new(stored).map_err(|e| Error::internal(format!("stored hash unreadable: {e}")))?;
    let stored_params =
        Params::try_from(&parsed).map_err(|e| Error::internal(format!("stored hash parameters: {e}")))?;
    let limits = &inner.limits;
    // Refuse before allocating: a tampered row must not make us allocate gigabytes.
    if stored_params.m_cost() > limits.max_memory_kib
        || stored_params.t_cost() > limits.max_iterations
        || stored_params.p_cost() > limits.max_parallelism
    {
        return Err(Error::internal("stored hash parameters exceed the configured maxima"));
    }
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str())
        .map_err(|e| Error::internal(format!("stored hash algorithm: {e}")))?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(Error::internal)?.unwrap_or(Version::V0x13);
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Ok(Verification::Mismatch);
    };
    let mut computed = vec![0u8; expected.len()];
    memory
        .with(stored_params.block_count(), |blocks| {
            Argon2::new(algorithm, version, stored_params.clone()).hash_password_into_with_memory(
                secret.as_bytes(),
                salt,
                &mut computed,
                blocks,
            )
        })
        .map_err(|e| Error::internal(format!("argon2 verify: {e}")))?;
    match bool::from(computed.ct_eq(expected.as_bytes())) {
        true => {
            let current = &inner.params;
            let needs_rehash = algorithm != Algorithm::Argon2id
                || version != Version::V0x13
                || stored_params.m_cost() != current.m_cost()
                || stored_params.t_cost() != current.t_cost()
                || stored_params.p_cost() != current.p_cost();
            Ok(Verification::Match { needs_rehash })
        }
        false => Ok(Verification::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Config {
        Argon2Config { memory_kib: 64, iterations: 1, parallelism: 1, ..Argon2Config::default() }
    }

    fn pool(argon2: &Argon2Config, workers: usize, queue: usize) -> PasswordHasher {
        PasswordHasher::new(argon2, &HashingConfig { workers, queue, ..HashingConfig::default() }).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_and_a_wrong_secret_does_not() {
        let hasher = pool(&cheap(), 2, 4);
        let hash = hasher.hash(Secret::new("correct horse")).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(
            hasher.verify(Secret::new("correct horse"), Some(hash.clone())).await.unwrap(),
            Verification::Match { needs_rehash: false }
        );
        assert_eq!(hasher.verify(Secret::new("Correct horse"), Some(hash)).await.unwrap(), Verification::Mismatch);
    }

    #[tokio::test]
    async fn hashes_are_standard_phc_strings_both_ways() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = pool(&cheap(), 2, 4);
        let params = Params::new(64, 1, 1, None).unwrap();
        // Stored by the argon2 crate's own hasher (every hash made before reused memory).
        let theirs = argon2id(params.clone()).hash_password(b"correct horse").unwrap().to_string();
        let verdict = hasher.verify(Secret::new("correct horse"), Some(theirs.clone())).await.unwrap();
        assert_eq!(verdict, Verification::Match { needs_rehash: false });
        assert_eq!(hasher.verify(Secret::new("correct horsE"), Some(theirs)).await.unwrap(), Verification::Mismatch);
        // Ours, checked by the argon2 crate's own verifier.
        let ours = hasher.hash(Secret::new("correct horse")).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2id(params.clone()).verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon2id(params).verify_password(b"correct horsE", &parsed).is_err());
    }

    #[tokio::test]
    async fn unknown_users_are_checked_against_the_dummy_and_never_match() {
        let hasher = pool(&cheap(), 1, 1);
        assert_eq!(hasher.verify(Secret::new(""), None).await.unwrap(), Verification::Mismatch);
    }

    #[tokio::test]
    async fn hashes_made_with_older_parameters_ask_for_a_rehash() {
        let old = pool(&cheap(), 1, 1).hash(Secret::new("pw")).await.unwrap();
        let newer = pool(&Argon2Config { memory_kib: 128, ..cheap() }, 1, 1);
        assert_eq!(
            newer.verify(Secret::new("pw"), Some(old)).await.unwrap(),
            Verification::Match { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn stored_parameters_above_the_maxima_are_refused_before_hashing() {
        let hasher = pool(&cheap(), 1, 1);
        let huge = "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        let started = std::time::Instant::now();
        let result = hasher.verify(Secret::new("pw"), Some(huge.to_owned())).await;
        assert!(matches!(result, Err(Error::Internal(ref m)) if m.contains("maxima")), "{result:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        // One worker, no waiting room beyond it: a second concurrent caller is refused.
        let slow = Argon2Config { memory_kib: 8 * 1024, iterations: 8, ..cheap() };
        let hasher = pool(&slow, 1, 1);
        let first = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(Secret::new("a")).await })
        };
        let second = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(Secret::new("b")).await })
        };
        tokio::task::yield_now().await;
        let mut refused = 0;
        for _ in 0..20 {
            if matches!(hasher.hash(Secret::new("c")).await, Err(Error::Overloaded)) {
                refused += 1;
            }
        }
        assert!(first.await.unwrap().is_ok());
        let _ = second.await.unwrap();
        assert!(refused > 0, "with the slots taken, callers must be refused");
    }

    #[tokio::test]
    async fn a_cancelled_caller_keeps_its_slot_until_the_hash_ends() {
        let slow = Argon2Config { memory_kib: 8 * 1024, iterations: 16, ..cheap() };
        let hasher = pool(&slow, 1, 1);
        let call = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(Secret::new("a")).await })
        };
        // Let it reach the worker, then cancel the caller.
        while hasher.busy_workers() == 0 {
            tokio::task::yield_now().await;
        }
        call.abort();
        assert_eq!(hasher.busy_workers(), 1, "the running hash still holds the worker");
        while hasher.busy_workers() == 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(hasher.hash(Secret::new("b")).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_login_during_a_batch_does_not_wait_for_the_whole_batch() {
        let slow = Argon2Config { memory_kib: 4 * 1024, iterations: 4, ..cheap() };
        let hasher = pool(&slow, 1, 4);
        let batch = {
            let hasher = hasher.clone();
            tokio::spawn(
                async move { hasher.hash_many((0..12).map(|i| Secret::new(format!("pw{i}"))).collect()).await },
            )
        };
        while hasher.inner.background.busy() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(hasher.verify(Secret::new("x"), None).await.unwrap(), Verification::Mismatch);
        assert!(!batch.is_finished(), "the login was served while the batch hashed");
        assert_eq!(batch.await.unwrap().unwrap().len(), 12);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_leave_every_admission_slot_to_logins() {
        let slow = Argon2Config { memory_kib: 4 * 1024, iterations: 4, ..cheap() };
        // One worker and one waiting place, both left to logins while two batches run.
        let hasher = pool(&slow, 1, 1);
        let batches: Vec<_> = (0..2)
            .map(|b| {
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    hasher.hash_many((0..4).map(|i| Secret::new(format!("pw{b}{i}"))).collect()).await
                })
            })
            .collect();
        while hasher.inner.background.busy() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(hasher.inner.admission.available_permits(), 2, "the batches hold no slot");
        assert_eq!(hasher.verify(Secret::new("x"), None).await.unwrap(), Verification::Mismatch);
        for batch in batches {
            assert_eq!(batch.await.unwrap().unwrap().len(), 4);
        }
        assert_eq!(hasher.hashes_made(), 8);
        assert_eq!(hasher.inner.admission.available_permits(), 2, "every slot is given back");
    }

    #[tokio::test]
    async fn a_batch_of_one_is_hashed_in_the_interactive_lane() {
        let slow = Argon2Config { memory_kib: 16 * 1024, iterations: 8, ..cheap() };
        let hasher = pool(&slow, 1, 1);
        let single = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash_many(vec![Secret::new("pw")]).await })
        };
        let started = async {
            while hasher.busy_workers() == 0 && !single.is_finished() {
                tokio::task::yield_now().await;
            }
            hasher.busy_workers()
        };
        assert_eq!(started.await, 1, "the single hash ran on the interactive worker");
        assert_eq!(hasher.inner.background.busy(), 0);
        assert_eq!(single.await.unwrap().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_batch_hashes_everything_in_order() {
        let hasher = pool(&cheap(), 2, 1);
        let secrets: Vec<Secret> = (0..10).map(|i| Secret::new(format!("pw{i}"))).collect();
        let hashes = hasher.hash_many(secrets).await.unwrap();
        for (i, hash) in hashes.into_iter().enumerate() {
            let verdict = hasher.verify(Secret::new(format!("pw{i}")), Some(hash)).await.unwrap();
            assert_eq!(verdict, Verification::Match { needs_rehash: false });
        }
    }
}
