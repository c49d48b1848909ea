//! The legacy gateway's `password_change.php` for one user per request,
//! driven by a load generator that is not ours (wrk), against the same calls
//! made over gRPC directly: Login, ResetPasswords with email=0, and the
//! Logout with which the gateway ends each one-call session.
//!
//! The server hashes with cheap argon2 parameters here: with OWASP's, each
//! request would spend ~30 ms hashing and a sub-millisecond overhead would
//! vanish in the noise. The gateway does no hashing of its own, so cheap
//! parameters change both sides alike.

use std::{
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use base64::Engine as _;
use tonic::transport::Channel;

use super::{Found, code_label};
use identity::{
    config::Argon2Config,
    pb::{self, auth_client::AuthClient, reset_client::ResetClient},
};

use crate::{
    Bench, Bound, Check, Measurement,
    fixtures::{self, Tenant},
    load::{self, Operation, Sample},
    median,
    procfs::CpuSnapshot,
    server::{ServerSpec, ServerUnderTest},
};

const SCENARIO: &str = "gateway";

/// What wrk reported for one run.
#[derive(Default)]
pub struct WrkRun {
    pub ok: u64,
    pub failed: u64,
    pub duration: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU the server process (gateway included) used during the run, in seconds.
    pub server_cpu_s: f64,
}

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        bail!("wrk is not installed (Debian: apt-get install wrk)");
    }
    let argon2 = Argon2Config { memory_kib: 64, iterations: 1, parallelism: 1, ..bench.argon2.clone() };
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2, env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let concurrency = bench.concurrency();
    // One target per caller: concurrent resets of one user would queue on its row.
    let targets = fixtures::create_users(&server, &tenant, "g", concurrency, 8).await?;
    fixtures::wait_for_emails(&server, targets.len()).await?;
    // wrk runs whole seconds; the gRPC side is measured for the same time.
    let seconds = bench.args.duration.as_secs_f64().ceil().max(1.0) as u64;
    let phase = |callers| load::Phase { duration: Duration::from_secs(seconds), ..bench.phase(callers) };
    let channels = server.channels(bench.connections()).await?;

    let mut levels = vec![1, concurrency];
    levels.dedup();
    for callers in levels {
        let mut gateway = WrkRun::default();
        let (mut gateway_p50s, mut gateway_p99s, mut p50_gaps) = (Vec::new(), Vec::new(), Vec::new());
        let mut grpc = Sample::default();
        let (mut gateway_peak, mut grpc_peak) = (None, None);
        for _ in 0..bench.rounds() {
            server.reset_peak_rss();
            let url = format!("{}/msp/password_change.php", server.http_url);
            let script = script(&tenant, &targets[..callers]);
            let run = wrk(bench, &server, ("password_change", &script), &url, callers, seconds).await?;
            gateway_peak = gateway_peak.max(server.peak_rss_kib());
            server.reset_peak_rss();
            let operation = pair_operation(channels.clone(), &tenant, targets[..callers].to_vec());
            let round = load::run(phase(callers), Some(server.pid()), operation).await;
            grpc_peak = grpc_peak.max(server.peak_rss_kib());
            p50_gaps.push(run.p50_ms - round.quantile_ms(0.50).unwrap_or(f64::NAN));
            gateway_p50s.push(run.p50_ms);
            gateway_p99s.push(run.p99_ms);
            gateway.ok += run.ok;
            gateway.failed += run.failed;
            gateway.duration += run.duration;
            gateway.server_cpu_s += run.server_cpu_s;
            grpc.merge(round);
        }
        let gateway_rate = gateway.ok as f64 / gateway.duration.as_secs_f64();
        // Server-process CPU per request: wrk's own CPU is another process's, so the
        // load generators are left out on both sides.
        let gateway_cpu = (gateway.ok > 0).then(|| gateway.server_cpu_s * 1000.0 / gateway.ok as f64);
        let grpc_cpu = (grpc.completed > 0).then(|| grpc.cpu.server * 1000.0 / grpc.completed as f64);
        let mut errors = std::collections::BTreeMap::new();
        if gateway.failed > 0 {
            errors.insert("not SUCCESS".to_owned(), gateway.failed);
        }
        found.measured(
            Measurement {
                concurrency: Some(callers),
                completed: gateway.ok,
                throughput: Some(gateway_rate),
                p50_ms: Some(median(&gateway_p50s)),
                p99_ms: Some(median(&gateway_p99s)),
                cpu_ms_per_op: gateway_cpu,
                server_cpu_ms_per_op: gateway_cpu,
                errors,
                ..Measurement::new(SCENARIO, "password_change.php via wrk (email=0)")
            }
            .rss_kib(gateway_peak),
        );
        found.measured(Measurement {
            cpu_ms_per_op: grpc_cpu,
            server_cpu_ms_per_op: grpc_cpu,
            ..Measurement::from_sample(SCENARIO, "Login + ResetPasswords + Logout over gRPC (email=0)", callers, &grpc)
                .rss_kib(grpc_peak)
        });
        let (name, overhead) = if callers == 1 {
            ("overhead per request, p50 latency, 1 caller".to_owned(), median(&p50_gaps))
        } else {
            (
                format!("overhead per request, 1/throughput, {callers} callers"),
                1000.0 / gateway_rate - 1000.0 / grpc.throughput(),
            )
        };
        found.check(Check::new(SCENARIO, name, overhead, Bound::Below, 1.0, " ms"));
        if let (Some(gateway_cpu), Some(grpc_cpu)) = (gateway_cpu, grpc_cpu) {
            found.check(Check::new(
                SCENARIO,
                format!("overhead per request, server CPU time, {callers} caller(s)"),
                gateway_cpu - grpc_cpu,
                Bound::Below,
                1.0,
                " ms",
            ));
        }
    }
    server.stop().await
}

/// What the gateway does, done by us: Login with the Manager's password,
/// ResetPasswords of caller `i`'s target with the token (email=0), then a
/// Logout the answer does not wait for, as the gateway ends its one-call sessions.
fn pair_operation(channels: Vec<Channel>, tenant: &Tenant, targets: Vec<String>) -> Operation {
    let channels = Arc::new(channels);
    let targets = Arc::new(targets);
    let (login, password) = (tenant.manager_login.clone(), tenant.manager_password.clone());
    Arc::new(move |worker, _seq| {
        let channel = channels[worker % channels.len()].clone();
        let target = targets[worker % targets.len()].clone();
        let (login, password) = (login.clone(), password.clone());
        Box::pin(async move {
            let answer = AuthClient::new(channel.clone())
                .login(pb::LoginRequest { user_login: login, password })
                .await
                .map_err(|status| code_label(&status))?
                .into_inner();
            let Some(pb::login_response::Result::Session(session)) = answer.result else {
                return Err("NoSession".to_owned());
            };
            let request = fixtures::bearer(
                pb::ResetPasswordsRequest {
                    user_logins: vec![target],
                    all: false,
                    notify_by_email: false,
                    ..Default::default()
                },
                &session.access_token,
            )
            .map_err(|_| "BadToken".to_owned())?;
            let results = ResetClient::new(channel.clone())
                .reset_passwords(request)
                .await
                .map_err(|status| code_label(&status))?
                .into_inner()
                .results;
            if let Ok(logout) = fixtures::bearer(pb::LogoutRequest {}, &session.access_token) {
                tokio::spawn(async move { AuthClient::new(channel).logout(logout).await });
            }
            if results.iter().all(|r| r.changed) { Ok(()) } else { Err("NotChanged".to_owned()) }
        })
    })
}

/// The end of every wrk script: counts each thread's `failures` and prints the
/// `BENCH …` line [`parse`] reads.
pub const WRK_REPORT: &str = r#"
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

done = function(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
  end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d failed=%d socket_errors=%d\n",
    summary.requests, summary.duration, math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
    failed, e.connect + e.read + e.write + e.timeout))
end
"#;

/// The wrk script: Basic auth, the required X-Requested-With header, a form
/// body naming one target per request (round robin), and a count of replies
/// that are not a 200 with `status="SUCCESS"`.
fn script(tenant: &Tenant, targets: &[String]) -> String {
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", tenant.manager_login, tenant.manager_password));
    let targets = targets.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ");
    format!(
        r#"local targets = {{ {targets} }}
local sent = 0
failures = 0
wrk.method = "POST"
wrk.headers["Authorization"] = "Basic {basic}"
wrk.headers["X-Requested-With"] = "identity-bench"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

request = function()
  sent = sent + 1
  local target = targets[(sent % #targets) + 1]
  return wrk.format(nil, nil, nil, "user_logins=" .. target .. "&email=0")
end

response = function(status, headers, body)
  if status ~= 200 or not string.find(body, 'status="SUCCESS"', 1, true) then
    failures = failures + 1
  end
end

{report}"#,
        report = WRK_REPORT
    )
}

/// Runs wrk with `script` against `url` (one thread, `connections` keep-alive
/// connections): a warm-up run, then the measured one. The script prints the
/// `BENCH …` line of [`script`]'s `done`.
pub async fn wrk(
    bench: &Bench,
    server: &ServerUnderTest,
    (name, script): (&str, &str),
    url: &str,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<WrkRun> {
    let script_path = server.dir.join(format!("{name}-{connections}.lua"));
    std::fs::write(&script_path, script)?;
    let warmup = bench.args.warmup.as_secs_f64().ceil() as u64;
    let mut runs = Vec::new();
    if warmup > 0 {
        runs.push(warmup);
    }
    runs.push(seconds);
    let mut last = None;
    let server_pid = Some(server.pid());
    for run in runs {
        let before = CpuSnapshot::take(server_pid);
        let mut command = Command::new("wrk");
        command
            .args(["-t1", &format!("-c{connections}"), &format!("-d{run}s"), "--timeout", "10s", "-s"])
            .arg(&script_path)
            .arg(url);
        let output = tokio::task::spawn_blocking(move || command.output()).await?.context("cannot run wrk")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!("wrk failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        }
        let mut parsed = parse(&stdout).with_context(|| format!("unexpected wrk output:\n{stdout}"))?;
        parsed.server_cpu_s = CpuSnapshot::take(server_pid).since(before).server;
        last = Some(parsed);
    }
    last.context("wrk did not run")
}

fn parse(stdout: &str) -> Option<WrkRun> {
    let line = stdout.lines().find_map(|line| line.strip_prefix("BENCH "))?;
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace().find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    // Socket errors are not among the completed requests; refused replies are.
    let (requests, refused) = (field("requests")?, field("failed")?);
    Some(WrkRun {
        ok: requests.saturating_sub(refused),
        failed: refused + field("socket_errors")?,
        duration: Duration::from_micros(field("duration_us")?),
        p50_ms: field("p50_us")? as f64 / 1000.0,
        p99_ms: field("p99_us")? as f64 / 1000.0,
        server_cpu_s: 0.0,
    })
}
