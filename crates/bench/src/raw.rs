//! The physical limits measured in-process, no I/O at all: argon2id hashes and
//! verifies with the server's parameters, and Ed25519 signature checks of a
//! real access token, on one thread per core (or hashing worker).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use rand::Rng as _;
use subtle::ConstantTimeEq as _;

use super::procfs::CpuSnapshot;
use identity::config::Argon2Config;

/// What the raw threads hash; its value does not change the cost.
const PASSWORD: &[u8] = b"correct horse battery staple, raw";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Hash,
    Verify,
}

impl Work {
    pub fn label(self) -> &'static str {
        match self {
            Work::Hash => "hash",
            Work::Verify => "verify",
        }
    }
}

/// Operations completed in the measured window, and per second.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    pub completed: u64,
    pub elapsed: Duration,
    /// CPU this process used in the window: the raw threads, nearly alone.
    pub cpu_s: f64,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.completed as f64 / secs } else { 0.0 }
    }

    /// CPU time per operation, in ms.
    pub fn cpu_ms_per_op(&self) -> Option<f64> {
        (self.completed > 0 && self.cpu_s > 0.0).then(|| self.cpu_s * 1000.0 / self.completed as f64)
    }

    /// Adds another window of the same measurement (interleaved rounds).
    pub fn merge(&mut self, other: Rate) {
        self.completed += other.completed;
        self.elapsed += other.elapsed;
        self.cpu_s += other.cpu_s;
    }
}

/// One thread's repeated operation.
pub type Job = Box<dyn FnMut() -> anyhow::Result<()> + Send>;

/// Runs `make()`'s job flat out on each of `threads` threads and counts what
/// completes in `duration` after `warmup`.
pub async fn spin(
    threads: usize,
    warmup: Duration,
    duration: Duration,
    make: impl Fn() -> anyhow::Result<Job>,
) -> anyhow::Result<Rate> {
    let counted = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(threads);
    for _ in 0..threads.max(1) {
        let mut job = make()?;
        let (counted, measuring, stop) = (Arc::clone(&counted), Arc::clone(&measuring), Arc::clone(&stop));
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            while !stop.load(Ordering::Relaxed) {
                job()?;
                if measuring.load(Ordering::Relaxed) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let cpu_before = CpuSnapshot::take(None);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    let completed = counted.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu_s = CpuSnapshot::take(None).since(cpu_before).own;
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || {
        for handle in handles {
            handle.join().map_err(|_| anyhow::anyhow!("a raw-limit thread panicked"))??;
        }
        anyhow::Ok(())
    })
    .await??;
    Ok(Rate { completed, elapsed, cpu_s })
}

/// argon2id with the server's parameters: the computation alone, in memory
/// allocated once per thread as the server's pool does.
pub async fn argon2_throughput(
    argon2: &Argon2Config,
    work: Work,
    threads: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let params =
        Params::new(argon2.memory_kib, argon2.iterations, argon2.parallelism, None).context("argon2 parameters")?;
    let blocks = params.block_count();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    spin(threads, warmup, duration, || {
        let argon = argon.clone();
        let mut memory = vec![Block::new(); blocks];
        let mut salt = [7u8; 16];
        let mut output = [0u8; 32];
        let unexpected = [0u8; 32];
        Ok(Box::new(move || {
            if work == Work::Hash {
                rand::rng().fill_bytes(&mut salt);
            }
            argon
                .hash_password_into_with_memory(PASSWORD, &salt, &mut output, &mut memory)
                .map_err(|e| anyhow::anyhow!("argon2 {}: {e}", work.label()))?;
            // A verify ends in a constant-time comparison; its cost is noise next to the hash.
            if work == Work::Verify && bool::from(output.ct_eq(&unexpected)) {
                anyhow::bail!("argon2 produced zeros");
            }
            Ok(())
        }))
    })
    .await
}

/// The Ed25519 check of `token` (a compact JWS) with `public_key` (32 raw
/// bytes), already decoded: what no token validation can avoid.
pub async fn ed25519_throughput(
    token: &str,
    public_key: &[u8],
    threads: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let (message, signature) = token.rsplit_once('.').context("a compact JWS")?;
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature)?)?;
    let key = VerifyingKey::from_bytes(public_key.try_into().context("a 32-byte Ed25519 key")?)?;
    key.verify(message.as_bytes(), &signature).context("the token's signature does not verify")?;
    let message = message.as_bytes().to_vec();
    spin(threads, warmup, duration, || {
        let message = message.clone();
        Ok(Box::new(move || {
            key.verify(&message, &signature).context("Ed25519 verify")?;
            Ok(())
        }))
    })
    .await
}

/// Sealing a TOTP secret under a data key and opening it again, bound to its
/// row as the service does: what encryption at rest adds to an enrolment and
/// a passcode login.
pub async fn data_key_throughput(threads: usize, warmup: Duration, duration: Duration) -> anyhow::Result<Rate> {
    use identity::{crypto::data_keys::DataKeys, store::secrets::totp_aad};
    let keys = Arc::new(DataKeys::ephemeral());
    spin(threads, warmup, duration, || {
        let keys = Arc::clone(&keys);
        let aad = totp_aad("0190a0a0-0000-7000-8000-000000000001");
        let mut secret = [0u8; 20];
        rand::rng().fill_bytes(&mut secret);
        Ok(Box::new(move || {
            let sealed = keys.seal(&aad, &secret);
            let opened = keys.open(&sealed.key_id, &aad, &sealed.bytes).context("open a sealed TOTP secret")?;
            anyhow::ensure!(opened == secret, "a sealed TOTP secret opened to something else");
            Ok(())
        }))
    })
    .await
}
