//! ValidateToken over gRPC on loopback as a ratio of a trivial unary RPC (the
//! health check) driven the same way, then its p99 at half its peak rate.

use super::{Found, health_operation, ratio, validate_operation};
use crate::bench::{
    Bench, Bound, Check, Measurement, fixtures, load,
    server::{ServerSpec, ServerUnderTest},
};

const SCENARIO: &str = "validate";
/// Sessions whose tokens the callers validate.
const SESSIONS: usize = 8;

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let concurrency = bench.args.rpc_concurrency.max(1);
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let users = fixtures::active_users(&server, &tenant, "v", SESSIONS).await?;
    let channel = server.channel().await?;
    let mut tokens = Vec::with_capacity(users.len());
    for user in &users {
        tokens.push(fixtures::login(&channel, &user.login, &user.password).await?.access_token);
    }
    let channels = server.channels(bench.connections()).await?;

    server.reset_peak_rss();
    let health = load::run(bench.phase(concurrency), health_operation(channels.clone())).await;
    found.measured(
        Measurement::from_sample(SCENARIO, "limit: health check over gRPC", concurrency, &health)
            .rss_kib(server.peak_rss_kib()),
    );

    server.reset_peak_rss();
    let validate = load::run(bench.phase(concurrency), validate_operation(channels.clone(), tokens.clone())).await;
    found.measured(
        Measurement::from_sample(SCENARIO, "ValidateToken over gRPC", concurrency, &validate)
            .rss_kib(server.peak_rss_kib()),
    );
    found.check(Check::new(
        SCENARIO,
        "ValidateToken / health check throughput",
        ratio(validate.throughput(), health.throughput()),
        Bound::AtLeast,
        0.70,
        "",
    ));

    let rate = validate.throughput() / 2.0;
    let paced = load::Phase { rate: Some(rate), ..bench.phase(concurrency) };
    server.reset_peak_rss();
    let half = load::run(paced, validate_operation(channels, tokens)).await;
    found.measured(
        Measurement::from_sample(SCENARIO, format!("ValidateToken paced at 50 % ({rate:.0}/s)"), concurrency, &half)
            .rss_kib(server.peak_rss_kib()),
    );
    found.check(Check::new(
        SCENARIO,
        "ValidateToken p99 at 50 % of peak throughput",
        half.quantile_ms(0.99).unwrap_or(f64::NAN),
        Bound::Below,
        2.0,
        " ms",
    ));
    server.stop().await
}
