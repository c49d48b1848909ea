//! ValidateToken and Login throughput while a batch ResetPasswords (email=0)
//! of `--batch-users` users runs, as a ratio of the same h2load phase with
//! the server otherwise idle, alternately in each round (issue #24). The
//! batch is repeated back to back for the whole loaded phase, so every
//! measured second has a batch hashing beside the calls; the last one is
//! awaited before the next quiet phase starts, so no quiet phase sees one.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use identity::pb::reset_client::ResetClient;
use tokio::task::JoinHandle;

use super::{Found, login_once, ratio, validate::validate_client};
use crate::{
    Bench, Bound, Check, Measurement, fixtures, h2load,
    load::Sample,
    server::{ServerSpec, ServerUnderTest},
};

const SCENARIO: &str = "during_reset";

/// Users reset and the time the batches took, from the first call to the last answer.
struct Batches {
    users: u64,
    wall: Duration,
}

/// Resets `logins` with email=0 again and again until `stop`, then finishes the batch in flight.
fn reset_until(
    mut client: ResetClient<tonic::transport::Channel>,
    token: String,
    logins: Vec<String>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<anyhow::Result<Batches>> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut users = 0;
        while !stop.load(Ordering::Relaxed) {
            fixtures::reset(&mut client, &token, &logins, false).await?;
            users += logins.len() as u64;
        }
        Ok(Batches { users, wall: started.elapsed() })
    })
}

/// One kind of call, quiet and during the batch.
#[derive(Default)]
struct Pair {
    quiet: Sample,
    busy: Sample,
    peaks: [Option<u64>; 2],
    ratios: Vec<f64>,
    reset_users: u64,
    reset_wall: Duration,
}

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let count = bench.args.batch_users.max(1);
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let login_concurrency = bench.concurrency();
    let rpc_concurrency = bench.args.rpc_concurrency.max(1);
    // The callers' accounts, one per login caller, apart from the batch's users.
    let users = fixtures::active_users(&server, &tenant, "d", login_concurrency).await?;
    let batch = fixtures::create_users(&server, &tenant, "db", count, 8).await?;
    fixtures::wait_for_emails(&server, users.len() + batch.len()).await?;
    let channel = server.channel().await?;
    let token = fixtures::login(&channel, &users[0].login, &users[0].password).await?.access_token;
    let validate_call = validate_client(&token);
    let login_calls = super::login_clients(&users);
    // What h2load cannot see: the calls it sends answer a session and a valid token.
    let calls_work = || async {
        for user in &users {
            login_once(channel.clone(), user.login.clone(), user.password.clone())
                .await
                .map_err(|code| anyhow::anyhow!("the login h2load sends failed: {code}"))?;
        }
        let answer = identity::pb::auth_client::AuthClient::new(channel.clone())
            .validate_token(identity::pb::ValidateTokenRequest { access_token: token.clone() })
            .await?
            .into_inner();
        anyhow::ensure!(answer.valid, "the token h2load validates is not valid: {:?}", answer.invalid_reason);
        anyhow::Ok(())
    };
    calls_work().await?;
    let reset_client = ResetClient::new(server.channel().await?);

    let (mut validate, mut login) = (Pair::default(), Pair::default());
    for _ in 0..bench.rounds() {
        for (pair, is_login) in [(&mut validate, false), (&mut login, true)] {
            let drive = || async {
                if is_login {
                    let phase = bench.phase(login_concurrency);
                    h2load::run(&server, &bench.scratch, &login_calls, login_calls.len(), phase).await
                } else {
                    h2load::phase(bench, &server, std::slice::from_ref(&validate_call), bench.phase(rpc_concurrency))
                        .await
                }
            };
            let (quiet, peak) = drive().await?;
            pair.peaks[0] = pair.peaks[0].max(peak);
            let stop = Arc::new(AtomicBool::new(false));
            let batches = reset_until(reset_client.clone(), tenant.token.clone(), batch.clone(), Arc::clone(&stop));
            let driven = drive().await;
            stop.store(true, Ordering::Relaxed);
            let batches = batches.await??;
            let (busy, peak) = driven?;
            pair.peaks[1] = pair.peaks[1].max(peak);
            pair.ratios.push(ratio(busy.throughput(), quiet.throughput()));
            pair.reset_users += batches.users;
            pair.reset_wall += batches.wall;
            pair.quiet.merge(quiet);
            pair.busy.merge(busy);
        }
    }
    calls_work().await?;
    for (pair, call, concurrency) in
        [(&validate, "ValidateToken", rpc_concurrency), (&login, "Login", login_concurrency)]
    {
        found.measured(
            Measurement::from_sample(
                SCENARIO,
                format!("{call} over gRPC (h2load), no reset"),
                concurrency,
                &pair.quiet,
            )
            .rss_kib(pair.peaks[0]),
        );
        found.measured(
            Measurement::from_sample(
                SCENARIO,
                format!("{call} over gRPC (h2load), during a {count}-user batch reset"),
                concurrency,
                &pair.busy,
            )
            .rss_kib(pair.peaks[1]),
        );
        let wall = pair.reset_wall.as_secs_f64();
        let batches = (pair.reset_users / count as u64).max(1);
        found.measured(
            Measurement {
                completed: pair.reset_users,
                throughput: Some(pair.reset_users as f64 / wall),
                // One batch's time, on average.
                wall_s: Some(wall / batches as f64),
                ..Measurement::new(
                    SCENARIO,
                    format!("ResetPasswords of {count} users, email=0, back to back beside {call}"),
                )
            }
            .rss_kib(pair.peaks[1]),
        );
        found.check(Check::median(
            SCENARIO,
            format!("{call} during a {count}-user batch reset / without, median of rounds"),
            &pair.ratios,
            Bound::AtLeast,
            0.90,
        ));
    }
    server.stop().await
}
