//! `identity-client`'s bearer layer, as a service that calls the identity
//! service would run it: its in-process check of a real access token against a
//! bare Ed25519 verify of the same token (one thread per core, alternately in
//! each round), then calls per second through the layer with revocation checks
//! on against the `ValidateToken` RPC alone.

use std::{convert::Infallible, sync::Arc};

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use identity_client::{Authenticator, BearerLayer, Config, RevocationCheck, pb::auth_client::AuthClient};
use tonic::transport::Channel;
use tower::{Layer as _, ServiceExt as _};

use super::{Found, cpu_ratio, ratio, validate::sessions, validate::signing_key, validate_operation};
use crate::{
    Bench, Bound, Check, Measurement,
    load::{Operation, Sample},
    raw::{self, Rate},
    server::{ServerSpec, ServerUnderTest},
};

const SCENARIO: &str = "client";

/// The layer in front of a handler that does nothing: what remains is the layer's own cost.
type Guarded = identity_client::RequireBearer<
    tower::util::ServiceFn<fn(http::Request<()>) -> std::future::Ready<Result<http::Response<()>, Infallible>>>,
>;

fn nothing(_: http::Request<()>) -> std::future::Ready<Result<http::Response<()>, Infallible>> {
    std::future::ready(Ok(http::Response::new(())))
}

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let concurrency = bench.args.rpc_concurrency.max(1);
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    let (channels, tokens) = sessions(bench, &server).await?;
    let public_key = signing_key(&channels[0], &tokens[0]).await?;
    let in_process = guarded(&channels[0], &tokens[0], None).await?;
    let with_revocation = guarded(&channels[0], &tokens[0], Some(RevocationCheck::default())).await?;

    let cores = bench.cores;
    let (mut layer, mut ed25519) = (Rate::default(), Rate::default());
    let (mut cost_ratios, mut call_ratios, mut call_cpu_ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut through_layer, mut rpc) = (Sample::default(), Sample::default());
    let (mut layer_peak, mut rpc_peak) = (None, None);
    for _ in 0..bench.rounds() {
        let round_ed25519 =
            raw::ed25519_throughput(&tokens[0], &public_key, cores, bench.args.warmup, bench.args.duration).await?;
        let round_layer = layer_throughput(&in_process, &tokens[0], cores, bench).await?;
        // CPU time per check, not the rate: other work on the machine moves the
        // rates of two runs apart, but not what one check costs.
        cost_ratios.push(cpu_ratio(round_layer.cpu_ms_per_op(), round_ed25519.cpu_ms_per_op()));
        layer.merge(round_layer);
        ed25519.merge(round_ed25519);

        let (round_rpc, peak) =
            server.load(bench.phase(concurrency), validate_operation(channels.clone(), tokens.clone())).await;
        rpc_peak = rpc_peak.max(peak);
        // The layer's CPU is mostly this process's (the server is asked once a
        // second per token), read around the whole phase.
        let before = crate::procfs::CpuSnapshot::take(Some(server.pid()));
        let (round_layer, peak) =
            server.load(bench.phase(concurrency), layer_operation(with_revocation.clone(), tokens.clone())).await;
        let spent = crate::procfs::CpuSnapshot::take(Some(server.pid())).since(before);
        layer_peak = layer_peak.max(peak);
        call_ratios.push(ratio(round_layer.throughput(), round_rpc.throughput()));
        let layer_cpu =
            (round_layer.completed > 0).then(|| (spent.own + spent.server) * 1000.0 / round_layer.completed as f64);
        call_cpu_ratios.push(cpu_ratio(round_rpc.cpu_ms_per_op(), layer_cpu));
        rpc.merge(round_rpc);
        through_layer.merge(round_layer);
    }
    found.measured(Measurement {
        concurrency: Some(cores),
        completed: ed25519.completed,
        throughput: Some(ed25519.per_second()),
        cpu_ms_per_op: ed25519.cpu_ms_per_op(),
        ..Measurement::new(SCENARIO, format!("limit: Ed25519 verify in-process, {cores} threads"))
    });
    found.measured(Measurement {
        concurrency: Some(cores),
        completed: layer.completed,
        throughput: Some(layer.per_second()),
        cpu_ms_per_op: layer.cpu_ms_per_op(),
        ..Measurement::new(SCENARIO, format!("in-process: bearer layer, revocation off, {cores} threads"))
    });
    found.measured(Measurement::from_sample(SCENARIO, "ValidateToken over gRPC", concurrency, &rpc).rss_kib(rpc_peak));
    found.measured(
        Measurement::from_sample(SCENARIO, "bearer layer, revocation checked (1 s cache)", concurrency, &through_layer)
            .rss_kib(layer_peak),
    );
    found.check(Check::median(
        SCENARIO,
        "bearer layer / bare Ed25519 verify, CPU time per request, median of rounds",
        &cost_ratios,
        Bound::AtMost,
        1.2,
    ));
    found.check(Check::median(
        SCENARIO,
        "bearer layer with revocation / ValidateToken RPC, calls per second, median",
        &call_ratios,
        Bound::AtLeast,
        1.0,
    ));
    found.check(Check::median(
        SCENARIO,
        "bearer layer with revocation / ValidateToken RPC, by CPU time per call, median",
        &call_cpu_ratios,
        Bound::AtLeast,
        1.0,
    ));
    server.stop().await
}

/// The layer around [`nothing`], its keys already fetched with `token`.
async fn guarded(channel: &Channel, token: &str, revocation: Option<RevocationCheck>) -> anyhow::Result<Guarded> {
    let (issuer, audience) = issuer_and_audience(token)?;
    let config = Config { audience, revocation, ..Config::new(issuer) };
    let authenticator = Authenticator::new(AuthClient::new(channel.clone()), config)?;
    authenticator.authenticate(token).await.map_err(|refusal| anyhow::anyhow!("{}", refusal.message()))?;
    let handler: fn(_) -> _ = nothing;
    Ok(BearerLayer::new(authenticator).layer(tower::service_fn(handler)))
}

/// What the server puts in `iss` and `aud`, as a caller configures it.
fn issuer_and_audience(token: &str) -> anyhow::Result<(String, String)> {
    let payload = token.split('.').nth(1).context("a compact JWS")?;
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    let text = |key: &str| claims[key].as_str().map(str::to_owned).context("a string claim");
    Ok((text("iss")?, text("aud")?))
}

fn request(token: &str) -> anyhow::Result<http::Request<()>> {
    Ok(http::Request::builder().uri("/bench").header(http::header::AUTHORIZATION, format!("Bearer {token}")).body(())?)
}

/// Requests through the layer on `threads` threads, each driving its own
/// single-threaded runtime, as a handler's worker would.
async fn layer_throughput(service: &Guarded, token: &str, threads: usize, bench: &Bench) -> anyhow::Result<Rate> {
    raw::spin(threads, bench.args.warmup, bench.args.duration, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (service, token) = (service.clone(), token.to_owned());
        Ok(Box::new(move || {
            let response = runtime.block_on(service.clone().oneshot(request(&token)?))?;
            anyhow::ensure!(response.status() == http::StatusCode::OK, "the layer refused: {response:?}");
            Ok(())
        }))
    })
    .await
}

/// Caller `i` sends token `i` (modulo the tokens) through the layer; a refusal is an error.
fn layer_operation(service: Guarded, tokens: Vec<String>) -> Operation {
    let tokens = Arc::new(tokens);
    Arc::new(move |worker, _seq| {
        let service = service.clone();
        let token = tokens[worker % tokens.len()].clone();
        Box::pin(async move {
            let request = request(&token).map_err(|_| "BadRequest".to_owned())?;
            let Ok(response) = service.oneshot(request).await;
            if response.status() == http::StatusCode::OK { Ok(()) } else { Err(response.status().to_string()) }
        })
    })
}
