//! The sign-in page: `POST /login` driven by wrk against the `Auth.Login` it
//! makes, over gRPC directly. The difference in server CPU per sign-in is
//! what the page costs beyond the password check: rendering nothing (a 303),
//! opening the anti-forgery cookie, sealing the session cookie.
//!
//! Cheap argon2 on both sides, as in the gateway scenario: the page does no
//! hashing of its own, and OWASP parameters would bury its cost in noise.

use super::{
    Found, login_operation,
    page_vs_rpc::{Comparison, compare, encode, login_page_csrf},
};
use crate::{
    Bench, fixtures,
    server::{ServerSpec, ServerUnderTest},
};
use identity::config::Argon2Config;

const SCENARIO: &str = "signin";

pub async fn run(bench: &Bench, found: &mut Found) -> anyhow::Result<()> {
    let argon2 = Argon2Config { memory_kib: 64, iterations: 1, parallelism: 1, ..bench.argon2.clone() };
    let server = ServerUnderTest::start(bench, &ServerSpec { argon2, env: Vec::new() }).await?;
    let tenant = fixtures::tenant(bench, &server).await?;
    let users = fixtures::active_users(&server, &tenant, "s", bench.concurrency()).await?;
    fixtures::wait_for_emails(&server, users.len()).await?;
    let (cookie, token) = login_page_csrf(&server.http_url).await?;
    let channels = server.channels(bench.connections()).await?;
    let script = script(&cookie, &token, &users);
    let url = format!("{}/login", server.http_url);
    let comparison = Comparison {
        scenario: SCENARIO,
        page: "POST /login via wrk (sign-in page round trip)".to_owned(),
        rpc: "Auth.Login over gRPC".to_owned(),
        script: ("signin", &script),
        url: &url,
        failure: "not a 303 to /account",
        check: "sign-in page server CPU beyond Auth.Login, per sign-in, median of rounds".to_owned(),
        target_ms: 1.0,
    };
    compare(bench, &server, found, comparison, login_operation(channels, users)).await?;
    server.stop().await
}

/// Each request signs one user in (round robin); anything but a 303 to
/// `/account` counts as failed.
fn script(cookie: &str, token: &str, users: &[fixtures::Credentials]) -> String {
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
