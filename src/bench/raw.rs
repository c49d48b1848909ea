//! The physical limits measured in-process: argon2id hashes and verifies with
//! the server's parameters on one thread per hashing worker, no I/O at all.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version};

use crate::config::Argon2Config;

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
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub completed: u64,
    pub per_second: f64,
}

/// What `threads` threads hashing flat out complete in `duration` after `warmup`.
pub async fn argon2_throughput(
    argon2: &Argon2Config,
    work: Work,
    threads: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let params =
        Params::new(argon2.memory_kib, argon2.iterations, argon2.parallelism, None).context("argon2 parameters")?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let password = "correct horse battery staple, raw";
    let stored = argon.hash_password(password.as_bytes()).map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?.to_string();
    let counted = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(threads);
    for _ in 0..threads.max(1) {
        let (argon, stored) = (argon.clone(), stored.clone());
        let (counted, measuring, stop) = (Arc::clone(&counted), Arc::clone(&measuring), Arc::clone(&stop));
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let parsed = PasswordHash::new(&stored).map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?;
            while !stop.load(Ordering::Relaxed) {
                match work {
                    Work::Hash => argon.hash_password(password.as_bytes()).map(drop),
                    Work::Verify => argon.verify_password(password.as_bytes(), &parsed),
                }
                .map_err(|e| anyhow::anyhow!("argon2 {}: {e}", work.label()))?;
                if measuring.load(Ordering::Relaxed) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    let done = counted.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || {
        for handle in handles {
            handle.join().map_err(|_| anyhow::anyhow!("an argon2 thread panicked"))??;
        }
        anyhow::Ok(())
    })
    .await??;
    Ok(Rate { completed: done, per_second: done as f64 / elapsed.as_secs_f64() })
}
