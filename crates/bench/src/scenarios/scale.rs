//! Login and ValidateToken against two servers, one whose database holds a
//! small user table and one a large table (filled by the fixture fast path),
//! measured alternately in each round: when every lookup is indexed the
//! throughputs are within 10 % of each other. ValidateToken load comes from
//! h2load; logins from the bench's client, since each picks a random user and
//! h2load sends one request body.

use std::sync::Arc;

use rand::RngExt;
use tonic::transport::Channel;

use super::{
    Found, login_once,
    validate::{h2, validate_client},
};
use crate::{
    Bench, Bound, Check, Measurement,
    fixtures::{self, BULK_PASSWORD, Tenant, bulk_login},
    load::{Operation, Sample},
    server::{ServerSpec, ServerUnderTest},
};

const SCENARIO: &str = "scale";
const SESSIONS: usize = 8;

/// Every login picks a random user of the first `users`, so lookups spread over the table.
fn random_login_operation(channels: Vec<Channel>, prefix: String, users: u64) -> Operation {
    let channels = Arc::new(channels);
    Arc::new(move |worker, _seq| {
        let index = rand::rng().random_range(0..users);
        let channel = channels[worker % channels.len()].clone();
        Box::pin(login_once(channel, bulk_login(&prefix, index), BULK_PASSWORD.to_owned()))
    })
}

/// One server with `users` fast-path users, and what was measured against it.
struct Side {
    users: u64,
    server: ServerUnderTest,
    tenant: Tenant,
    channels: Vec<Channel>,
    tokens: Vec<String>,
    login: Sample,
    validate: Sample,
    login_peak: Option<u64>,
    validate_peak: Option<u64>,
}

async fn side(bench: &Bench, users: u64, found: &mut Found) -> anyhow::Result<Side> {
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let took = fixtures::bulk_insert_users(&server, &tenant, 0..users).await?;
    found.measured(Measurement {
        completed: users,
        wall_s: Some(took.as_secs_f64()),
        ..Measurement::new(SCENARIO, format!("fixture: bulk insert of {users} users (fast path)"))
    });
    let channels = server.channels(bench.connections()).await?;
    let mut tokens = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let login = bulk_login(&tenant.prefix, rand::rng().random_range(0..users));
        tokens.push(fixtures::login(&channels[0], &login, BULK_PASSWORD).await?.access_token);
    }
    Ok(Side {
        users,
        server,
        tenant,
        channels,
        tokens,
        login: Sample::default(),
        validate: Sample::default(),
        login_peak: None,
        validate_peak: None,
    })
}

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let small = bench.args.small_users.max(1);
    let large = bench.args.large_users.max(small);
    let mut sides = [side(bench, small, found).await?, side(bench, large, found).await?];
    for _ in 0..bench.rounds() {
        for side in &mut sides {
            let concurrency = bench.concurrency();
            let operation = random_login_operation(side.channels.clone(), side.tenant.prefix.clone(), side.users);
            let (sample, peak) = side.server.load(bench.phase(concurrency), operation).await;
            side.login.merge(sample);
            side.login_peak = side.login_peak.max(peak);
        }
        for side in &mut sides {
            let concurrency = bench.args.rpc_concurrency.max(1);
            // One token, as in the validate scenario: h2load sends one request body.
            let client = validate_client(&side.tokens[0]);
            let (sample, peak) = h2(bench, &side.server, &client, bench.phase(concurrency)).await?;
            side.validate.merge(sample);
            side.validate_peak = side.validate_peak.max(peak);
        }
    }
    for side in &sides {
        let users = side.users;
        found.measured(
            Measurement::from_sample(
                SCENARIO,
                format!("Login, {users} users in the database"),
                bench.concurrency(),
                &side.login,
            )
            .rss_kib(side.login_peak),
        );
        found.measured(
            Measurement::from_sample(
                SCENARIO,
                format!("ValidateToken, {users} users in the database"),
                bench.args.rpc_concurrency.max(1),
                &side.validate,
            )
            .rss_kib(side.validate_peak),
        );
    }
    let [small_side, large_side] = &sides;
    let by_cpu = |sample: &Sample| sample.cpu_ms_per_op().map_or(f64::NAN, |ms| 1.0 / ms);
    for (what, a, b) in [
        ("Login throughput", small_side.login.throughput(), large_side.login.throughput()),
        ("ValidateToken throughput", small_side.validate.throughput(), large_side.validate.throughput()),
        ("Login, by CPU time per login", by_cpu(&small_side.login), by_cpu(&large_side.login)),
        ("ValidateToken, by CPU time per call", by_cpu(&small_side.validate), by_cpu(&large_side.validate)),
    ] {
        let within = if a.max(b) > 0.0 { a.min(b) / a.max(b) } else { f64::NAN };
        found.check(Check::new(
            SCENARIO,
            format!("{what}, {small} vs {large} users (lower/higher)"),
            within,
            Bound::AtLeast,
            0.90,
            "",
        ));
    }
    let [small_side, large_side] = sides;
    small_side.server.stop().await?;
    large_side.server.stop().await
}
