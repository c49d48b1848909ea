//! The Users page of the gateway: `GET /users` (first page, and a page deep in
//! 100,000 users, `--page-users`) driven by wrk against the `Users.ListUsers` it makes, over
//! gRPC directly with the same page token. The difference in server CPU per
//! page is what the page costs beyond the RPC: opening the session cookie,
//! `Users.GetCapabilities`, rendering 50 rows.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Found, code_label, gateway::wrk};
use crate::{
    Bench, Bound, Check, Measurement, fixtures,
    load::{self, Operation, Sample},
    median,
    server::{ServerSpec, ServerUnderTest},
};
use identity::{
    config::Argon2Config,
    pb::{self, users_client::UsersClient},
};

const SCENARIO: &str = "pages";
/// The page size of the Users page.
const PAGE: i32 = 50;

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let argon2 = Argon2Config { memory_kib: 64, iterations: 1, parallelism: 1, ..bench.argon2.clone() };
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2, env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let users = bench.args.page_users.max(2 * PAGE as u64);
    let took = fixtures::bulk_insert_users(&server, &tenant, 0..users).await?;
    crate::progress(&format!("{SCENARIO}: {users} users inserted in {:.1} s", took.as_secs_f64()));
    let deep = deep_token(&server, &tenant.token, users).await?;
    let cookie = sign_in(&server.http_url, &tenant.manager_login, &tenant.manager_password).await?;
    let concurrency = bench.concurrency();
    let seconds = bench.args.duration.as_secs_f64().ceil().max(1.0) as u64;
    let phase = load::Phase { duration: Duration::from_secs(seconds), ..bench.phase(concurrency) };
    let channels = server.channels(bench.connections()).await?;
    for (label, token) in [("first page", String::new()), ("deep page", deep)] {
        let url = if token.is_empty() {
            format!("{}/users", server.http_url)
        } else {
            format!("{}/users?page={}", server.http_url, encode(&token))
        };
        let (mut page_cpu, mut rpc_cpu, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut ok, mut failed, mut elapsed) = (0, 0, Duration::ZERO);
        let mut rpc = Sample::default();
        let (mut page_peak, mut rpc_peak) = (None, None);
        let operation = list_operation(channels.clone(), tenant.token.clone(), token.clone());
        for _ in 0..bench.rounds() {
            server.reset_peak_rss();
            let run = wrk(bench, &server, ("users-page", &script(&cookie)), &url, concurrency, seconds).await?;
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
            errors.insert("not a 200 with the users table".to_owned(), failed);
        }
        found.measured(Measurement {
            concurrency: Some(concurrency),
            completed: ok,
            throughput: Some(ok as f64 / elapsed.as_secs_f64().max(f64::EPSILON)),
            p50_ms: Some(median(&p50s)),
            p99_ms: Some(median(&p99s)),
            cpu_ms_per_op: Some(median(&page_cpu)),
            server_cpu_ms_per_op: Some(median(&page_cpu)),
            errors,
            server_peak_rss_mib: page_peak.map(|kib| kib as f64 / 1024.0),
            ..Measurement::new(SCENARIO, format!("GET /users via wrk, {label} of {users} users"))
        });
        found.measured(Measurement {
            cpu_ms_per_op: Some(median(&rpc_cpu)),
            server_cpu_ms_per_op: Some(median(&rpc_cpu)),
            server_peak_rss_mib: rpc_peak.map(|kib| kib as f64 / 1024.0),
            ..Measurement::from_sample(SCENARIO, format!("Users.ListUsers over gRPC, {label}"), concurrency, &rpc)
        });
        let gaps: Vec<f64> = page_cpu.iter().zip(&rpc_cpu).map(|(page, rpc)| page - rpc).collect();
        found.check(Check::median(
            SCENARIO,
            format!("users page server CPU beyond ListUsers, {label}, median of rounds"),
            &gaps,
            Bound::Below,
            2.0,
        ));
    }
    server.stop().await
}

/// The page token of a page about nine tenths into the list, reached in big steps.
async fn deep_token(server: &ServerUnderTest, token: &str, users: u64) -> anyhow::Result<String> {
    let mut client = UsersClient::new(server.channel().await?);
    let mut page_token = String::new();
    for _ in 0..(users * 9 / 10 / 500) {
        let request = pb::ListUsersRequest { page_size: 500, page_token, ..Default::default() };
        page_token = client.list_users(fixtures::bearer(request, token)?).await?.into_inner().next_page_token;
        if page_token.is_empty() {
            bail!("the list ended before {users} users");
        }
    }
    Ok(page_token)
}

/// Each caller lists the same page as the Users page does.
fn list_operation(channels: Vec<tonic::transport::Channel>, token: String, page_token: String) -> Operation {
    let channels = Arc::new(channels);
    Arc::new(move |worker, _seq| {
        let mut client = UsersClient::new(channels[worker % channels.len()].clone());
        let request = pb::ListUsersRequest { page_size: PAGE, page_token: page_token.clone(), ..Default::default() };
        let request = fixtures::bearer(request, &token);
        Box::pin(async move {
            let answer = client.list_users(request.map_err(|e| e.to_string())?).await.map_err(|s| code_label(&s))?;
            if answer.into_inner().users.len() == PAGE as usize { Ok(()) } else { Err("ShortPage".to_owned()) }
        })
    })
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// One HTTP/1.1 exchange on loopback (no client library for two requests).
async fn exchange(http_url: &str, request: &str) -> anyhow::Result<String> {
    let authority = http_url.strip_prefix("http://").context("the bench drives a plain-http gateway")?;
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream.write_all(request.replace("{host}", authority).as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

fn set_cookie(answer: &str, name: &str) -> Option<String> {
    answer
        .lines()
        .filter_map(|line| line.strip_prefix("set-cookie: ").or_else(|| line.strip_prefix("Set-Cookie: ")))
        .find(|value| value.starts_with(&format!("{name}=")))
        .and_then(|value| value.split(';').next())
        .map(str::to_owned)
}

/// Signs the Manager in through the login page: the `Cookie` header of a
/// signed-in browser (session and anti-forgery cookies).
async fn sign_in(http_url: &str, login: &str, password: &str) -> anyhow::Result<String> {
    let page = exchange(http_url, "GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").await?;
    let csrf = set_cookie(&page, "identity-csrf").context("the login page set no anti-forgery cookie")?;
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).context("the login page has no anti-forgery token")? + marker.len();
    let Some(end) = page[start..].find('"') else { bail!("an unterminated token") };
    let body = format!(
        "csrf={}&user_login={}&password={}",
        encode(&page[start..start + end]),
        encode(login),
        encode(password)
    );
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: {{host}}\r\nConnection: close\r\nCookie: {csrf}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(http_url, &request).await?;
    let session = set_cookie(&answer, "identity-session").context("signing in set no session cookie")?;
    Ok(format!("{session}; {csrf}"))
}

/// Every request asks for the page; anything but a 200 showing the table counts as failed.
fn script(cookie: &str) -> String {
    format!(
        r#"failures = 0
wrk.headers["Cookie"] = "{cookie}"

response = function(status, headers, body)
  if status ~= 200 or not string.find(body, 'id="users"', 1, true) then
    failures = failures + 1
  end
end

{report}"#,
        report = super::gateway::WRK_REPORT
    )
}
