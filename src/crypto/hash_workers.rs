//! The threads that run argon2: one per hashing worker, started once, each
//! with its own working memory, taking jobs from one FIFO queue.
//!
//! A pool is one lane: the interactive lane runs at the process's priority;
//! the background lane (batch resets) runs its threads under Linux's
//! `SCHED_IDLE`, so the kernel gives them only the CPU time nothing else
//! wants, and while the runtime's threads are busy serving calls each of its
//! threads also rests between hashes. The priority alone was not enough: on
//! the measured virtual machine two idle-priority threads spinning beside a
//! gRPC load cut its throughput by a fifth, since every wake-up of a runtime
//! thread then preempts a running thread instead of finding an idle core
//! (docs/decisions.md, "Batches hash in a lane of their own").
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
    time::{Duration, Instant},
};

use argon2::Block;
use tokio::sync::oneshot;

use crate::domain::Error;

/// A worker's argon2 memory: `blocks` blocks, allocated at its first hash and
/// kept (by the background lane, until it has been idle a while). Allocating
/// per hash let the allocator keep freed blocks around: with two workers and
/// OWASP parameters the server grew past 700 MiB under a burst of logins.
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

    fn is_kept(&self) -> bool {
        !self.kept.is_empty()
    }

    fn release(&mut self) {
        self.kept = Vec::new();
    }
}

/// How busy the threads that serve calls have been: the async runtime's
/// workers' busy time, summed, and how many workers there are. Every gRPC
/// call and every page does its work there; argon2 and SQLite do not.
#[derive(Clone)]
pub struct CallLoad(Arc<dyn Fn() -> (Duration, usize) + Send + Sync>);

impl CallLoad {
    /// The runtime this is called on; outside one (a command, a plain test),
    /// a load that never rises.
    pub fn of_current_runtime() -> Self {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => Self::from_fn(move || {
                let metrics = handle.metrics();
                let workers = metrics.num_workers();
                ((0..workers).map(|worker| metrics.worker_total_busy_duration(worker)).sum(), workers)
            }),
            Err(_) => Self::from_fn(|| (Duration::ZERO, 1)),
        }
    }

    pub fn from_fn(reading: impl Fn() -> (Duration, usize) + Send + Sync + 'static) -> Self {
        Self(Arc::new(reading))
    }

    fn reading(&self) -> (Duration, usize) {
        (self.0)()
    }
}

impl std::fmt::Debug for CallLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallLoad")
    }
}

/// Above this share of their time busy, the threads serving calls count as
/// busy, and the background lane keeps to its share. A saturating gRPC load
/// keeps them 90 % busy or more; a hundred calls a second, well under 1 %.
const BUSY: f64 = 0.25;

/// How a background thread yields to calls.
#[derive(Clone, Debug)]
pub struct Pacing {
    pub load: CallLoad,
    /// While the threads serving calls are busy, the share of its time
    /// (percent) a background thread may work.
    pub busy_share_percent: u32,
    /// What one hash costs on a quiet machine: the unit of rest. The
    /// thread's own elapsed time would not do: at idle priority beside a
    /// busy runtime a hash can take many times its cost in wall time.
    pub hash_cost: Duration,
    /// How long an idle background thread keeps its memory before giving it
    /// back: long enough to span the gaps between one batch's hashes.
    pub keep_memory: Duration,
}

impl Pacing {
    /// The rest after a hash during which the threads serving calls were
    /// busy `busy_fraction` of their time.
    fn rest(&self, busy_fraction: f64) -> Duration {
        if busy_fraction < BUSY || self.busy_share_percent >= 100 {
            return Duration::ZERO;
        }
        let share = self.busy_share_percent.max(1);
        self.hash_cost * (100 - share) / share
    }
}

/// Whose work a pool's threads do, and so how they are scheduled.
#[derive(Debug, Clone)]
pub enum Lane {
    /// Calls a person or a service is waiting on: the process's own priority.
    Interactive,
    /// Work nobody waits on interactively (a batch reset): `SCHED_IDLE`, a
    /// rest after each hash while calls keep the runtime busy, and memory
    /// given back once idle for a while: batches are rare.
    Background(Pacing),
}

impl Lane {
    fn load(&self) -> Option<(Duration, usize)> {
        match self {
            Lane::Background(pacing) => Some(pacing.load.reading()),
            Lane::Interactive => None,
        }
    }

    /// The rest after a job that took `elapsed`, from the load read before it.
    fn rest_after(&self, before: Option<(Duration, usize)>, elapsed: Duration) -> Duration {
        let (Lane::Background(pacing), Some((busy_before, _))) = (self, before) else { return Duration::ZERO };
        let (busy_now, workers) = pacing.load.reading();
        let available = elapsed.as_secs_f64() * workers.max(1) as f64;
        let busy_fraction =
            if available > 0.0 { busy_now.saturating_sub(busy_before).as_secs_f64() / available } else { 0.0 };
        pacing.rest(busy_fraction)
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
    /// Starts `count` threads of `lane` whose memory holds `blocks` argon2 blocks.
    pub fn start(lane: Lane, count: usize, blocks: usize) -> Result<Self, Error> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), ready: Condvar::new() });
        let prefix = match lane {
            Lane::Interactive => "identity-hash",
            Lane::Background { .. } => "identity-batch",
        };
        for index in 0..count {
            let (shared, lane) = (Arc::clone(&shared), lane.clone());
            std::thread::Builder::new()
                .name(format!("{prefix}-{index}"))
                .spawn(move || {
                    if matches!(lane, Lane::Background { .. }) {
                        lower_priority();
                    }
                    work(&shared, &lane, Memory::new(blocks))
                })
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

/// Puts the calling thread under `SCHED_IDLE`. Lowering one's own priority
/// needs no privilege; where the platform refuses it anyway the lane runs
/// at normal priority and says so, since batches then compete with logins
/// for the cores.
#[cfg(target_os = "linux")]
fn lower_priority() {
    use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    let native = thread_priority::thread_native_id();
    let set = thread_priority::set_thread_priority_and_policy(native, ThreadPriority::Min, idle);
    // The crate also resets the nice value, which a process started with a
    // positive one may not: only the policy matters here.
    if let Err(error) = set
        && thread_priority::thread_schedule_policy().ok() != Some(idle)
    {
        tracing::warn!(?error, "a batch hashing thread could not lower its priority; batches will compete with logins");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {
    tracing::warn!(
        "batch hashing runs at normal priority here (SCHED_IDLE is Linux's); batches will compete with logins"
    );
}

/// A worker's loop: while jobs are queued it goes from one to the next
/// without sleeping (the background lane resting after each while calls
/// keep the runtime busy).
fn work(shared: &Shared, lane: &Lane, mut memory: Memory) {
    let mut state = shared.lock();
    loop {
        if let Some(job) = state.jobs.pop_front() {
            state.busy += 1;
            drop(state);
            let (before, started) = (lane.load(), Instant::now());
            job(&mut memory);
            std::thread::sleep(lane.rest_after(before, started.elapsed()));
            state = shared.lock();
            state.busy -= 1;
        } else if state.closed {
            return;
        } else if let Lane::Background(pacing) = lane
            && memory.is_kept()
        {
            let (guard, waited) =
                shared.ready.wait_timeout(state, pacing.keep_memory).unwrap_or_else(PoisonError::into_inner);
            state = guard;
            if waited.timed_out() && state.jobs.is_empty() {
                // Freed outside the lock: a runtime thread queueing a job must
                // never wait for an idle-priority thread's munmap.
                drop(state);
                memory.release();
                state = shared.lock();
            }
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
        let workers = Workers::start(Lane::Interactive, 1, 8).unwrap();
        let failed = workers.run(|_| -> Result<(), Error> { panic!("boom") }).await;
        assert!(matches!(failed, Err(Error::Internal(ref m)) if m.contains("panicked")), "{failed:?}");
        assert_eq!(workers.run(|memory| Ok(memory.with(8, |blocks| blocks.len()))).await.unwrap(), 8);
    }

    #[tokio::test]
    async fn a_job_whose_caller_left_before_it_started_is_skipped() {
        let workers = Arc::new(Workers::start(Lane::Interactive, 1, 8).unwrap());
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

    /// A runtime whose threads are busy `fraction` of the time since this was made.
    fn load(fraction: f64) -> CallLoad {
        let since = Instant::now();
        CallLoad::from_fn(move || (since.elapsed().mul_f64(fraction * 2.0), 2))
    }

    fn pacing(load: CallLoad, busy_share_percent: u32, hash_cost: Duration) -> Pacing {
        Pacing { load, busy_share_percent, hash_cost, keep_memory: Duration::from_millis(20) }
    }

    fn background() -> Lane {
        Lane::Background(pacing(load(0.0), 10, Duration::from_millis(1)))
    }

    #[test]
    fn a_batch_thread_rests_only_beside_busy_call_threads_to_keep_to_its_share() {
        let cost = Duration::from_millis(20);
        let share = |percent| pacing(load(0.0), percent, cost);
        assert_eq!(share(10).rest(0.0), Duration::ZERO, "nothing to yield to");
        assert_eq!(share(10).rest(0.2), Duration::ZERO, "a fifth busy is not busy");
        assert_eq!(share(10).rest(0.25), Duration::from_millis(180), "20 ms of every 200");
        assert_eq!(share(25).rest(0.9), Duration::from_millis(60));
        assert_eq!(share(1).rest(1.0), Duration::from_millis(1980));
        assert_eq!(share(100).rest(1.0), Duration::ZERO, "flat out");
    }

    #[test]
    fn the_busy_fraction_is_the_call_threads_busy_time_over_the_time_they_had() {
        let busy = Arc::new(std::sync::Mutex::new(Duration::ZERO));
        let reading = Arc::clone(&busy);
        let lane = Lane::Background(pacing(
            CallLoad::from_fn(move || (*reading.lock().unwrap(), 4)),
            10,
            Duration::from_millis(20),
        ));
        let before = lane.load();
        // Four threads for 100 ms had 400 ms: 90 ms busy is under a quarter, 100 ms is not.
        *busy.lock().unwrap() = Duration::from_millis(90);
        assert_eq!(lane.rest_after(before, Duration::from_millis(100)), Duration::ZERO);
        *busy.lock().unwrap() = Duration::from_millis(100);
        assert_eq!(lane.rest_after(before, Duration::from_millis(100)), Duration::from_millis(180));
        assert_eq!(Lane::Interactive.rest_after(None, Duration::from_millis(100)), Duration::ZERO, "calls never rest");
    }

    #[tokio::test]
    async fn a_batch_thread_beside_busy_call_threads_rests_between_jobs() {
        let rest = Duration::from_millis(300);
        // Busy all the time, a 50 % share: each job is followed by a rest of one hash cost.
        let workers = Workers::start(Lane::Background(pacing(load(1.0), 50, rest)), 1, 8).unwrap();
        let started = Instant::now();
        workers.run(|_| Ok(())).await.unwrap();
        workers.run(|_| Ok(())).await.unwrap();
        assert!(started.elapsed() >= rest, "the second job waited for the rest after the first");
        // With the call threads idle, jobs follow each other at once.
        let idle = Workers::start(Lane::Background(pacing(load(0.0), 50, Duration::from_secs(60))), 1, 8).unwrap();
        let started = Instant::now();
        idle.run(|_| Ok(())).await.unwrap();
        idle.run(|_| Ok(())).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(30), "no rest with nothing to yield to");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_background_lane_runs_at_idle_priority_and_the_interactive_lane_does_not() {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        let policy = |lane| async move {
            let workers = Workers::start(lane, 1, 8).unwrap();
            workers
                .run(|_| thread_priority::thread_schedule_policy().map_err(|e| Error::internal(format!("{e:?}"))))
                .await
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        assert_eq!(policy(background()).await.unwrap(), idle);
        assert_ne!(policy(Lane::Interactive).await.unwrap(), idle);
    }

    #[tokio::test]
    async fn the_background_lane_keeps_its_memory_between_jobs_and_gives_it_back_once_idle() {
        let keep = Pacing { keep_memory: Duration::from_millis(250), ..pacing(load(0.0), 10, Duration::ZERO) };
        let workers = Workers::start(Lane::Background(keep), 1, 8).unwrap();
        let kept = |memory: &mut Memory| Ok(memory.is_kept());
        let first = workers
            .run(|memory| {
                memory.with(8, |_| ());
                Ok(memory.is_kept())
            })
            .await
            .unwrap();
        assert!(first);
        assert!(workers.run(kept).await.unwrap(), "kept for the batch's next hash");
        // Idle past `keep_memory`, the worker gives its memory back.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(!workers.run(kept).await.unwrap(), "given back once idle");
    }
}
