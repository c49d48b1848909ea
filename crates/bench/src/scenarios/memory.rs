//! Peak server memory while a burst of login attempts arrives at once: at
//! most 100 MiB plus one argon2 memory per hashing worker. Callers past the
//! hashing queue get RESOURCE_EXHAUSTED or wait; the server must not crash.

use std::{sync::Arc, time::Instant};

use tokio::sync::Barrier;

use super::{Found, login_once};
use crate::{
    Bench, Bound, Check, Measurement, fixtures,
    load::{Sample, quantile},
    server::{ServerSpec, ServerUnderTest},
};

const SCENARIO: &str = "memory";
/// Accounts the burst logs in to.
const ACCOUNTS: usize = 16;
/// Streams per HTTP/2 connection during the burst.
const STREAMS_PER_CONNECTION: usize = 100;
const BASELINE_MIB: f64 = 100.0;

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let burst = bench.args.burst.max(1);
    let mut server =
        ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let users = fixtures::active_users(&server, &tenant, "m", ACCOUNTS).await?;
    fixtures::wait_for_emails(&server, users.len()).await?;
    let channels = server.channels(burst.div_ceil(STREAMS_PER_CONNECTION)).await?;

    let start_line = Arc::new(Barrier::new(burst + 1));
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..burst {
        let channel = channels[i % channels.len()].clone();
        let user = users[i % users.len()].clone();
        let start_line = Arc::clone(&start_line);
        attempts.spawn(async move {
            start_line.wait().await;
            let sent = Instant::now();
            let outcome = login_once(channel, user.login, user.password).await;
            (outcome, sent.elapsed())
        });
    }
    let reset = server.reset_peak_rss();
    let started = Instant::now();
    start_line.wait().await;
    let mut sample = Sample::default();
    while let Some(joined) = attempts.join_next().await {
        match joined {
            Ok((Ok(()), latency)) => {
                sample.completed += 1;
                sample.latencies_us.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
            }
            Ok((Err(code), _)) => *sample.errors.entry(code).or_default() += 1,
            Err(_) => *sample.errors.entry("caller panicked".to_owned()).or_default() += 1,
        }
    }
    let wall = started.elapsed();
    sample.latencies_us.sort_unstable();
    let peak = server.peak_rss_kib();
    let alive = server.is_running() && server.serving().await;

    let peak_name = if reset { "server peak RSS during the burst" } else { "server peak RSS since start" };
    found.measured(Measurement {
        concurrency: Some(burst),
        completed: sample.completed,
        p50_ms: quantile(&sample.latencies_us, 0.50).map(|us| us as f64 / 1000.0),
        p99_ms: quantile(&sample.latencies_us, 0.99).map(|us| us as f64 / 1000.0),
        wall_s: Some(wall.as_secs_f64()),
        errors: sample.errors.clone(),
        server_peak_rss_mib: peak.map(|kib| kib as f64 / 1024.0),
        ..Measurement::new(SCENARIO, format!("{burst} logins at once"))
    });
    let bound = BASELINE_MIB + bench.hashing_workers as f64 * f64::from(bench.argon2.memory_kib) / 1024.0;
    found.check(Check::new(
        SCENARIO,
        peak_name,
        peak.map_or(f64::NAN, |kib| kib as f64 / 1024.0),
        Bound::AtMost,
        (bound * 10.0).round() / 10.0,
        " MiB",
    ));
    let unexpected: u64 =
        sample.errors.iter().filter(|(code, _)| code.as_str() != "ResourceExhausted").map(|(_, n)| n).sum();
    found.check(Check::new(
        SCENARIO,
        "attempts refused other than RESOURCE_EXHAUSTED",
        unexpected as f64,
        Bound::AtMost,
        0.0,
        "",
    ));
    found.check(Check::new(SCENARIO, "server still serving", f64::from(u8::from(alive)), Bound::AtLeast, 1.0, ""));
    if !alive {
        anyhow::bail!("the server under test died during the burst:\n{}", server.log_tail());
    }
    server.stop().await
}
