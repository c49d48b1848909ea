//! ValidateToken over gRPC on loopback as a ratio of a trivial unary RPC (the
//! health check) driven the same way, alternately in each round; then
//! ValidateToken's p99 at half its peak rate.

use anyhow::Context;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use tonic::transport::Channel;

use super::{Found, cpu_ratio, health_operation, ratio, validate_operation};
use crate::{
    bench::{
        Bench, Bound, Check, Measurement, fixtures,
        load::{self, Sample},
        raw::{self, Rate},
        server::{ServerSpec, ServerUnderTest},
    },
    pb::{self, auth_client::AuthClient},
};

const SCENARIO: &str = "validate";
/// Sessions whose tokens the callers validate.
const SESSIONS: usize = 8;

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let concurrency = bench.args.rpc_concurrency.max(1);
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let users = fixtures::active_users(&server, &tenant, "v", SESSIONS).await?;
    fixtures::wait_for_emails(&server, users.len()).await?;
    let channel = server.channel().await?;
    let mut tokens = Vec::with_capacity(users.len());
    for user in &users {
        tokens.push(fixtures::login(&channel, &user.login, &user.password).await?.access_token);
    }
    let channels = server.channels(bench.connections()).await?;

    let public_key = signing_key(&channel, &tokens[0]).await?;

    let (mut health, mut validate) = (Sample::default(), Sample::default());
    let (mut health_peak, mut validate_peak) = (None, None);
    let mut ed25519 = Rate::default();
    let (warmup, duration) = (bench.args.warmup, bench.args.duration);
    for _ in 0..bench.rounds() {
        server.reset_peak_rss();
        health.merge(load::run(bench.phase(concurrency), Some(server.pid()), health_operation(channels.clone())).await);
        health_peak = health_peak.max(server.peak_rss_kib());
        server.reset_peak_rss();
        validate.merge(
            load::run(
                bench.phase(concurrency),
                Some(server.pid()),
                validate_operation(channels.clone(), tokens.clone()),
            )
            .await,
        );
        validate_peak = validate_peak.max(server.peak_rss_kib());
        ed25519.merge(raw::ed25519_throughput(&tokens[0], &public_key, bench.cores, warmup, duration).await?);
    }
    found.measured(
        Measurement::from_sample(SCENARIO, "limit: health check over gRPC", concurrency, &health).rss_kib(health_peak),
    );
    let cores = bench.cores;
    found.measured(Measurement {
        concurrency: Some(cores),
        completed: ed25519.completed,
        throughput: Some(ed25519.per_second()),
        cpu_ms_per_op: ed25519.cpu_ms_per_op(),
        ..Measurement::new(SCENARIO, format!("limit: Ed25519 verify in-process, {cores} threads"))
    });
    // Both limits use the whole machine, so their costs per call add up.
    let combined = 1.0 / (1.0 / health.throughput() + 1.0 / ed25519.per_second());
    let combined_cpu = health.cpu_ms_per_op().zip(ed25519.cpu_ms_per_op()).map(|(h, e)| h + e);
    found.measured(Measurement {
        throughput: Some(combined),
        cpu_ms_per_op: combined_cpu,
        ..Measurement::new(SCENARIO, "limit: health check + Ed25519 verify (costs added)")
    });
    found.measured(
        Measurement::from_sample(SCENARIO, "ValidateToken over gRPC", concurrency, &validate).rss_kib(validate_peak),
    );
    found.check(Check::new(
        SCENARIO,
        "ValidateToken / health check throughput",
        ratio(validate.throughput(), health.throughput()),
        Bound::AtLeast,
        0.70,
        "",
    ));
    found.check(Check::new(
        SCENARIO,
        "ValidateToken / health check, by CPU time per call",
        cpu_ratio(health.cpu_ms_per_op(), validate.cpu_ms_per_op()),
        Bound::AtLeast,
        0.70,
        "",
    ));
    found.check(Check::new(
        SCENARIO,
        "ValidateToken / (health + Ed25519), by CPU time per call",
        cpu_ratio(combined_cpu, validate.cpu_ms_per_op()),
        Bound::AtLeast,
        0.90,
        "",
    ));

    let rate = validate.throughput() / 2.0;
    let paced = load::Phase { rate: Some(rate), ..bench.phase(concurrency) };
    server.reset_peak_rss();
    let half = load::run(paced, Some(server.pid()), validate_operation(channels, tokens)).await;
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

/// The raw public key that signed `token`, from the published JWKS.
async fn signing_key(channel: &Channel, token: &str) -> anyhow::Result<Vec<u8>> {
    let kid = jsonwebtoken::decode_header(token)?.kid.context("the token names no key")?;
    let keys = AuthClient::new(channel.clone()).get_jwks(pb::GetJwksRequest {}).await?.into_inner().keys;
    let key = keys.into_iter().find(|key| key.kid == kid).context("the token's key is not published")?;
    Ok(URL_SAFE_NO_PAD.decode(key.x)?)
}
