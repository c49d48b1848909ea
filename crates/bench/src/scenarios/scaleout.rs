//! Two servers on one PostgreSQL database (issue #24). In each round Login,
//! then ValidateToken, is driven by h2load against one server, then against
//! both at once with the same callers split between them; beside each phase
//! the PostgreSQL processes' CPU over the measured window gives the
//! database's time per call. On one machine both servers share its cores, so
//! the check is that two servers together serve what one does: the shared
//! database adds no waiting of its own. SQLite has no replicas: skipped there.

use identity::pb;

use super::{Found, login_once, ratio, validate::validate_client};
use crate::{
    Bench, Bound, Check, Measurement, fixtures,
    h2load::{self, Client},
    load::{self, Sample},
    procfs,
    server::{ServerSpec, ServerUnderTest},
};

const SCENARIO: &str = "scaleout";

/// One kind of call on one server and on two, with the database's CPU.
#[derive(Default)]
struct Compared {
    phases: [Phase; 2],
    ratios: Vec<f64>,
}

/// One kind of call on one or two servers, over every round.
struct Phase {
    sample: Sample,
    /// None once a round could not see the database's processes.
    database_seconds: Option<f64>,
    peak: Option<u64>,
}

impl Default for Phase {
    fn default() -> Self {
        Self { sample: Sample::default(), database_seconds: Some(0.0), peak: None }
    }
}

impl Phase {
    fn add(&mut self, measured: Measured) {
        self.sample.merge(measured.sample);
        self.database_seconds = self.database_seconds.zip(measured.database_seconds).map(|(a, b)| a + b);
        self.peak = self.peak.max(measured.peak);
    }
}

/// One phase of one round.
struct Measured {
    sample: Sample,
    database_seconds: Option<f64>,
    peak: Option<u64>,
}

impl Compared {
    fn add(&mut self, one: Measured, two: Measured) {
        self.ratios.push(ratio(two.sample.throughput(), one.sample.throughput()));
        self.phases[0].add(one);
        self.phases[1].add(two);
    }

    fn report(&self, found: &mut Found, call: &str, concurrency: usize) {
        for (servers, phase) in ["one server", "two servers"].into_iter().zip(&self.phases) {
            let completed = phase.sample.completed;
            found.measured(Measurement {
                database_cpu_ms_per_op: phase
                    .database_seconds
                    .filter(|_| completed > 0)
                    .map(|seconds| seconds * 1000.0 / completed as f64),
                ..Measurement::from_sample(SCENARIO, format!("{call} (h2load), {servers}"), concurrency, &phase.sample)
                    .rss_kib(phase.peak)
            });
        }
        found.check(Check::median(
            SCENARIO,
            format!("{call}: two servers on one database / one server, median of rounds"),
            &self.ratios,
            Bound::AtLeast,
            0.9,
        ));
    }
}

/// Runs `load` and reads the PostgreSQL processes' CPU over its measured window.
async fn with_database_cpu(
    phase: load::Phase,
    load: impl Future<Output = anyhow::Result<(Sample, Option<u64>)>>,
) -> anyhow::Result<Measured> {
    let database = async {
        tokio::time::sleep(phase.warmup).await;
        let before = procfs::NamedCpu::take("postgres");
        tokio::time::sleep(phase.duration).await;
        procfs::NamedCpu::take("postgres").since(&before)
    };
    let (loaded, database_seconds) = tokio::join!(load, database);
    let (sample, peak) = loaded?;
    Ok(Measured { sample, database_seconds, peak })
}

/// `clients` (one h2load process each) against one server, or shared out
/// between two at once, as one sample: the same processes either way, so a
/// single load generator's thread never limits one side only.
async fn drive(
    bench: &Bench,
    servers: &[&ServerUnderTest],
    clients: &[Client],
    connections: usize,
    phase: load::Phase,
) -> anyhow::Result<(Sample, Option<u64>)> {
    let count = servers.len();
    anyhow::ensure!(clients.len() >= count, "at least one h2load process per server");
    let share = |index: usize| -> Vec<Client> { clients.iter().skip(index).step_by(count).cloned().collect() };
    // Each server gets the streams and connections of the processes it gets.
    let part = |total: usize, mine: usize| (total * mine).div_ceil(clients.len()).max(1);
    let scratch = &bench.scratch;
    let samples = match servers {
        [one] => vec![h2load::run(one, scratch, clients, connections, phase).await?],
        [first, second] => {
            let (a_clients, b_clients) = (share(0), share(1));
            let a_phase = load::Phase { concurrency: part(phase.concurrency, a_clients.len()), ..phase };
            let b_phase = load::Phase { concurrency: part(phase.concurrency, b_clients.len()), ..phase };
            let (a, b) = tokio::try_join!(
                h2load::run(first, scratch, &a_clients, part(connections, a_clients.len()), a_phase),
                h2load::run(second, scratch, &b_clients, part(connections, b_clients.len()), b_phase),
            )?;
            vec![a, b]
        }
        _ => anyhow::bail!("one server or two"),
    };
    let (mut together, mut peak) = (Sample::default(), None);
    for (sample, server_peak) in samples {
        together.merge(sample);
        peak = peak.max(server_peak);
    }
    together.window = phase.duration;
    Ok((together, peak))
}

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    if bench.postgres_admin_url.is_none() {
        crate::progress("scaleout: replicas share a PostgreSQL database: run with --backend postgres; skipped");
        return Ok(());
    }
    let spec = ServerSpec { argon2: bench.argon2.clone(), env: Vec::new() };
    let first = ServerUnderTest::start(bench, &spec).await?;
    let second = ServerUnderTest::start_beside(bench, &spec, &first).await?;
    let tenant = fixtures::tenant(bench, &first).await?;
    // One account per caller, at least one for each server.
    let login_concurrency = bench.concurrency().max(2);
    let users = fixtures::active_users(&first, &tenant, "o", login_concurrency).await?;
    fixtures::wait_for_emails(&first, users.len()).await?;
    let (first_channel, second_channel) = (first.channel().await?, second.channel().await?);
    // What h2load cannot see: each server logs these accounts in and accepts the other's tokens.
    for (index, user) in users.iter().enumerate() {
        let channel = if index % 2 == 0 { &first_channel } else { &second_channel };
        login_once(channel.clone(), user.login.clone(), user.password.clone())
            .await
            .map_err(|code| anyhow::anyhow!("the login h2load sends failed: {code}"))?;
    }
    let token = fixtures::login(&first_channel, &users[0].login, &users[0].password).await?.access_token;
    let answer = pb::auth_client::AuthClient::new(second_channel)
        .validate_token(pb::ValidateTokenRequest { access_token: token.clone() })
        .await?
        .into_inner();
    anyhow::ensure!(answer.valid, "the second server refused the first's token: {:?}", answer.invalid_reason);

    let login_calls = super::login_clients(&users);
    let validate_calls = [validate_client(&token), validate_client(&token)];
    let rpc_concurrency = bench.args.rpc_concurrency.max(2);
    let (mut logins, mut validations) = (Compared::default(), Compared::default());
    for _ in 0..bench.rounds() {
        let phase = bench.phase(login_concurrency);
        let one = with_database_cpu(phase, drive(bench, &[&first], &login_calls, login_calls.len(), phase)).await?;
        let two =
            with_database_cpu(phase, drive(bench, &[&first, &second], &login_calls, login_calls.len(), phase)).await?;
        logins.add(one, two);
        let phase = bench.phase(rpc_concurrency);
        let connections = bench.connections().max(2);
        let one = with_database_cpu(phase, drive(bench, &[&first], &validate_calls, connections, phase)).await?;
        let two =
            with_database_cpu(phase, drive(bench, &[&first, &second], &validate_calls, connections, phase)).await?;
        validations.add(one, two);
    }
    logins.report(found, "Login", login_concurrency);
    validations.report(found, "ValidateToken", rpc_concurrency);
    second.stop().await?;
    first.stop().await
}
