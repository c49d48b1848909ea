//! The server under test: this same binary's `serve` in a child process, so its
//! memory can be read from `/proc` and the load generator's CPU is not its own.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, Statement};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use super::{
    Bench,
    load::{self, Operation, Phase, Sample},
    procfs,
};
use identity::config::Argon2Config;

const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A database the benchmark made for one server, dropped afterwards.
enum OwnedDatabase {
    Sqlite,
    Postgres {
        admin_url: String,
        name: String,
    },
    /// Another server's: this one is its replica and drops nothing.
    Shared,
}

pub struct ServerUnderTest {
    child: Child,
    pub grpc_addr: String,
    pub http_url: String,
    pub database_url: String,
    pub dir: PathBuf,
    pub spec: ServerSpec,
    database: OwnedDatabase,
}

/// Configuration of one server beyond the bench-wide defaults.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub argon2: Argon2Config,
    pub env: Vec<(String, String)>,
}

impl ServerUnderTest {
    pub async fn start(bench: &Bench, spec: &ServerSpec) -> anyhow::Result<Self> {
        Self::launch(bench, spec, None).await
    }

    /// A second server on `first`'s database, as another replica of it would be.
    pub async fn start_beside(bench: &Bench, spec: &ServerSpec, first: &ServerUnderTest) -> anyhow::Result<Self> {
        Self::launch(bench, spec, Some(first.database_url.clone())).await
    }

    async fn launch(bench: &Bench, spec: &ServerSpec, shared_database: Option<String>) -> anyhow::Result<Self> {
        let dir = bench.scratch.join(format!("server-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let (database_url, database) = match (shared_database, &bench.postgres_admin_url) {
            (Some(url), _) => (url, OwnedDatabase::Shared),
            (None, None) => (format!("sqlite://{}", dir.join("identity.db").display()), OwnedDatabase::Sqlite),
            (None, Some(admin)) => {
                let name = format!("identity_bench_{}", uuid::Uuid::new_v4().simple());
                let url = create_postgres_database(admin, &name).await?;
                (url, OwnedDatabase::Postgres { admin_url: admin.clone(), name })
            }
        };
        let mut command = bench.identity_command(&spec.argon2, &dir);
        command
            .arg("serve")
            .env("IDENTITY_DATABASE_URL", &database_url)
            .env("IDENTITY_GRPC_ADDR", "127.0.0.1:0")
            .env("IDENTITY_HTTP_ADDR", "127.0.0.1:0")
            .env("IDENTITY_BOOTSTRAP__ENABLED", "false");
        for (key, value) in &spec.env {
            command.env(key, value);
        }
        let log = std::fs::File::create(dir.join("server.log")).context("cannot create the server log")?;
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
        let mut child = command.spawn().context("cannot start the server under test")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let (grpc_addr, http_url) = match tokio::task::spawn_blocking(move || addresses(stdout)).await? {
            Ok(addresses) => addresses,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{error}; server log:\n{}", tail(&dir.join("server.log")));
            }
        };
        let server = Self { child, grpc_addr, http_url, database_url, dir, spec: spec.clone(), database };
        server.wait_until_serving().await?;
        Ok(server)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new HTTP/2 connection to the server.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Channel::from_shared(self.grpc_url())?.connect().await.context("cannot connect to the server under test")
    }

    /// `count` separate connections, so that one connection's task is never the bottleneck.
    pub async fn channels(&self, count: usize) -> anyhow::Result<Vec<Channel>> {
        let mut channels = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            channels.push(self.channel().await?);
        }
        Ok(channels)
    }

    async fn wait_until_serving(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.serving().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server under test did not report SERVING in time");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the health service answers SERVING for the whole server.
    pub async fn serving(&self) -> bool {
        let Ok(channel) = self.channel().await else { return false };
        let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
        answer.is_ok_and(|a| a.into_inner().status == ServingStatus::Serving as i32)
    }

    /// Whether the process still runs (it has not crashed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// One load phase against this server, with its CPU counted and the peak
    /// RSS (KiB) reached during it alone.
    pub async fn load(&self, phase: Phase, operation: Operation) -> (Sample, Option<u64>) {
        self.reset_peak_rss();
        let sample = load::run(phase, Some(self.pid()), operation).await;
        (sample, self.peak_rss_kib())
    }

    /// Restarts the peak-RSS count (`VmHWM`) from the current RSS, so a peak
    /// belongs to one measurement. False when the kernel refused.
    pub fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// Peak resident memory since start or the last reset, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        procfs::status_kib(self.pid(), "VmHWM:")
    }

    pub fn log_tail(&self) -> String {
        tail(&self.dir.join("server.log"))
    }

    /// Stops the server and drops its database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let OwnedDatabase::Postgres { admin_url, name } = &self.database {
            drop_postgres_database(admin_url, name).await?;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        // A failed scenario must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the addresses `serve` prints on stdout, then keeps draining it.
fn addresses(stdout: std::process::ChildStdout) -> anyhow::Result<(String, String)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut grpc = None;
        let mut http = None;
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("identity: gRPC listening on ") {
                grpc = Some(addr.trim().to_owned());
            } else if let Some(url) = line.strip_prefix("identity: HTTP gateway listening on ") {
                http = Some(url.trim().to_owned());
            }
            if !sent && let (Some(grpc), Some(http)) = (&grpc, &http) {
                let _ = tx.send((grpc.clone(), http.clone()));
                sent = true;
            }
        }
    });
    rx.recv_timeout(START_TIMEOUT).map_err(|_| anyhow::anyhow!("the server under test did not print its addresses"))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A connection to the PostgreSQL server itself, whose statements stay out of the logs.
async fn admin(admin_url: &str) -> anyhow::Result<sea_orm::DatabaseConnection> {
    let mut options = ConnectOptions::new(admin_url.to_owned());
    options.max_connections(1).sqlx_logging(false);
    Database::connect(options).await.context("cannot connect to the PostgreSQL server")
}

/// Creates database `name` on the PostgreSQL server of `admin_url`; returns its URL.
pub async fn create_postgres_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let db = admin(admin_url).await?;
    db.execute_raw(Statement::from_string(db.get_database_backend(), format!("CREATE DATABASE \"{name}\"")))
        .await
        .with_context(|| format!("cannot create database {name}"))?;
    db.close().await.ok();
    let mut url = url::Url::parse(admin_url).context("the PostgreSQL URL")?;
    url.set_path(name);
    Ok(url.to_string())
}

async fn drop_postgres_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let db = admin(admin_url).await?;
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
    ))
    .await
    .with_context(|| format!("cannot drop database {name}"))?;
    db.close().await.ok();
    Ok(())
}
