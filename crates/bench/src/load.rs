//! The load generator: many concurrent callers of one operation for a fixed
//! time after a warm-up, closed-loop (each caller sends its next request when
//! the previous one answered) or paced at a fixed total rate.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::procfs::CpuSnapshot;

/// One request's outcome: `Err` carries the gRPC code (or another label).
pub type Outcome = Result<(), String>;
pub type OpFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Makes the request of caller `worker`; `seq` counts that caller's requests.
pub type Operation = Arc<dyn Fn(usize, u64) -> OpFuture + Send + Sync>;

#[derive(Clone, Copy, Debug)]
pub struct Phase {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests per second across all callers; `None` is closed-loop.
    pub rate: Option<f64>,
}

/// What one measured phase saw.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Successful requests that completed inside the measured window.
    pub completed: u64,
    pub window: Duration,
    /// Latencies of successful requests started inside the window, sorted, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Failed requests by code.
    pub errors: BTreeMap<String, u64>,
    /// CPU used by the load generator and the server during the window.
    pub cpu: CpuSnapshot,
}

impl Sample {
    pub fn throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 { self.completed as f64 / secs } else { 0.0 }
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) of latency, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        quantile(&self.latencies_us, q).map(|us| us as f64 / 1000.0)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// CPU time of server and load generator per successful request, in ms:
    /// unlike throughput, it does not depend on how much of the machine others use.
    pub fn cpu_ms_per_op(&self) -> Option<f64> {
        (self.completed > 0 && self.cpu.server > 0.0)
            .then(|| (self.cpu.own + self.cpu.server) * 1000.0 / self.completed as f64)
    }

    /// The load generator's share of [`Sample::cpu_ms_per_op`]: what it took
    /// from the server on the same cores.
    pub fn client_cpu_ms_per_op(&self) -> Option<f64> {
        (self.completed > 0 && self.cpu.server > 0.0).then(|| self.cpu.own * 1000.0 / self.completed as f64)
    }

    /// The server's share of [`Sample::cpu_ms_per_op`].
    pub fn server_cpu_ms_per_op(&self) -> Option<f64> {
        (self.completed > 0 && self.cpu.server > 0.0).then(|| self.cpu.server * 1000.0 / self.completed as f64)
    }

    /// Adds another phase of the same measurement (interleaved rounds).
    pub fn merge(&mut self, other: Sample) {
        self.completed += other.completed;
        self.window += other.window;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
        for (code, count) in other.errors {
            *self.errors.entry(code).or_default() += count;
        }
        self.cpu.own += other.cpu.own;
        self.cpu.server += other.cpu.server;
    }
}

/// Nearest-rank quantile of sorted values.
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

#[derive(Default)]
struct WorkerTally {
    completed: u64,
    latencies_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

/// Runs `op` from `phase.concurrency` callers and measures the window after
/// the warm-up, including the CPU this process and `server` use in it.
pub async fn run(phase: Phase, server: Option<u32>, op: Operation) -> Sample {
    let concurrency = phase.concurrency.max(1);
    let start = Instant::now();
    let measure_from = start + phase.warmup;
    let end = measure_from + phase.duration;
    let tickets = phase.rate.filter(|r| *r > 0.0).map(|rate| pace(rate, start, end));
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = CpuSnapshot::take(server);
        tokio::time::sleep_until(end.into()).await;
        CpuSnapshot::take(server).since(before)
    });
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let op = Arc::clone(&op);
        let tickets = tickets.clone();
        workers.spawn(async move {
            let mut tally = WorkerTally::default();
            let mut seq = 0;
            loop {
                // Paced, a request counts from its ticket's release: a ticket that waited
                // for a free caller counts that wait (no coordinated omission).
                let sent = match &tickets {
                    Some(tickets) => match tickets.lock().await.recv().await {
                        Some(released) => released,
                        None => break,
                    },
                    None => Instant::now(),
                };
                if sent >= end {
                    break;
                }
                let outcome = op(worker, seq).await;
                seq += 1;
                let done = Instant::now();
                // Throughput counts completions inside the window, whenever they started.
                if outcome.is_ok() && (measure_from..=end).contains(&done) {
                    tally.completed += 1;
                }
                if sent >= measure_from {
                    match outcome {
                        Ok(()) => tally.latencies_us.push(micros(done - sent)),
                        Err(code) => *tally.errors.entry(code).or_default() += 1,
                    }
                }
            }
            tally
        });
    }
    let mut sample = Sample { window: phase.duration, ..Sample::default() };
    while let Some(joined) = workers.join_next().await {
        let Ok(tally) = joined else {
            *sample.errors.entry("caller panicked".to_owned()).or_default() += 1;
            continue;
        };
        sample.completed += tally.completed;
        sample.latencies_us.extend(tally.latencies_us);
        for (code, count) in tally.errors {
            *sample.errors.entry(code).or_default() += count;
        }
    }
    sample.latencies_us.sort_unstable();
    sample.cpu = cpu.await.unwrap_or_default();
    sample
}

/// Releases `rate` tickets per second, evenly, from `start` until `end`, each
/// stamped with when it was released, so the load generator's own lateness
/// is not charged to the service. A thread of its own times them with the
/// OS's fine-grained sleep: tokio's timer ticks by the millisecond, which
/// bunched a paced 15,000/s into bursts of 15 requests at once.
fn pace(rate: f64, start: Instant, end: Instant) -> Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Instant>>> {
    let (release, tickets) = mpsc::unbounded_channel();
    let every = Duration::from_secs_f64(1.0 / rate);
    std::thread::spawn(move || {
        let mut due = start;
        while due < end {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if release.send(Instant::now()).is_err() {
                return;
            }
            due += every;
        }
    });
    Arc::new(tokio::sync::Mutex::new(tickets))
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pacer_releases_exactly_the_rate_in_time_order() {
        let start = Instant::now();
        let end = start + Duration::from_millis(50);
        let tickets = pace(1_000.0, start, end);
        let mut tickets = tickets.lock().await;
        let mut released = Vec::new();
        while let Some(at) = tickets.recv().await {
            released.push(at);
        }
        // Ticket k is due at start + k ms: 50 of them before the end, however late the thread ran.
        assert_eq!(released.len(), 50);
        assert!(released[0] >= start);
        assert!(released.windows(2).all(|pair| pair[0] <= pair[1]));
    }
}
