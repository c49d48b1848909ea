//! `identity-bench`: measures the service against its physical limits in the
//! same run on the same machine (raw argon2 in-process, a trivial gRPC call),
//! so the ratios hold on a noisy machine. The server under test is the
//! `identity` binary's `serve` in a child process; see `docs/PERFORMANCE.md`.
//! It lives outside the product crate: the release binary carries none of it.
#![forbid(unsafe_code)]

mod fixtures;
mod h2load;
mod load;
mod procfs;
mod raw;
mod report;
mod scenarios;
mod server;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::bail;

pub use report::{Bound, Check, Machine, Measurement, Report, Settings, median};

use identity::config::{Argon2Config, Config};

/// The scenarios, in the order they run by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Login throughput vs raw argon2 verify throughput.
    Login,
    /// ValidateToken vs a health check over gRPC; p99 at half the peak rate.
    Validate,
    /// Batch reset of many users (email=0, then email=1) vs the hashing time.
    Reset,
    /// The legacy gateway (driven by wrk) vs the same calls over gRPC.
    Gateway,
    /// Peak server memory while a burst of logins arrives at once.
    Memory,
    /// Login and ValidateToken with a small and a large user table.
    Scale,
    /// The CPU of sealing and opening a TOTP secret next to a login's argon2 verify.
    Secrets,
    /// The sign-in page (driven by wrk) vs the Login RPC it makes.
    Signin,
    /// Housekeeping's purge of many expired rows: rows/s, and Login p99 while it runs.
    Purge,
    /// identity-client's bearer layer vs a bare Ed25519 verify; with revocation vs ValidateToken.
    Client,
    /// The Users page, first and deep in 100,000 users (driven by wrk) vs the ListUsers RPC it makes.
    Pages,
    /// ValidateToken and Login throughput while a batch reset runs vs without.
    #[value(name = "during_reset")]
    DuringReset,
    /// Login and ValidateToken on two servers sharing one PostgreSQL vs one server (PostgreSQL only).
    Scaleout,
}

impl Scenario {
    pub const ALL: [Scenario; 13] = [
        Scenario::Login,
        Scenario::Validate,
        Scenario::Reset,
        Scenario::Gateway,
        Scenario::Memory,
        Scenario::Scale,
        Scenario::Signin,
        Scenario::Purge,
        Scenario::Secrets,
        Scenario::Client,
        Scenario::Pages,
        Scenario::DuringReset,
        Scenario::Scaleout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Login => "login",
            Scenario::Validate => "validate",
            Scenario::Reset => "reset",
            Scenario::Gateway => "gateway",
            Scenario::Memory => "memory",
            Scenario::Scale => "scale",
            Scenario::Secrets => "secrets",
            Scenario::Signin => "signin",
            Scenario::Purge => "purge",
            Scenario::Client => "client",
            Scenario::Pages => "pages",
            Scenario::DuringReset => "during_reset",
            Scenario::Scaleout => "scaleout",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

/// Flags of `identity-bench`. The defaults are the real measurement; the
/// argon2 parameters and hashing workers come from the configuration
/// (OWASP's unless overridden), like the server's.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Scenarios to run (default: all, in this order).
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Seconds each load phase is measured.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Seconds of load before each measured phase, not counted.
    #[arg(long, default_value = "3", value_parser = parse_seconds)]
    pub warmup: Duration,
    /// Rounds of each comparison: the service and its limit are measured
    /// alternately, so a machine that slows down or speeds up mid-run affects both.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Concurrent login and gateway clients (default: 4 per core).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Concurrent ValidateToken and health-check clients.
    #[arg(long, default_value_t = 32)]
    pub rpc_concurrency: usize,
    /// HTTP/2 connections the gRPC clients share (default: 2 per core).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Users in the batch reset.
    #[arg(long, default_value_t = 1000)]
    pub batch_users: usize,
    /// Login attempts sent at once in the memory scenario.
    #[arg(long, default_value_t = 1000)]
    pub burst: usize,
    /// Users in the database for the small half of the scale scenario.
    #[arg(long, default_value_t = 100)]
    pub small_users: u64,
    /// Users in the database for the large half of the scale scenario.
    #[arg(long, default_value_t = 1_000_000)]
    pub large_users: u64,
    /// Users in the list of the pages scenario (its deep page is nine tenths in).
    #[arg(long, default_value_t = 100_000)]
    pub page_users: u64,
    /// Expired rows the purge scenario seeds and has housekeeping delete, per round.
    #[arg(long, default_value_t = 1_000_000)]
    pub purge_rows: u64,
    /// Database of the servers under test.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BackendKind,
    /// PostgreSQL server URL (a role that may create databases), for `--backend postgres`;
    /// every server under test gets a fresh database there, dropped afterwards.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json_file: Option<PathBuf>,
    /// The `identity` binary to measure (default: the one beside this
    /// binary, i.e. the same build profile's `target/…/identity`).
    #[arg(long)]
    pub identity: Option<PathBuf>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.parse().map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err("must be 0 to 86400 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Everything scenarios share.
pub struct Bench {
    pub args: BenchArgs,
    /// The `identity` binary that serves.
    pub exe: PathBuf,
    pub scratch: PathBuf,
    pub postgres_admin_url: Option<String>,
    /// argon2 parameters of the measured servers and of the raw limits.
    pub argon2: Argon2Config,
    pub hashing_workers: usize,
    pub hashing_queue: usize,
    pub cores: usize,
}

/// Protective limits raised on every server under test: the whole load comes
/// from one address and a few accounts. The code paths still run (a login
/// still reserves and returns its throttle slots in the database).
const RAISED_LIMITS: [(&str, &str); 4] = [
    ("IDENTITY_THROTTLE__LOGIN_PER_USER", "1000000000"),
    ("IDENTITY_THROTTLE__LOGIN_PER_IP", "1000000000"),
    ("IDENTITY_RESET__ADMIN_RESETS_PER_HOUR", "1000000000"),
    ("IDENTITY_GATEWAY__RATE_LIMIT_PER_USER", "1000000000"),
];

impl Bench {
    pub fn concurrency(&self) -> usize {
        self.args.concurrency.unwrap_or(4 * self.cores).max(1)
    }

    pub fn connections(&self) -> usize {
        self.args.connections.unwrap_or(2 * self.cores).max(1)
    }

    pub fn rounds(&self) -> usize {
        self.args.rounds.max(1)
    }

    pub fn phase(&self, concurrency: usize) -> load::Phase {
        load::Phase { concurrency, warmup: self.args.warmup, duration: self.args.duration, rate: None }
    }

    /// The `identity` binary with a clean `IDENTITY_*` environment, the given argon2
    /// parameters, the bench's hashing pool and raised limits, quiet logs.
    pub fn identity_command(&self, argon2: &Argon2Config, dir: &Path) -> Command {
        let mut command = Command::new(&self.exe);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("IDENTITY_") || k.starts_with("OTEL_")) {
                command.env_remove(key);
            }
        }
        command
            .env("IDENTITY_ARGON2__MEMORY_KIB", argon2.memory_kib.to_string())
            .env("IDENTITY_ARGON2__ITERATIONS", argon2.iterations.to_string())
            .env("IDENTITY_ARGON2__PARALLELISM", argon2.parallelism.to_string())
            .env("IDENTITY_HASHING__WORKERS", self.hashing_workers.to_string())
            .env("IDENTITY_HASHING__QUEUE", self.hashing_queue.to_string())
            .env("IDENTITY_LOG_FILTER", "warn")
            .env("IDENTITY_OUTBOX_DIR", dir.join("outbox"));
        for (key, value) in RAISED_LIMITS {
            command.env(key, value);
        }
        command
    }
}

/// Runs the selected scenarios and prints the report. Fails when a scenario
/// could not run; missed targets are reported, not errors.
pub async fn run(args: BenchArgs, config: &Config) -> anyhow::Result<()> {
    let postgres_admin_url = match (args.backend, &args.database_url) {
        (BackendKind::Sqlite, None) => None,
        (BackendKind::Sqlite, Some(_)) => bail!("--database-url is for --backend postgres"),
        (BackendKind::Postgres, Some(url)) => Some(url.clone()),
        (BackendKind::Postgres, None) => bail!("--backend postgres needs --database-url postgres://…"),
    };
    let scratch = std::env::temp_dir().join(format!("identity-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch)?;
    let scenarios = if args.scenarios.is_empty() { Scenario::ALL.to_vec() } else { args.scenarios.clone() };
    let machine = Machine::probe();
    let bench = Bench {
        exe: identity_binary(args.identity.as_deref())?,
        scratch: scratch.clone(),
        postgres_admin_url,
        argon2: config.argon2.clone(),
        hashing_workers: config.hashing.worker_count(),
        hashing_queue: config.hashing.queue,
        cores: machine.cores,
        args,
    };
    let mut report = Report {
        settings: Settings {
            backend: match bench.args.backend {
                BackendKind::Sqlite => "sqlite".to_owned(),
                BackendKind::Postgres => "postgres".to_owned(),
            },
            scenarios: scenarios.iter().map(|s| s.name().to_owned()).collect(),
            duration_s: bench.args.duration.as_secs_f64(),
            warmup_s: bench.args.warmup.as_secs_f64(),
            rounds: bench.rounds(),
            argon2_memory_kib: bench.argon2.memory_kib,
            argon2_iterations: bench.argon2.iterations,
            argon2_parallelism: bench.argon2.parallelism,
            hashing_workers: bench.hashing_workers,
        },
        machine,
        measurements: Vec::new(),
        checks: Vec::new(),
        failures: Vec::new(),
    };
    for scenario in scenarios {
        progress(&format!("{}: running", scenario.name()));
        let mut found = scenarios::Found::default();
        if let Err(error) = scenarios::run(&bench, scenario, &mut found).await {
            report.failures.push(format!("{}: {error:#}", scenario.name()));
        }
        report.measurements.extend(found.measurements);
        report.checks.extend(found.checks);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &bench.args.json_file {
        std::fs::write(path, &json)?;
    }
    // A closed stdout must not turn a finished run into a panic.
    let mut stdout = std::io::stdout();
    let _ = if bench.args.json { writeln!(stdout, "{json}") } else { write!(stdout, "{}", report.table()) };
    if !report.failures.is_empty() {
        bail!("{} scenario(s) failed: {}", report.failures.len(), report.failures.join("; "));
    }
    Ok(())
}

/// The server binary: as given, or `identity` beside this one.
fn identity_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()?.with_file_name("identity"),
    };
    if !path.is_file() {
        bail!(
            "no identity binary at {}: build it first (`cargo build --release`), or name it with --identity PATH",
            path.display()
        );
    }
    Ok(path)
}

/// A progress line on stderr, so stdout stays the report.
pub fn progress(message: &str) {
    eprintln!("bench: {message}");
}
