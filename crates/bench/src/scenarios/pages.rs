//! The Users page of the gateway: `GET /users` (first page, and a page deep in
//! 100,000 users, `--page-users`) driven by wrk against the `Users.ListUsers` it makes, over
//! gRPC directly with the same page token. The difference in server CPU per
//! page is what the page costs beyond the RPC: opening the session cookie,
//! `Users.GetCapabilities`, rendering 50 rows.

use std::sync::Arc;

use anyhow::bail;

use super::{
    Found, code_label,
    page_vs_rpc::{Comparison, compare, encode, sign_in},
};
use crate::{
    Bench, fixtures,
    load::Operation,
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
    let channels = server.channels(bench.connections()).await?;
    let script = script(&cookie);
    for (label, token) in [("first page", String::new()), ("deep page", deep)] {
        let url = if token.is_empty() {
            format!("{}/users", server.http_url)
        } else {
            format!("{}/users?page={}", server.http_url, encode(&token))
        };
        let comparison = Comparison {
            scenario: SCENARIO,
            page: format!("GET /users via wrk, {label} of {users} users"),
            rpc: format!("Users.ListUsers over gRPC, {label}"),
            script: ("users-page", &script),
            url: &url,
            failure: "not a 200 with the users table",
            check: format!("users page server CPU beyond ListUsers, {label}, median of rounds"),
            target_ms: 2.0,
        };
        let operation = list_operation(channels.clone(), tenant.token.clone(), token);
        compare(bench, &server, found, comparison, operation).await?;
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
