//! The scenarios of issue #10, each against servers of its own, and the
//! operations their load phases repeat.

mod client;
mod during_reset;
mod gateway;
mod login;
mod memory;
mod page_vs_rpc;
mod pages;
mod purge;
mod reset;
mod scale;
mod scaleout;
mod secrets;
mod signin;
mod validate;

use std::sync::Arc;

use tonic::transport::Channel;

use super::{
    Bench, Check, Measurement, Scenario,
    fixtures::Credentials,
    load::{Operation, Outcome},
};
use identity::pb::{self, auth_client::AuthClient};

/// What a scenario measured, kept even when it fails half-way.
#[derive(Default)]
pub struct Found {
    pub measurements: Vec<Measurement>,
    pub checks: Vec<Check>,
}

impl Found {
    pub fn measured(&mut self, measurement: Measurement) {
        super::progress(&format!(
            "{}: {}: {} ok, {:.1}/s, p99 {} ms",
            measurement.scenario,
            measurement.name,
            measurement.completed,
            measurement.throughput.unwrap_or(0.0),
            measurement.p99_ms.map_or_else(|| "-".to_owned(), |p| format!("{p:.3}")),
        ));
        self.measurements.push(measurement);
    }

    pub fn check(&mut self, check: Check) {
        self.checks.push(check);
    }
}

pub async fn run(bench: &Bench, scenario: Scenario, found: &mut Found) -> anyhow::Result<()> {
    match scenario {
        Scenario::Login => login::run(bench, found).await,
        Scenario::Validate => validate::run(bench, found).await,
        Scenario::Reset => reset::run(bench, found).await,
        Scenario::Gateway => gateway::run(bench, found).await,
        Scenario::Memory => memory::run(bench, found).await,
        Scenario::Scale => scale::run(bench, found).await,
        Scenario::Secrets => secrets::run(bench, found).await,
        Scenario::Signin => signin::run(bench, found).await,
        Scenario::Purge => purge::run(bench, found).await,
        Scenario::Client => client::run(bench, found).await,
        Scenario::Pages => pages::run(bench, found).await,
        Scenario::DuringReset => during_reset::run(bench, found).await,
        Scenario::Scaleout => scaleout::run(bench, found).await,
    }
}

/// One h2load process per account, each sending that account's Login.
pub fn login_clients(users: &[Credentials]) -> Vec<crate::h2load::Client> {
    users
        .iter()
        .map(|user| {
            let request = pb::LoginRequest { user_login: user.login.clone(), password: user.password.clone() };
            crate::h2load::Client::unary("/identity.v1.Auth/Login", &request)
        })
        .collect()
}

/// A gRPC failure as a label: its code's name.
pub fn code_label(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// One password login; only a session counts as success.
pub async fn login_once(channel: Channel, login: String, password: String) -> Outcome {
    let answer = AuthClient::new(channel)
        .login(pb::LoginRequest { user_login: login, password })
        .await
        .map_err(|status| code_label(&status))?
        .into_inner();
    match answer.result {
        Some(pb::login_response::Result::Session(_)) => Ok(()),
        _ => Err("NoSession".to_owned()),
    }
}

/// Caller `i` logs in as user `i` (modulo the users), over connection `i`:
/// the bench's own client, for comparisons whose other side it also drives.
pub fn login_operation(channels: Vec<Channel>, users: Vec<Credentials>) -> Operation {
    let (channels, users) = (Arc::new(channels), Arc::new(users));
    Arc::new(move |worker, _seq| {
        let channel = channels[worker % channels.len()].clone();
        let user = users[worker % users.len()].clone();
        Box::pin(login_once(channel, user.login, user.password))
    })
}

/// Caller `i` validates token `i` (modulo the tokens); a token found invalid is an error.
pub fn validate_operation(channels: Vec<Channel>, tokens: Vec<String>) -> Operation {
    let (channels, tokens) = (Arc::new(channels), Arc::new(tokens));
    Arc::new(move |worker, _seq| {
        let mut client = AuthClient::new(channels[worker % channels.len()].clone());
        let access_token = tokens[worker % tokens.len()].clone();
        Box::pin(async move {
            let answer = client
                .validate_token(pb::ValidateTokenRequest { access_token })
                .await
                .map_err(|status| code_label(&status))?;
            if answer.into_inner().valid { Ok(()) } else { Err("TokenInvalid".to_owned()) }
        })
    })
}

/// A ratio that is NaN instead of infinite when the limit measured nothing.
pub fn ratio(value: f64, limit: f64) -> f64 {
    if limit > 0.0 { value / limit } else { f64::NAN }
}

/// How many times cheaper the limit's operation is in CPU time than the
/// measured one: the throughput ratio an otherwise idle machine would show
/// when both are CPU-bound.
pub fn cpu_ratio(limit_ms: Option<f64>, measured_ms: Option<f64>) -> f64 {
    match (limit_ms, measured_ms) {
        (Some(limit), Some(measured)) if measured > 0.0 => limit / measured,
        _ => f64::NAN,
    }
}
