//! An internal HTTP service that trusts the identity service's access tokens:
//! `GET /whoami` answers who called (from the typed `Caller` the layer put in
//! the request), `GET /healthz` needs no token.
//!
//! ```text
//! cargo run -p identity-client --example guarded_service -- \
//!     --identity http://127.0.0.1:50051 --issuer http://127.0.0.1:8080 --listen 127.0.0.1:3000
//! curl -H "authorization: Bearer $TOKEN" http://127.0.0.1:3000/whoami
//! ```
#![forbid(unsafe_code)]

use std::{net::SocketAddr, time::Duration};

use axum::{Extension, Router, routing::get};
use clap::Parser;
use identity_client::{Authenticator, BearerLayer, Caller, Clients, Config, RevocationCheck};

#[derive(Parser)]
struct Args {
    /// The identity service's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    identity: String,
    /// The `iss` its tokens carry (its `tokens.issuer`, by default its public URL).
    #[arg(long)]
    issuer: String,
    /// The `aud` its tokens carry.
    #[arg(long, default_value = "identity")]
    audience: String,
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// How long a "live" revocation answer is trusted, in ms (0: no revocation check).
    #[arg(long, default_value_t = 1000)]
    revocation_ttl_ms: u64,
}

async fn whoami(Extension(caller): Extension<Caller>) -> String {
    format!(
        "user_id={}\nlogin={}\nsubscription_id={}\nrole={}\n",
        caller.user_id,
        caller.login,
        caller.subscription_id,
        caller.role.as_str_name()
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    // Lazy: this service may start before the identity service answers.
    let clients = Clients::connect_lazy(args.identity)?;
    let revocation = (args.revocation_ttl_ms > 0)
        .then(|| RevocationCheck { ttl: Duration::from_millis(args.revocation_ttl_ms), ..RevocationCheck::default() });
    let config = Config { audience: args.audience, revocation, ..Config::new(args.issuer) };
    let authenticator = Authenticator::new(clients.auth, config)?;

    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(BearerLayer::new(authenticator).allow_anonymous("/healthz"));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or(()) }).await?;
    Ok(())
}
