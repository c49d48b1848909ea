//! The sign-in page: `POST /login` driven by wrk against the `Auth.Login` it
//! makes, over gRPC directly. The difference in server CPU per sign-in is
//! what the page costs beyond the password check: rendering nothing (a 303),
//! opening the anti-forgery cookie, sealing the session cookie.
//!
//! Cheap argon2 on both sides, as in the gateway scenario: the page does no
//! hashing of its own, and OWASP parameters would bury its cost in noise.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Found, gateway::wrk, login_operation};
use crate::{
    Bench, Bound, Check, Measurement, fixtures,
    load::{self, Sample},
    median,
    server::{ServerSpec, ServerUnderTest},
};
use identity::config::Argon2Config;

const SCENARIO: &str = "signin";

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let argon2 = Argon2Config { memory_kib: 64, iterations: 1, parallelism: 1, ..bench.argon2.clone() };
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2, env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let concurrency = bench.concurrency();
    let users = fixtures::active_users(&server, &tenant, "s", concurrency).await?;
    fixtures::wait_for_emails(&server, users.len()).await?;
    let (cookie, token) = csrf_pair(&server.http_url).await?;
    let seconds = bench.args.duration.as_secs_f64().ceil().max(1.0) as u64;
    let phase = load::Phase { duration: Duration::from_secs(seconds), ..bench.phase(concurrency) };
    let channels = server.channels(bench.connections()).await?;
    let script = script(&cookie, &token, &users);
    let url = format!("{}/login", server.http_url);

    let (mut page_cpu, mut rpc_cpu, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ok, mut failed, mut elapsed) = (0, 0, Duration::ZERO);
    let mut rpc = Sample::default();
    let (mut page_peak, mut rpc_peak) = (None, None);
    for _ in 0..bench.rounds() {
        server.reset_peak_rss();
        let run = wrk(bench, &server, ("signin", &script), &url, concurrency, seconds).await?;
        page_peak = page_peak.max(server.peak_rss_kib());
        server.reset_peak_rss();
        let round = load::run(phase, Some(server.pid()), login_operation(channels.clone(), users.clone())).await;
        rpc_peak = rpc_peak.max(server.peak_rss_kib());
        if run.ok > 0 && round.completed > 0 {
            page_cpu.push(run.server_cpu_s * 1000.0 / run.ok as f64);
            rpc_cpu.push(round.cpu.server * 1000.0 / round.completed as f64);
        }
        p50s.push(run.p50_ms);
        p99s.push(run.p99_ms);
        (ok, failed, elapsed) = (ok + run.ok, failed + run.failed, elapsed + run.duration);
        rpc.merge(round);
    }
    let mut errors = std::collections::BTreeMap::new();
    if failed > 0 {
        errors.insert("not a 303 to /account".to_owned(), failed);
    }
    found.measured(
        Measurement {
            concurrency: Some(concurrency),
            completed: ok,
            throughput: Some(ok as f64 / elapsed.as_secs_f64().max(f64::EPSILON)),
            p50_ms: Some(median(&p50s)),
            p99_ms: Some(median(&p99s)),
            cpu_ms_per_op: Some(median(&page_cpu)),
            server_cpu_ms_per_op: Some(median(&page_cpu)),
            errors,
            ..Measurement::new(SCENARIO, "POST /login via wrk (sign-in page round trip)")
        }
        .rss_kib(page_peak),
    );
    found.measured(Measurement {
        cpu_ms_per_op: Some(median(&rpc_cpu)),
        server_cpu_ms_per_op: Some(median(&rpc_cpu)),
        ..Measurement::from_sample(SCENARIO, "Auth.Login over gRPC", concurrency, &rpc).rss_kib(rpc_peak)
    });
    let gaps: Vec<f64> = page_cpu.iter().zip(&rpc_cpu).map(|(page, rpc)| page - rpc).collect();
    found.check(Check::median(
        SCENARIO,
        "sign-in page server CPU beyond Auth.Login, per sign-in, median of rounds",
        &gaps,
        Bound::Below,
        1.0,
    ));
    server.stop().await
}

/// The anti-forgery cookie and token a browser gets with the login page
/// (plain HTTP/1.1 on loopback: one request needs no client library).
async fn csrf_pair(http_url: &str) -> anyhow::Result<(String, String)> {
    let authority = http_url.strip_prefix("http://").context("the bench drives a plain-http gateway")?;
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let request = format!("GET /login HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let cookie = answer
        .lines()
        .filter_map(|line| line.strip_prefix("set-cookie: ").or_else(|| line.strip_prefix("Set-Cookie: ")))
        .find(|value| value.starts_with("identity-csrf="))
        .and_then(|value| value.split(';').next())
        .context("the login page set no anti-forgery cookie")?
        .to_owned();
    let marker = "name=\"csrf\" value=\"";
    let start = answer.find(marker).context("the login page has no anti-forgery token")? + marker.len();
    let Some(end) = answer[start..].find('"') else { bail!("an unterminated token") };
    Ok((cookie, answer[start..start + end].to_owned()))
}

/// Each request signs one user in (round robin); anything but a 303 to
/// `/account` counts as failed.
fn script(cookie: &str, token: &str, users: &[fixtures::Credentials]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let bodies = users
        .iter()
        .map(|u| {
            format!(
                "{:?}",
                format!("csrf={}&user_login={}&password={}", encode(token), encode(&u.login), encode(&u.password))
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"local bodies = {{ {bodies} }}
local sent = 0
failures = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "{cookie}"

request = function()
  sent = sent + 1
  return wrk.format(nil, nil, nil, bodies[(sent % #bodies) + 1])
end

response = function(status, headers, body)
  if status ~= 303 or headers["location"] ~= "/account" then
    failures = failures + 1
  end
end

{report}"#,
        report = super::gateway::WRK_REPORT
    )
}
