//! ValidateToken over gRPC on loopback as a ratio of a trivial unary RPC (the
//! health check) driven the same way, alternately in each round; then
//! ValidateToken's p99 at half its peak rate. The load comes from h2load, a
//! process of its own (crate::h2load); the gRPC client checks one call of
//! each kind before and after, since h2load cannot read a gRPC status.

use anyhow::Context;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use tonic::transport::Channel;

use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::{Found, cpu_ratio, ratio};
use identity::pb::{self, auth_client::AuthClient};

use crate::{
    Bench, Bound, Check, Measurement, fixtures,
    h2load::{self, Client},
    load::{self, Sample},
    median,
    raw::{self, Rate},
    server::{ServerSpec, ServerUnderTest},
};

const SCENARIO: &str = "validate";
/// Sessions whose tokens the callers validate.
const SESSIONS: usize = 8;
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
const VALIDATE_TOKEN: &str = "/identity.v1.Auth/ValidateToken";

/// The health check of the whole server, as h2load sends it.
fn health_client() -> Client {
    Client::unary(HEALTH_CHECK, &HealthCheckRequest { service: String::new() })
}

/// ValidateToken of `token`, as h2load sends it: every call the same token,
/// as a service validating the requests of one session does.
pub fn validate_client(token: &str) -> Client {
    Client::unary(VALIDATE_TOKEN, &pb::ValidateTokenRequest { access_token: token.to_owned() })
}

/// One phase of one h2load process sending `client`'s call.
pub async fn h2(
    bench: &Bench,
    server: &ServerUnderTest,
    client: &Client,
    phase: load::Phase,
) -> anyhow::Result<(Sample, Option<u64>)> {
    h2load::phase(bench, server, std::slice::from_ref(client), phase).await
}

/// What h2load cannot see: that the calls it sends answer OK, and the token is valid.
async fn check_calls(channel: &Channel, token: &str) -> anyhow::Result<()> {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: String::new() })
        .await
        .context("the health check h2load sends failed")?;
    let answer = AuthClient::new(channel.clone())
        .validate_token(pb::ValidateTokenRequest { access_token: token.to_owned() })
        .await
        .context("the ValidateToken h2load sends failed")?
        .into_inner();
    anyhow::ensure!(answer.valid, "the token h2load validates is not valid: {:?}", answer.invalid_reason);
    Ok(())
}

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let concurrency = bench.args.rpc_concurrency.max(1);
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    // The same service remembering no signature: every call pays the Ed25519 check,
    // as it would for tokens each validated once.
    let no_cache = vec![("IDENTITY_TOKENS__VERIFIED_CACHE_ENTRIES".to_owned(), "0".to_owned())];
    let uncached_server =
        ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: no_cache }).await?;
    let (channels, tokens) = sessions(bench, &server).await?;
    let (uncached_channels, uncached_tokens) = sessions(bench, &uncached_server).await?;
    let public_key = signing_key(&channels[0], &tokens[0]).await?;
    check_calls(&channels[0], &tokens[0]).await?;
    check_calls(&uncached_channels[0], &uncached_tokens[0]).await?;
    let (health_call, validate_call) = (health_client(), validate_client(&tokens[0]));
    let uncached_call = validate_client(&uncached_tokens[0]);

    let (mut health, mut validate, mut uncached) = (Sample::default(), Sample::default(), Sample::default());
    let (mut health_peak, mut validate_peak, mut uncached_peak) = (None, None, None);
    let mut ed25519 = Rate::default();
    let (warmup, duration) = (bench.args.warmup, bench.args.duration);
    let (mut by_throughput, mut by_cpu, mut uncached_by_throughput) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..bench.rounds() {
        let (round_health, peak) = h2(bench, &server, &health_call, bench.phase(concurrency)).await?;
        health_peak = health_peak.max(peak);
        let (round_validate, peak) = h2(bench, &server, &validate_call, bench.phase(concurrency)).await?;
        validate_peak = validate_peak.max(peak);
        let (round_uncached, peak) = h2(bench, &uncached_server, &uncached_call, bench.phase(concurrency)).await?;
        uncached_peak = uncached_peak.max(peak);
        let round_ed25519 = raw::ed25519_throughput(&tokens[0], &public_key, bench.cores, warmup, duration).await?;
        by_throughput.push(ratio(round_validate.throughput(), round_health.throughput()));
        by_cpu.push(cpu_ratio(round_health.cpu_ms_per_op(), round_validate.cpu_ms_per_op()));
        let round_floor = 1.0 / (1.0 / round_health.throughput() + 1.0 / round_ed25519.per_second());
        uncached_by_throughput.push(ratio(round_uncached.throughput(), round_floor));
        health.merge(round_health);
        validate.merge(round_validate);
        uncached.merge(round_uncached);
        ed25519.merge(round_ed25519);
    }
    check_calls(&uncached_channels[0], &uncached_tokens[0]).await?;
    uncached_server.stop().await?;
    found.measured(
        Measurement::from_sample(SCENARIO, "limit: health check over gRPC (h2load)", concurrency, &health)
            .rss_kib(health_peak),
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
        Measurement::from_sample(SCENARIO, "ValidateToken over gRPC (h2load)", concurrency, &validate)
            .rss_kib(validate_peak),
    );
    found.measured(
        Measurement::from_sample(SCENARIO, "ValidateToken over gRPC, signature cache off", concurrency, &uncached)
            .rss_kib(uncached_peak),
    );
    found.check(Check::median(
        SCENARIO,
        "ValidateToken / health check throughput, median of rounds",
        &by_throughput,
        Bound::AtLeast,
        0.85,
    ));
    found.check(Check::median(
        SCENARIO,
        "ValidateToken / health check, by CPU time per call, median of rounds",
        &by_cpu,
        Bound::AtLeast,
        0.85,
    ));
    found.check(Check::median(
        SCENARIO,
        "cache off: ValidateToken / (health + Ed25519) throughput, median",
        &uncached_by_throughput,
        Bound::AtLeast,
        0.70,
    ));

    // Half the peak, alternately with the trivial RPC at the same pace, round by
    // round: the health check's tail is the one the machine itself adds, with the
    // load generator on the same cores as the server. Each row's p99 is the
    // median of its rounds', so one disturbed phase does not decide it.
    let rate = validate.throughput() / 2.0;
    let paced = load::Phase { rate: Some(rate), ..bench.phase(concurrency) };
    let (mut half, mut trivial) = (Sample::default(), Sample::default());
    let (mut half_peak, mut trivial_peak) = (None, None);
    let (mut half_p99s, mut trivial_p99s, mut p99_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..bench.rounds() {
        let (round, peak) = h2(bench, &server, &validate_call, paced).await?;
        let validate_p99 = round.quantile_ms(0.99).unwrap_or(f64::NAN);
        half_p99s.push(validate_p99);
        half_peak = half_peak.max(peak);
        half.merge(round);
        let (round, peak) = h2(bench, &server, &health_call, paced).await?;
        let health_p99 = round.quantile_ms(0.99).unwrap_or(f64::NAN);
        trivial_p99s.push(health_p99);
        p99_ratios.push(ratio(validate_p99, health_p99));
        trivial_peak = trivial_peak.max(peak);
        trivial.merge(round);
    }
    found.measured(Measurement {
        p99_ms: Some(median(&half_p99s)),
        ..Measurement::from_sample(SCENARIO, format!("ValidateToken paced at 50 % ({rate:.0}/s)"), concurrency, &half)
            .rss_kib(half_peak)
    });
    found.measured(Measurement {
        p99_ms: Some(median(&trivial_p99s)),
        ..Measurement::from_sample(
            SCENARIO,
            format!("health check paced at the same {rate:.0}/s"),
            concurrency,
            &trivial,
        )
        .rss_kib(trivial_peak)
    });
    found.check(Check {
        unit: " ms".to_owned(),
        ..Check::median(
            SCENARIO,
            "ValidateToken p99 at 50 % of peak throughput, median of rounds",
            &half_p99s,
            Bound::Below,
            2.0,
        )
    });
    found.check(Check::median(
        SCENARIO,
        "ValidateToken p99 / health check p99 at the same paced rate, median of rounds",
        &p99_ratios,
        Bound::AtMost,
        1.5,
    ));
    check_calls(&channels[0], &tokens[0]).await?;
    server.stop().await
}

/// Connections to `server` and the access tokens of [`SESSIONS`] logged-in users.
pub(super) async fn sessions(bench: &Bench, server: &ServerUnderTest) -> anyhow::Result<(Vec<Channel>, Vec<String>)> {
    let tenant = fixtures::tenant(bench, server).await?;
    let users = fixtures::active_users(server, &tenant, "v", SESSIONS).await?;
    fixtures::wait_for_emails(server, users.len()).await?;
    let channels = server.channels(bench.connections()).await?;
    let mut tokens = Vec::with_capacity(users.len());
    for user in &users {
        tokens.push(fixtures::login(&channels[0], &user.login, &user.password).await?.access_token);
    }
    Ok((channels, tokens))
}

/// The raw public key that signed `token`, from the published JWKS.
pub(super) async fn signing_key(channel: &Channel, token: &str) -> anyhow::Result<Vec<u8>> {
    let kid = jsonwebtoken::decode_header(token)?.kid.context("the token names no key")?;
    let keys = AuthClient::new(channel.clone()).get_jwks(pb::GetJwksRequest {}).await?.into_inner().keys;
    let key = keys.into_iter().find(|key| key.kid == kid).context("the token's key is not published")?;
    Ok(URL_SAFE_NO_PAD.decode(key.x)?)
}
