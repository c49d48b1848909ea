//! The `identity` binary: CLI parsing and wiring only.
#![forbid(unsafe_code)]

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use identity::{
    app::{
        App,
        bootstrap::{BootstrapRequest, Bootstrapped, bootstrap},
    },
    config::Config,
    domain::Secret,
    server::{Server, shutdown_signal},
    store::Store,
};

/// A line for the operator on stdout. A closed stdout (a supervisor that
/// stopped reading) must never bring the service down, so errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(name = "identity", version, about = "gRPC identity service")]
struct Cli {
    /// TOML configuration file; environment variables `IDENTITY_*` override it.
    #[arg(long, short, global = true, env = "IDENTITY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (applies migrations first unless told not to).
    Serve {
        /// Do not apply migrations; refuse to start if the schema is behind.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply, revert or list database migrations.
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Create a subscription with its first Manager.
    Bootstrap(BootstrapArgs),
    /// Run the HTTP gateway alone (legacy XML API and pages), calling the gRPC service at `--grpc`.
    Gateway {
        /// The gRPC service, e.g. `http://identity-grpc:50051`.
        #[arg(long)]
        grpc: String,
    },
    /// Manage platform operators (they create subscriptions and schedule maintenance).
    Operator {
        #[command(subcommand)]
        action: OperatorAction,
    },
    /// Rescue an account of any subscription without any running account
    /// (break-glass): audited in the user's subscription, announced to its Managers.
    Support {
        #[command(subcommand)]
        action: SupportAction,
    },
    /// Print a shell completion script (e.g. `identity completions bash > /etc/bash_completion.d/identity`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page in roff (e.g. `identity man > identity.1; man ./identity.1`).
    Man,
    /// Manage the keys that sign access tokens, and the data keys that encrypt secrets at rest.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum OperatorAction {
    /// Create a platform operator account.
    Create(OperatorArgs),
}

#[derive(Subcommand)]
enum SupportAction {
    /// Replace the password with a generated one; the user gets a one-time link that shows it.
    ResetPassword(RescueArgs),
    /// Re-activate an INACTIVE account (a PENDING_ACTIVATION one gets a fresh welcome link).
    Reactivate(RescueArgs),
    /// Put the user's token back into new-PIN mode.
    ResetPin(RescueArgs),
    /// Replace a lost token; a one-time link to the new one is emailed to the user.
    ReplaceToken(RescueArgs),
}

#[derive(Args)]
struct RescueArgs {
    /// The user's login.
    #[arg(long)]
    login: String,
    /// Why: a ticket id or a short note (required; recorded in the audit log).
    #[arg(long)]
    reason: String,
    /// Who is at the keyboard, for the audit log (default: the OS user).
    #[arg(long)]
    by: Option<String>,
}

#[derive(Args)]
struct OperatorArgs {
    #[arg(long)]
    login: String,
    #[arg(long)]
    email: String,
    #[command(flatten)]
    password: PasswordArgs,
}

#[derive(Args)]
struct PasswordArgs {
    /// Read the password from this file (first line).
    #[arg(long, conflicts_with = "password_stdin")]
    password_file: Option<PathBuf>,
    /// Read the password from standard input (first line).
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand, Clone)]
enum KeysAction {
    /// Sign with a new key from now on; older keys stay published until their tokens expire.
    Rotate,
    /// List the published keys.
    List,
    /// Withdraw a leaked signing key now: every replica refuses its tokens within
    /// `tokens.revocation_cache_ms`, JWKS stops publishing it, and a new key signs.
    Revoke {
        /// The key id (`kid`), as `identity keys list` shows it.
        kid: String,
    },
    /// Re-encrypt every TOTP secret and queued email body under the current data key
    /// (`data_keys.current`), in batches, while the service keeps serving.
    RotateDataKey {
        /// Rows re-encrypted per query.
        #[arg(long, default_value_t = 500)]
        batch: u64,
    },
}

#[derive(Subcommand, Clone, Copy)]
enum MigrateAction {
    /// Apply every pending migration (the default).
    Up,
    /// Revert the last migration, or `--all`.
    Down {
        #[arg(long, conflicts_with = "all")]
        steps: Option<u32>,
        #[arg(long)]
        all: bool,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[derive(Args)]
struct BootstrapArgs {
    /// The subscription's login prefix: 2-16 lower-case letters and digits.
    #[arg(long)]
    subscription: String,
    /// Display name of the subscription (default: the prefix).
    #[arg(long)]
    name: Option<String>,
    /// The Manager's login (default: generated from the prefix and platform code).
    #[arg(long)]
    login: Option<String>,
    /// The Manager's email address.
    #[arg(long)]
    email: String,
    #[command(flatten)]
    password: PasswordArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Generated from the CLI's own definition: no configuration, no runtime.
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "identity", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                // A reader that stopped early (`| head`) is not a failure.
                Ok(()) => ExitCode::SUCCESS,
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("identity: cannot write the manual page: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("identity: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("identity: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporter's channel lives on the runtime: enter it first.
    let telemetry = match runtime.block_on(async { identity::telemetry::init(&config) }) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("identity: {error:#}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(run(cli.command, config));
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("identity: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, mut config: Config) -> anyhow::Result<()> {
    match command {
        // Printed by `main` before any configuration is read.
        Command::Completions { .. } | Command::Man => Ok(()),
        Command::Serve { no_migrate } => {
            if no_migrate {
                config.migrate_on_start = false;
            }
            let mut server = Server::build(config).await?;
            if let Some(first) = server.take_first_run() {
                print_bootstrapped("First start: created a subscription and its Manager.", &first);
            }
            // Listen for SIGTERM before saying we are up: a stop sent right after must be graceful.
            let shutdown = shutdown_signal();
            say!("identity: gRPC listening on {}", server.grpc_addr());
            say!("identity: HTTP gateway listening on {}", server.http_url());
            server.run(shutdown).await
        }
        Command::Gateway { grpc } => {
            let gateway = identity::gateway::Gateway::bind(&config, &grpc).await?;
            let shutdown = shutdown_signal();
            say!("identity: HTTP gateway listening on {} (gRPC service at {grpc})", gateway.url());
            gateway.serve(shutdown).await
        }
        Command::Migrate { action } => migrate(&config, action.unwrap_or(MigrateAction::Up)).await,
        Command::Keys { action } => {
            let store = connect_migrated(&config).await?;
            let now = identity::clock::Clock::now_ms(&identity::clock::SystemClock);
            match action {
                KeysAction::Rotate => {
                    let kid = identity::app::keys::rotate(&store, &config, now).await?;
                    say!(
                        "identity: new signing key {kid}; replicas pick it up within {} s",
                        config.tokens.key_reload_secs
                    );
                }
                KeysAction::List => {
                    for key in identity::store::keys::published(store.connection(), now).await? {
                        let state = if key.retired_at.is_none() { "signing" } else { "verify-only" };
                        say!("{} {state} created_at_ms={}", key.kid, key.created_at);
                    }
                }
                KeysAction::Revoke { kid } => {
                    let revoked = identity::app::keys::revoke(&store, &config, &kid, now).await?;
                    say!(
                        "identity: signing key {kid} revoked; every replica refuses its tokens within {} ms",
                        config.tokens.revocation_cache_ms
                    );
                    if let Some(signer) = revoked.new_signer {
                        say!("identity: new signing key {signer}");
                    }
                }
                KeysAction::RotateDataKey { batch } => {
                    let keys = identity::app::data_keys::load(&store, &config).await?;
                    let rotation = identity::app::data_keys::rotate(&store, &keys, batch.max(1)).await?;
                    say!("identity: re-encrypted {} rows under data key {}", rotation.resealed, keys.current_id());
                    for (key, rows) in &rotation.rows_per_key {
                        let key = key.as_deref().unwrap_or("(none: in clear)");
                        say!("identity:   data key {key}: {rows} rows");
                    }
                    for old in keys.ids().into_iter().filter(|id| *id != keys.current_id()) {
                        if !rotation.rows_per_key.contains_key(&Some(old.to_owned())) {
                            say!("identity:   data key {old} encrypts no row: it may be removed");
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Operator { action: OperatorAction::Create(args) } => {
            let password = read_password(&args.password)?;
            let store = connect_migrated(&config).await?;
            let app = App::start(config, store).await?;
            let done = identity::app::bootstrap::create_operator(&app, &args.login, &args.email, password).await?;
            print_bootstrapped("Created a platform operator.", &done);
            Ok(())
        }
        Command::Support { action } => {
            let store = connect_migrated(&config).await?;
            let app = App::start(config, store).await?;
            rescue(&app, action).await
        }
        Command::Bootstrap(args) => {
            let password = read_password(&args.password)?;
            let store = connect_migrated(&config).await?;
            let app = App::start(config, store).await?;
            let name = args.name.unwrap_or_else(|| args.subscription.clone());
            let mut request = BootstrapRequest::new(&args.subscription, &name, &args.email);
            request.manager_login = args.login;
            request.manager_password = password;
            let done = bootstrap(&app, request).await?;
            print_bootstrapped("Created a subscription and its Manager.", &done);
            Ok(())
        }
    }
}

async fn rescue(app: &App, action: SupportAction) -> anyhow::Result<()> {
    use identity::{
        app::support::{self, RescuedBy},
        domain::permissions::Rescue,
    };
    let (rescue, args) = match action {
        SupportAction::ResetPassword(args) => (Rescue::ResetPassword, args),
        SupportAction::Reactivate(args) => (Rescue::Reactivate, args),
        SupportAction::ResetPin(args) => (Rescue::ResetPin, args),
        SupportAction::ReplaceToken(args) => (Rescue::ReplaceToken, args),
    };
    let who = args
        .by
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let context = identity::app::caller::RequestContext::default();
    let done = support::rescue(
        app,
        RescuedBy::CommandLine { who: &who },
        &identity::domain::UserRef::by_login(args.login),
        rescue,
        &args.reason,
        &context,
    )
    .await?;
    let user = &done.user.user;
    say!("identity: {}: {}; status now {}", user.user_login, rescue.describe(), user.status);
    if done.link_emailed {
        say!("identity:   a one-time link to {} is in the outbox; the running service sends it", user.email);
    }
    say!("identity:   recorded in the subscription's audit log; {} Manager(s) notified", done.managers_notified);
    Ok(())
}

async fn migrate(config: &Config, action: MigrateAction) -> anyhow::Result<()> {
    let store = identity::server::open_store(config).await?;
    match action {
        MigrateAction::Up => {
            store.migrate_up().await?;
            say!("identity: database schema is up to date");
        }
        MigrateAction::Down { steps, all } => {
            store.migrate_down(if all { None } else { Some(steps.unwrap_or(1)) }).await?;
            say!("identity: reverted migrations");
        }
        MigrateAction::Status => {
            for (name, applied) in store.migration_status().await? {
                say!("{} {name}", if applied { "applied" } else { "pending" });
            }
        }
    }
    Ok(())
}

async fn connect_migrated(config: &Config) -> anyhow::Result<Store> {
    let store = identity::server::open_store(config).await?;
    store.migrate_up().await?;
    Ok(store)
}

fn read_password(args: &PasswordArgs) -> anyhow::Result<Option<Secret>> {
    let raw = if let Some(path) = &args.password_file {
        Some(read_file(path)?)
    } else if args.password_stdin {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input).context("cannot read the password from standard input")?;
        Some(input)
    } else {
        None
    };
    Ok(raw.map(|text| Secret::new(text.lines().next().unwrap_or_default().to_owned())))
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read the password file {}", path.display()))
}

/// Printed on stdout, never logged: the link is a credential.
fn print_bootstrapped(headline: &str, done: &Bootstrapped) {
    say!("identity: {headline}");
    say!("identity:   subscription id: {}", done.subscription_id);
    say!("identity:   Manager login:   {}", done.manager_login);
    if let Some(link) = &done.activation_link {
        say!("identity:   one-time activation link (shown once): {}", link.expose());
    }
}
