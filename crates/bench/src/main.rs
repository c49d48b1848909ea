//! `identity-bench`: CLI parsing only; the measuring is in the library.
#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use identity::config::Config;
use identity_bench::BenchArgs;

/// Measure the identity service against its hardware limits (docs/PERFORMANCE.md).
#[derive(Parser)]
#[command(name = "identity-bench", version)]
struct Cli {
    /// The service's TOML configuration: its argon2 parameters and hashing
    /// pool are the ones measured; `IDENTITY_*` variables override it.
    #[arg(long, short, env = "IDENTITY_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = Config::load(cli.config.as_deref()).map_err(anyhow::Error::from).and_then(|config| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(identity_bench::run(cli.args, &config))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("identity-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
