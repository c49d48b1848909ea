//! The threads that run argon2: one per hashing worker, started once, each
//! with its own working memory, taking jobs from one FIFO queue.
//!
//! Dedicated threads rather than tokio's blocking pool: a worker that finds
//! another job waiting starts it at once on the core it is on. Handing every
//! hash to a blocking-pool thread woke a sleeping thread per hash, and the
//! scheduler often woke it on a core already running the other hash, while
//! the core that had just finished stayed idle: the server spent 5–8 % of
//! its CPU idle under a steady login load (docs/PERFORMANCE.md).

use std::{
    collections::VecDeque,
    panic::AssertUnwindSafe,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
};

use argon2::Block;
use tokio::sync::oneshot;

use crate::domain::Error;

/// A worker's argon2 memory: `blocks` blocks, allocated at its first hash and
/// kept. Allocating per hash let the allocator keep freed blocks around: with
/// two workers and OWASP parameters the server grew past 700 MiB under a
/// burst of logins.
pub struct Memory {
    blocks: usize,
    kept: Vec<Block>,
}

impl Memory {
    pub fn new(blocks: usize) -> Self {
        Self { blocks, kept: Vec::new() }
    }

    /// `blocks` blocks of memory: the kept buffer when that is its size, a
    /// buffer of its own otherwise (a hash stored with older parameters).
    pub fn with<T>(&mut self, blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        if blocks != self.blocks {
            return work(&mut vec![Block::new(); blocks]);
        }
        if self.kept.is_empty() {
            self.kept = vec![Block::new(); blocks];
        }
        work(&mut self.kept)
    }
}

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    busy: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Workers {
    shared: Arc<Shared>,
}

impl Workers {
    /// Starts `count` threads whose memory holds `blocks` argon2 blocks.
    pub fn start(count: usize, blocks: usize) -> Result<Self, Error> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), ready: Condvar::new() });
        for index in 0..count {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("identity-hash-{index}"))
                .spawn(move || work(&shared, Memory::new(blocks)))
                .map_err(|e| Error::internal(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(Self { shared })
    }

    /// Runs `job` on the first free worker, after the jobs queued before it.
    /// A job whose caller has gone before a worker takes it is skipped; one
    /// already running finishes (blocking work cannot be interrupted), and
    /// whatever it owns — such as the caller's admission slot — is dropped
    /// only then.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Memory) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |memory: &mut Memory| {
            if answer.is_closed() {
                return;
            }
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| job(memory)))
                .unwrap_or_else(|_| Err(Error::internal("a password hash panicked")));
            let _ = answer.send(result);
        });
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(Error::internal("the hashing workers have stopped"));
            }
            state.jobs.push_back(job);
        }
        self.shared.ready.notify_one();
        answered.await.map_err(|_| Error::internal("a hashing worker dropped a job"))?
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// Workers running a job.
    pub fn busy(&self) -> usize {
        self.shared.lock().busy
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

/// A worker's loop: while jobs are queued it goes from one to the next
/// without sleeping.
fn work(shared: &Shared, mut memory: Memory) {
    let mut state = shared.lock();
    loop {
        if let Some(job) = state.jobs.pop_front() {
            state.busy += 1;
            drop(state);
            job(&mut memory);
            state = shared.lock();
            state.busy -= 1;
        } else if state.closed {
            return;
        } else {
            state = shared.ready.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_of_the_configured_size_is_allocated_once_and_kept() {
        let mut memory = Memory::new(8);
        let first = memory.with(8, |blocks| blocks.as_ptr());
        assert_eq!(memory.with(8, |blocks| blocks.as_ptr()), first);
        // Another size gets memory of its own and leaves the kept buffer alone.
        assert_eq!(memory.with(16, |blocks| blocks.len()), 16);
        assert_eq!(memory.with(8, |blocks| (blocks.as_ptr(), blocks.len())), (first, 8));
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_its_worker_keeps_working() {
        let workers = Workers::start(1, 8).unwrap();
        let failed = workers.run(|_| -> Result<(), Error> { panic!("boom") }).await;
        assert!(matches!(failed, Err(Error::Internal(ref m)) if m.contains("panicked")), "{failed:?}");
        assert_eq!(workers.run(|memory| Ok(memory.with(8, |blocks| blocks.len()))).await.unwrap(), 8);
    }

    #[tokio::test]
    async fn a_job_whose_caller_left_before_it_started_is_skipped() {
        let workers = Arc::new(Workers::start(1, 8).unwrap());
        let (release, released) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let workers = Arc::clone(&workers);
            tokio::spawn(async move { workers.run(move |_| Ok(released.recv().ok())).await })
        };
        while workers.busy() == 0 {
            tokio::task::yield_now().await;
        }
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let abandoned = {
            let (workers, ran) = (Arc::clone(&workers), Arc::clone(&ran));
            tokio::spawn(async move {
                let job = move |_: &mut Memory| {
                    ran.store(true, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                };
                workers.run(job).await
            })
        };
        while workers.queued() == 0 {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        release.send(()).unwrap();
        assert_eq!(blocker.await.unwrap().unwrap(), Some(()));
        // The queue is FIFO: once a later job has run, the abandoned one was taken and skipped.
        workers.run(|_| Ok(())).await.unwrap();
        assert_eq!(workers.queued(), 0);
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "nobody was waiting for it");
    }
}
