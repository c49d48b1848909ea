//! Batch reset of many users in one ResetPasswords call, email=0 then email=1
//! (outbox rows in the same transaction), against the time the hashes alone
//! take: users × single-hash time ÷ workers, measured in-process.

use std::time::Instant;

use super::{Found, ratio};
use crate::{
    bench::{
        Bench, Bound, Check, Measurement, fixtures,
        raw::{self, Work},
        server::{ServerSpec, ServerUnderTest},
    },
    pb::reset_client::ResetClient,
};

const SCENARIO: &str = "reset";

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let count = bench.args.batch_users.max(1);
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let created = Instant::now();
    let logins = fixtures::create_users(&server, &tenant, "r", count, 8).await?;
    found.measured(Measurement {
        completed: count as u64,
        wall_s: Some(created.elapsed().as_secs_f64()),
        ..Measurement::new(SCENARIO, format!("fixture: CreateUser × {count}"))
    });

    let threads = bench.hashing_workers;
    let raw_hash =
        raw::argon2_throughput(&bench.argon2, Work::Hash, threads, bench.args.warmup, bench.args.duration).await?;
    let limit_s = count as f64 / raw_hash.per_second;
    found.measured(Measurement {
        concurrency: Some(threads),
        completed: raw_hash.completed,
        throughput: Some(raw_hash.per_second),
        wall_s: Some(limit_s),
        ..Measurement::new(SCENARIO, format!("limit: {count} argon2 hashes in-process, {threads} threads"))
    });

    let mut client = ResetClient::new(server.channel().await?);
    for notify_by_email in [false, true] {
        let email = u8::from(notify_by_email);
        server.reset_peak_rss();
        let started = Instant::now();
        fixtures::reset(&mut client, &tenant.token, &logins, notify_by_email).await?;
        let wall = started.elapsed().as_secs_f64();
        found.measured(
            Measurement {
                completed: count as u64,
                throughput: Some(count as f64 / wall),
                wall_s: Some(wall),
                ..Measurement::new(SCENARIO, format!("ResetPasswords of {count} users, email={email}"))
            }
            .rss_kib(server.peak_rss_kib()),
        );
        found.check(Check::new(
            SCENARIO,
            format!("batch reset email={email} / hashing time"),
            ratio(wall, limit_s),
            Bound::AtMost,
            1.15,
            "",
        ));
    }
    server.stop().await
}
