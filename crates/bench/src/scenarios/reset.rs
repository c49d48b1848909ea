//! Batch reset of many users in one ResetPasswords call, email=0 then email=1
//! (outbox rows in the same transaction), against the time the hashes alone
//! take: users × single-hash time ÷ workers, measured in-process in the same
//! round. Every round resets a fresh batch of PENDING_ACTIVATION users, so
//! email=0 also activates them and supersedes their welcome links.

use std::time::{Duration, Instant};

use super::{Found, ratio};
use identity::pb::reset_client::ResetClient;

use crate::{
    Bench, Bound, Check, Measurement, fixtures,
    raw::{self, Rate, Work},
    server::{ServerSpec, ServerUnderTest},
};

const SCENARIO: &str = "reset";

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let count = bench.args.batch_users.max(1);
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let mut client = ResetClient::new(server.channel().await?);
    let threads = bench.hashing_workers;
    let mut limit = Rate::default();
    let mut walls = [Duration::ZERO; 2];
    let mut peaks = [None; 2];
    let mut emails = 0;
    let mut per_round: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..bench.rounds() {
        let created = Instant::now();
        let logins = fixtures::create_users(&server, &tenant, &format!("r{round}_"), count, 8).await?;
        if round == 0 {
            found.measured(Measurement {
                completed: count as u64,
                wall_s: Some(created.elapsed().as_secs_f64()),
                ..Measurement::new(SCENARIO, format!("fixture: CreateUser × {count}"))
            });
        }
        // Welcome emails of the new users.
        emails += count;
        fixtures::wait_for_emails(&server, emails).await?;
        let round_limit =
            raw::argon2_throughput(&bench.argon2, Work::Hash, threads, bench.args.warmup, bench.args.duration).await?;
        let round_limit_s = count as f64 / round_limit.per_second();
        limit.merge(round_limit);
        for (slot, notify_by_email) in [false, true].into_iter().enumerate() {
            server.reset_peak_rss();
            let started = Instant::now();
            fixtures::reset(&mut client, &tenant.token, &logins, notify_by_email).await?;
            let wall = started.elapsed();
            walls[slot] += wall;
            per_round[slot].push(ratio(wall.as_secs_f64(), round_limit_s));
            peaks[slot] = peaks[slot].max(server.peak_rss_kib());
        }
        // The email=1 reset's notifications.
        emails += count;
        fixtures::wait_for_emails(&server, emails).await?;
    }
    let rounds = bench.rounds() as f64;
    let limit_s = count as f64 / limit.per_second();
    found.measured(Measurement {
        concurrency: Some(threads),
        completed: limit.completed,
        throughput: Some(limit.per_second()),
        wall_s: Some(limit_s),
        ..Measurement::new(SCENARIO, format!("limit: {count} argon2 hashes in-process, {threads} threads"))
    });
    for (slot, peak) in peaks.into_iter().enumerate() {
        let wall = walls[slot].as_secs_f64() / rounds;
        found.measured(
            Measurement {
                completed: count as u64 * bench.rounds() as u64,
                throughput: Some(count as f64 / wall),
                wall_s: Some(wall),
                ..Measurement::new(SCENARIO, format!("ResetPasswords of {count} users, email={slot}"))
            }
            .rss_kib(peak),
        );
        found.check(Check::median(
            SCENARIO,
            format!("batch reset email={slot} / hashing time, median of rounds"),
            &per_round[slot],
            Bound::AtMost,
            1.15,
        ));
    }
    server.stop().await
}
