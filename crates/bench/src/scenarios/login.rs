//! Login throughput with the configured (OWASP) argon2 parameters and more
//! callers than cores, as a ratio of raw argon2 verifies on as many threads as
//! the server has hashing workers, measured alternately in each round. The
//! logins come from h2load, one process per account (it sends one request
//! body); the gRPC client logs in once before and after, since h2load cannot
//! tell a session from a refusal.

use super::{Found, cpu_ratio, login_once, ratio};
use crate::{
    Bench, Bound, Check, Measurement, fixtures, h2load,
    load::Sample,
    raw::{self, Rate, Work},
    server::{ServerSpec, ServerUnderTest},
};

const SCENARIO: &str = "login";

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let concurrency = bench.concurrency();
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    // One account per caller, as many people logging in at once would be.
    let users = fixtures::active_users(&server, &tenant, "l", concurrency).await?;
    fixtures::wait_for_emails(&server, users.len()).await?;
    let channel = server.channel().await?;
    let clients = super::login_clients(&users);
    let sessions = || async {
        for user in &users {
            login_once(channel.clone(), user.login.clone(), user.password.clone())
                .await
                .map_err(|code| anyhow::anyhow!("the login h2load sends failed: {code}"))?;
        }
        anyhow::Ok(())
    };
    sessions().await?;

    // The floor: argon2id flat out on every core, memory reused.
    let threads = bench.cores;
    let (warmup, duration) = (bench.args.warmup, bench.args.duration);
    let mut limit = Rate::default();
    let mut logins = Sample::default();
    let mut peak = None;
    let (mut by_throughput, mut by_cpu) = (Vec::new(), Vec::new());
    for _ in 0..bench.rounds() {
        let round_limit = raw::argon2_throughput(&bench.argon2, Work::Verify, threads, warmup, duration).await?;
        // One connection per account, each with one login in flight.
        let (round, round_peak) =
            h2load::run(&server, &bench.scratch, &clients, clients.len(), bench.phase(concurrency)).await?;
        peak = peak.max(round_peak);
        by_throughput.push(ratio(round.throughput(), round_limit.per_second()));
        by_cpu.push(cpu_ratio(round_limit.cpu_ms_per_op(), round.cpu_ms_per_op()));
        limit.merge(round_limit);
        logins.merge(round);
    }
    found.measured(Measurement {
        concurrency: Some(threads),
        completed: limit.completed,
        throughput: Some(limit.per_second()),
        cpu_ms_per_op: limit.cpu_ms_per_op(),
        ..Measurement::new(SCENARIO, format!("limit: argon2 verify in-process, {threads} threads"))
    });
    sessions().await?;
    found.measured(Measurement::from_sample(SCENARIO, "Login over gRPC (h2load)", concurrency, &logins).rss_kib(peak));
    found.check(Check::median(
        SCENARIO,
        "Login / raw argon2 verify throughput, median of rounds",
        &by_throughput,
        Bound::AtLeast,
        0.92,
    ));
    found.check(Check::median(
        SCENARIO,
        "Login / raw argon2 verify, by CPU time per operation, median of rounds",
        &by_cpu,
        Bound::AtLeast,
        0.92,
    ));
    server.stop().await
}
