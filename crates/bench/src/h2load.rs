//! gRPC load from `h2load` (nghttp2's HTTP/2 load generator, written in C), a
//! process of its own: the load generator's CPU is then not the bench's and
//! is small next to a tonic client's, so ratios to a trivial call are not
//! flattened by a heavy client on the same cores (issue #24). A unary gRPC
//! call is an HTTP/2 POST whose body is one frame: a zero byte, the message
//! length as four big-endian bytes, then the protobuf bytes.
//!
//! h2load sees HTTP statuses only, and a gRPC failure travels as HTTP 200
//! with `grpc-status` in the trailers: each scenario checks one call of its
//! kind with the gRPC client before and after the load.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{
    load::{Phase, Sample},
    procfs::{self, CpuSnapshot},
    server::ServerUnderTest,
};

/// One h2load process: every request it sends is `frame` posted to `path`.
#[derive(Clone, Debug)]
pub struct Client {
    pub path: String,
    pub frame: Vec<u8>,
}

impl Client {
    /// `method` (`/package.Service/Method`) called with `message`.
    pub fn unary(method: &str, message: &impl prost::Message) -> Self {
        Self { path: method.to_owned(), frame: frame(&message.encode_to_vec()) }
    }
}

/// The gRPC length-prefixed frame of an uncompressed message.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let length = u32::try_from(message.len()).expect("a message under 4 GiB");
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// [`run`] with the bench's connection count.
pub async fn phase(
    bench: &crate::Bench,
    server: &ServerUnderTest,
    clients: &[Client],
    phase: Phase,
) -> anyhow::Result<(Sample, Option<u64>)> {
    run(server, &bench.scratch, clients, bench.connections(), phase).await
}

/// Runs `clients` as concurrent h2load processes against `server` for one
/// phase: `connections` HTTP/2 connections in all, shared out among the
/// processes, and `phase.concurrency` streams in flight in all. Paced, the
/// rate is spread evenly over the connections (h2load paces each one).
/// Returns the measured window's sample, with `cpu.own` the h2load
/// processes' CPU, and the server's peak RSS in it.
pub async fn run(
    server: &ServerUnderTest,
    scratch: &Path,
    clients: &[Client],
    connections: usize,
    phase: Phase,
) -> anyhow::Result<(Sample, Option<u64>)> {
    anyhow::ensure!(!clients.is_empty(), "h2load needs a request to send");
    let per_client = connections.div_ceil(clients.len()).max(1);
    let total_connections = per_client * clients.len();
    let streams = phase.concurrency.div_ceil(total_connections).max(1);
    server.reset_peak_rss();
    let mut running = Vec::with_capacity(clients.len());
    for (index, client) in clients.iter().enumerate() {
        let dir = scratch.join(format!("h2load-{}-{index}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let data = dir.join("frame.bin");
        std::fs::write(&data, &client.frame)?;
        let log = dir.join("requests.tsv");
        let mut command = Command::new("h2load");
        command
            .args(["-t", "1", "-c", &per_client.to_string(), "-m", &streams.to_string()])
            .arg(format!("--duration={}", seconds(phase.duration)))
            .arg(format!("--warm-up-time={}", seconds(phase.warmup)))
            .arg("-d")
            .arg(&data)
            .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
            .arg(format!("--log-file={}", log.display()));
        if let Some(rate) = phase.rate.filter(|r| *r > 0.0) {
            command.arg(format!("--rps={:.3}", rate / total_connections as f64));
        }
        command.arg(format!("{}{}", server.grpc_url(), client.path));
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = command.spawn().context("cannot start h2load (apt-get install nghttp2-client)")?;
        running.push((child, dir, log));
    }
    let pids: Vec<u32> = running.iter().map(|(child, ..)| child.id()).collect();
    // h2load measures from the end of its warm-up; CPU is read over the same window.
    let started = Instant::now();
    tokio::time::sleep_until((started + phase.warmup).into()).await;
    let before = cpu(server.pid(), &pids);
    tokio::time::sleep_until((started + phase.warmup + phase.duration).into()).await;
    let used = cpu(server.pid(), &pids).since(before);
    let mut sample = Sample { window: phase.duration, cpu: used, ..Sample::default() };
    for (child, dir, log) in running {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
        if !output.status.success() {
            bail!("h2load failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        sample.merge(parse(&stdout, &log, phase.duration)?);
        let _ = std::fs::remove_dir_all(&dir);
    }
    sample.window = phase.duration;
    sample.cpu = used;
    Ok((sample, server.peak_rss_kib()))
}

fn seconds(duration: Duration) -> String {
    // h2load takes whole numbers with a unit.
    format!("{}ms", duration.as_millis().max(1))
}

fn cpu(server: u32, h2load: &[u32]) -> CpuSnapshot {
    CpuSnapshot {
        own: h2load.iter().filter_map(|pid| procfs::cpu_seconds(*pid)).sum(),
        server: procfs::cpu_seconds(server).unwrap_or(0.0),
    }
}

/// One h2load run's figures: successes and stream failures from its summary, which
/// counts the measured window only; latencies from its request log, keeping
/// the requests that started in the window's span (the log's last
/// `duration`), as the summary does.
fn parse(stdout: &str, log: &Path, duration: Duration) -> anyhow::Result<Sample> {
    let mut sample = Sample::default();
    let requests = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("requests: "))
        .with_context(|| format!("no `requests:` line in h2load's output:\n{stdout}"))?;
    for part in requests.split(',') {
        let mut words = part.split_whitespace();
        let (Some(count), Some(what)) = (words.next(), words.next()) else { continue };
        let count: u64 = count.parse().with_context(|| format!("h2load's `requests:` line: {requests}"))?;
        match what {
            "succeeded" => sample.completed = count,
            // Refused statuses are counted from the log, by status.
            "errored" | "timeout" if count > 0 => {
                sample.errors.insert(format!("h2load {what}"), count);
            }
            _ => {}
        }
    }
    let mut entries = Vec::new();
    let file = std::fs::File::open(log).with_context(|| format!("h2load's log {}", log.display()))?;
    for line in BufReader::new(file).lines() {
        let line = line?;
        let mut columns = line.split('\t');
        let (Some(start), Some(status), Some(elapsed)) = (columns.next(), columns.next(), columns.next()) else {
            continue;
        };
        let (Ok(start), Ok(status), Ok(elapsed)) = (start.parse::<u64>(), status.parse::<i64>(), elapsed.parse())
        else {
            continue;
        };
        entries.push((start, status, elapsed));
    }
    let last_start = entries.iter().map(|(start, ..)| *start).max().unwrap_or(0);
    let from = last_start.saturating_sub(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    for (start, status, elapsed) in entries {
        if start < from {
            continue;
        }
        if status == 200 {
            sample.latencies_us.push(elapsed);
        } else {
            *sample.errors.entry(format!("HTTP {status}")).or_default() += 1;
        }
    }
    sample.latencies_us.sort_unstable();
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_an_empty_message_as_five_zero_bytes() {
        assert_eq!(frame(&[]), vec![0, 0, 0, 0, 0]);
        assert_eq!(frame(&[1, 2, 3]), vec![0, 0, 0, 0, 3, 1, 2, 3]);
    }

    #[test]
    fn reads_the_summary_and_the_window_of_the_log() {
        let dir = std::env::temp_dir().join(format!("h2load-parse-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log.tsv");
        // A warm-up request 3 s before the window, then two in it, one refused.
        std::fs::write(&log, "1000000\t200\t900\n4000000\t200\t120\n5000000\t503\t80\n").unwrap();
        let stdout =
            "finished in 2.00s\nrequests: 9 total, 9 started, 9 done, 8 succeeded, 1 failed, 2 errored, 0 timeout\n";
        let sample = parse(stdout, &log, Duration::from_secs(2)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(sample.completed, 8);
        assert_eq!(sample.latencies_us, vec![120]);
        assert_eq!(sample.errors.get("h2load errored"), Some(&2));
        assert_eq!(sample.errors.get("HTTP 503"), Some(&1));
    }
}
