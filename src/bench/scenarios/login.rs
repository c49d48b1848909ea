//! Login throughput with the configured (OWASP) argon2 parameters and more
//! callers than cores, as a ratio of raw argon2 verifies on as many threads as
//! the server has hashing workers.

use super::{Found, login_operation, ratio};
use crate::bench::{
    Bench, Bound, Check, Measurement, fixtures, load,
    raw::{self, Work},
    server::{ServerSpec, ServerUnderTest},
};

const SCENARIO: &str = "login";

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let concurrency = bench.concurrency();
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    // One account per caller, as many people logging in at once would be.
    let users = fixtures::active_users(&server, &tenant, "l", concurrency).await?;

    let threads = bench.hashing_workers;
    let raw_verify =
        raw::argon2_throughput(&bench.argon2, Work::Verify, threads, bench.args.warmup, bench.args.duration).await?;
    found.measured(Measurement {
        concurrency: Some(threads),
        completed: raw_verify.completed,
        throughput: Some(raw_verify.per_second),
        ..Measurement::new(SCENARIO, format!("limit: argon2 verify in-process, {threads} threads"))
    });

    let channels = server.channels(bench.connections()).await?;
    server.reset_peak_rss();
    let sample = load::run(bench.phase(concurrency), login_operation(channels, users)).await;
    let measurement =
        Measurement::from_sample(SCENARIO, "Login over gRPC", concurrency, &sample).rss_kib(server.peak_rss_kib());
    found.check(Check::new(
        SCENARIO,
        "Login / raw argon2 verify throughput",
        ratio(sample.throughput(), raw_verify.per_second),
        Bound::AtLeast,
        0.90,
        "",
    ));
    found.measured(measurement);
    server.stop().await
}
