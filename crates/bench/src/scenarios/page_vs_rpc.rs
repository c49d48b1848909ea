//! What a page costs beyond the RPC it makes: the page driven by wrk, the RPC
//! by the bench's client, alternately in each round, compared by server CPU
//! per request (the median of per-round differences). The sign-in page and
//! the Users page are measured this way; and the plain HTTP/1.1 a bench needs
//! to get a browser's cookies (no client library for a handful of requests).

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Found, gateway::wrk};
use crate::{
    Bench, Bound, Check, Measurement,
    load::{self, Operation, Sample},
    median,
    server::ServerUnderTest,
};

/// One page against its RPC.
pub struct Comparison<'a> {
    pub scenario: &'static str,
    /// The page's measurement, e.g. "POST /login via wrk".
    pub page: String,
    /// The RPC's measurement, e.g. "Auth.Login over gRPC".
    pub rpc: String,
    /// wrk's script (name, Lua) and the URL it drives.
    pub script: (&'a str, &'a str),
    pub url: &'a str,
    /// What the script counts as failed, for the error column.
    pub failure: &'static str,
    pub check: String,
    /// Milliseconds of server CPU the page may add per request.
    pub target_ms: f64,
}

pub async fn compare(
    bench: &Bench,
    server: &ServerUnderTest,
    found: &mut Found,
    comparison: Comparison<'_>,
    operation: Operation,
) -> anyhow::Result<()> {
    let concurrency = bench.concurrency();
    let seconds = bench.args.duration.as_secs_f64().ceil().max(1.0) as u64;
    let phase = load::Phase { duration: Duration::from_secs(seconds), ..bench.phase(concurrency) };
    let (mut page_cpu, mut rpc_cpu, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ok, mut failed, mut elapsed) = (0, 0, Duration::ZERO);
    let mut rpc = Sample::default();
    let (mut page_peak, mut rpc_peak) = (None, None);
    for _ in 0..bench.rounds() {
        server.reset_peak_rss();
        let run = wrk(bench, server, comparison.script, comparison.url, concurrency, seconds).await?;
        page_peak = page_peak.max(server.peak_rss_kib());
        server.reset_peak_rss();
        let round = load::run(phase, Some(server.pid()), operation.clone()).await;
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
        errors.insert(comparison.failure.to_owned(), failed);
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
            ..Measurement::new(comparison.scenario, comparison.page)
        }
        .rss_kib(page_peak),
    );
    found.measured(Measurement {
        cpu_ms_per_op: Some(median(&rpc_cpu)),
        server_cpu_ms_per_op: Some(median(&rpc_cpu)),
        ..Measurement::from_sample(comparison.scenario, comparison.rpc, concurrency, &rpc).rss_kib(rpc_peak)
    });
    let gaps: Vec<f64> = page_cpu.iter().zip(&rpc_cpu).map(|(page, rpc)| page - rpc).collect();
    found.check(Check::median(comparison.scenario, comparison.check, &gaps, Bound::Below, comparison.target_ms));
    Ok(())
}

pub fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// One HTTP/1.1 exchange on loopback; `{host}` in `request` becomes the authority.
async fn exchange(http_url: &str, request: &str) -> anyhow::Result<String> {
    let authority = http_url.strip_prefix("http://").context("the bench drives a plain-http gateway")?;
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream.write_all(request.replace("{host}", authority).as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

/// `name=value` of the `Set-Cookie` for `name` in an answer.
fn set_cookie(answer: &str, name: &str) -> Option<String> {
    answer
        .lines()
        .filter_map(|line| line.strip_prefix("set-cookie: ").or_else(|| line.strip_prefix("Set-Cookie: ")))
        .find(|value| value.starts_with(&format!("{name}=")))
        .and_then(|value| value.split(';').next())
        .map(str::to_owned)
}

/// The anti-forgery cookie (`name=value`) and token a browser gets with the login page.
pub async fn login_page_csrf(http_url: &str) -> anyhow::Result<(String, String)> {
    let page = exchange(http_url, "GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").await?;
    let cookie = set_cookie(&page, "identity-csrf").context("the login page set no anti-forgery cookie")?;
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).context("the login page has no anti-forgery token")? + marker.len();
    let Some(end) = page[start..].find('"') else { bail!("an unterminated token") };
    Ok((cookie, page[start..start + end].to_owned()))
}

/// Signs a user in through the login page: the `Cookie` header of a
/// signed-in browser (session and anti-forgery cookies).
pub async fn sign_in(http_url: &str, login: &str, password: &str) -> anyhow::Result<String> {
    let (csrf, token) = login_page_csrf(http_url).await?;
    let body = format!("csrf={}&user_login={}&password={}", encode(&token), encode(login), encode(password));
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: {{host}}\r\nConnection: close\r\nCookie: {csrf}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(http_url, &request).await?;
    let session = set_cookie(&answer, "identity-session").context("signing in set no session cookie")?;
    Ok(format!("{session}; {csrf}"))
}
