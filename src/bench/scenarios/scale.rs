//! Login and ValidateToken with a small and then a large user table (the
//! large one filled by the fixture fast path): the throughputs should be
//! within 10 % of each other when every lookup is indexed.

use std::sync::Arc;

use rand::RngExt;
use tonic::transport::Channel;

use super::{Found, login_once, validate_operation};
use crate::bench::{
    Bench, Bound, Check, Measurement,
    fixtures::{self, BULK_PASSWORD, bulk_login},
    load::{self, Operation},
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

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let small = bench.args.small_users.max(1);
    let large = bench.args.large_users.max(small);
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let channels = server.channels(bench.connections()).await?;
    let mut inserted = 0;
    let mut figures = Vec::new();
    for size in [small, large] {
        let took = fixtures::bulk_insert_users(&server, &tenant, inserted..size).await?;
        found.measured(Measurement {
            completed: size - inserted,
            wall_s: Some(took.as_secs_f64()),
            ..Measurement::new(SCENARIO, format!("fixture: bulk insert of {} users (fast path)", size - inserted))
        });
        inserted = size;

        let concurrency = bench.concurrency();
        let operation = random_login_operation(channels.clone(), tenant.prefix.clone(), size);
        server.reset_peak_rss();
        let login = load::run(bench.phase(concurrency), operation).await;
        found.measured(
            Measurement::from_sample(SCENARIO, format!("Login, {size} users in the database"), concurrency, &login)
                .rss_kib(server.peak_rss_kib()),
        );

        let mut tokens = Vec::with_capacity(SESSIONS);
        for _ in 0..SESSIONS {
            let login = bulk_login(&tenant.prefix, rand::rng().random_range(0..size));
            tokens.push(fixtures::login(&channels[0], &login, BULK_PASSWORD).await?.access_token);
        }
        let concurrency = bench.args.rpc_concurrency.max(1);
        server.reset_peak_rss();
        let validate = load::run(bench.phase(concurrency), validate_operation(channels.clone(), tokens)).await;
        found.measured(
            Measurement::from_sample(
                SCENARIO,
                format!("ValidateToken, {size} users in the database"),
                concurrency,
                &validate,
            )
            .rss_kib(server.peak_rss_kib()),
        );
        figures.push((login.throughput(), validate.throughput()));
    }
    if let [(login_small, validate_small), (login_large, validate_large)] = figures[..] {
        for (what, a, b) in [("Login", login_small, login_large), ("ValidateToken", validate_small, validate_large)] {
            let within = if a.max(b) > 0.0 { a.min(b) / a.max(b) } else { f64::NAN };
            found.check(Check::new(
                SCENARIO,
                format!("{what} throughput, {small} vs {large} users (lower/higher)"),
                within,
                Bound::AtLeast,
                0.90,
                "",
            ));
        }
    }
    server.stop().await
}
