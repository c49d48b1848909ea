//! The running service: database, migrations, first-start bootstrap, the gRPC
//! server with health and reflection, and graceful shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::StreamExt as _;
use tonic::transport::server::TcpIncoming;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    app::{
        App,
        bootstrap::{Bootstrapped, bootstrap_if_empty},
    },
    clock::{SharedClock, SystemClock},
    config::Config,
    gateway::{self, Gateway},
    grpc,
    mail::{dispatcher, transport::Transport},
    store::Store,
    telemetry::{grpc::RpcTelemetryLayer, metrics::MetricsServer},
};

/// A health service name that stays SERVING while the process runs, for
/// liveness probes: a database outage makes a replica unready, not dead.
pub const LIVENESS_SERVICE: &str = "liveness";

/// How often readiness (database reachable and migrated) is re-checked.
const READINESS_INTERVAL: Duration = Duration::from_secs(2);
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// A server whose sockets are bound and whose database is ready, not yet serving.
pub struct Server {
    app: Arc<App>,
    grpc_listener: TcpListener,
    grpc_addr: SocketAddr,
    grpc_tls: Option<tonic::transport::ServerTlsConfig>,
    health_listener: Option<TcpListener>,
    gateway: Gateway,
    metrics: Option<MetricsServer>,
    first_run: Option<Bootstrapped>,
    mail: Transport,
}

/// Opens the configured database: the one place a URL becomes a pool, for
/// `serve` and every command, with an error that names the database (its
/// password redacted).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::connect(&config.database_url, config.database_max_connections)
        .await
        .with_context(|| format!("cannot open the database at {}", redact_url(&config.database_url)))
}

impl Server {
    /// Connects to the database, applies migrations when configured to,
    /// bootstraps an empty database, and binds the listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Server::build`] on a clock of the caller's: a simulated month in a story.
    pub async fn build_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        let store = open_store(&config).await?;
        if config.migrate_on_start {
            store.migrate_up().await.context("cannot apply database migrations")?;
        } else if !store.is_migrated().await? {
            anyhow::bail!("the database schema is not up to date: run `identity migrate` first");
        }
        store.check_writable().await.with_context(|| {
            format!("the database at {} takes no writes (read-only file or volume?)", redact_url(&config.database_url))
        })?;
        let grpc_listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("cannot listen on {} (grpc_addr)", config.grpc_addr))?;
        let grpc_addr = grpc_listener.local_addr()?;
        let grpc_tls = grpc::tls::server_tls(&config.grpc)?;
        let health_listener = match config.grpc.health_addr {
            Some(addr) => Some(
                TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (grpc.health_addr)"))?,
            ),
            None => None,
        };
        let gateway = Gateway::bind(&config, &in_process_grpc_url(&config, grpc_addr)?).await?;
        let mail = Transport::from_config(&config).context("cannot set up email delivery")?;
        let metrics = match config.metrics_addr {
            Some(addr) => Some(MetricsServer::bind(addr).await?),
            None => None,
        };
        let app = Arc::new(App::start_with_clock(config, store, clock).await?);
        let first_run = bootstrap_if_empty(&app).await?;
        Ok(Self { app, grpc_listener, grpc_addr, grpc_tls, health_listener, gateway, metrics, first_run, mail })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where the HTTP gateway (legacy API and pages) listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.gateway.addr()
    }

    /// Where `/metrics` is served, when `metrics_addr` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::addr)
    }

    /// `http://…` or, with TLS configured, `https://…` of the gateway.
    pub fn http_url(&self) -> String {
        self.gateway.url()
    }

    /// What the first start of an empty database created; shown once to the operator.
    pub fn take_first_run(&mut self) -> Option<Bootstrapped> {
        self.first_run.take()
    }

    pub fn app(&self) -> Arc<App> {
        Arc::clone(&self.app)
    }

    /// Serves until `shutdown` completes, then stops accepting, reports
    /// NOT_SERVING, and lets in-flight calls finish (up to the grace period).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status(LIVENESS_SERVICE, ServingStatus::Serving).await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let services = grpc::services(Arc::clone(&self.app));
        // Probes that speak no TLS (the kubelet's) ask here; it stops with the process.
        let health_only = self.health_listener.map(|listener| {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let server = tonic::transport::Server::builder().add_service(health_service.clone());
            tokio::spawn(server.serve_with_incoming(incoming))
        });

        let (stop_tx, stop_rx) = watch::channel(false);
        let readiness = tokio::spawn(watch_readiness(Arc::clone(&self.app), health.clone(), stop_rx.clone()));
        let chores = tokio::spawn(reload_keys(Arc::clone(&self.app), stop_rx.clone()));
        let purges = tokio::spawn(purge_expired(Arc::clone(&self.app), stop_rx.clone()));
        let mut mail = tokio::spawn(dispatcher::run(Arc::clone(&self.app), self.mail, stop_rx.clone()));
        // Scraped until the very end, so the last figures of a stopping replica are seen.
        let metrics =
            self.metrics.map(|metrics| tokio::spawn(metrics.serve(Arc::clone(&self.app), std::future::pending())));

        let grace = Duration::from_secs(self.app.config.shutdown_grace_secs);
        let mut stopping = stop_rx.clone();
        // The gateway drains first: its in-flight requests still need the gRPC server.
        let (gateway_done_tx, mut gateway_done) = watch::channel(false);
        let gateway_stop = {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|stop| *stop).await;
            }
        };
        let gateway = self.gateway.serve(gateway_stop);
        let gateway = tokio::spawn(async move {
            let result = gateway.await;
            let _ = gateway_done_tx.send(true);
            result
        });
        let signal = {
            let health = health.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: no new calls, finishing in-flight ones");
                let _ = stop_tx.send(true);
                set_all(&health, ServingStatus::NotServing).await;
                let _ = tokio::time::timeout(grace, gateway_done.wait_for(|done| *done)).await;
            }
        };

        tracing::info!(addr = %self.grpc_addr, tls = self.grpc_tls.is_some(), "gRPC listening");
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.grpc_tls {
            builder = builder.tls_config(tls).context("gRPC TLS")?;
        }
        // A client holds one HTTP/2 connection for as long as it likes, and a
        // Kubernetes Service balances connections, not calls: an age limit
        // (GOAWAY, then a grace for calls in flight) sends clients back through
        // the balancer, onto replicas started since.
        let transport = &self.app.config.grpc;
        let mut lifetime = None;
        if transport.max_connection_age_secs > 0 {
            let age = Duration::from_secs(transport.max_connection_age_secs);
            builder = builder.max_connection_age(age);
            if transport.max_connection_age_grace_secs > 0 {
                lifetime = Some(age + Duration::from_secs(transport.max_connection_age_grace_secs));
            }
        }
        // TCP_NODELAY: without it a reply written in pieces waits for the client's delayed
        // ACK, about 40 ms per call on Linux. tonic sets it only on listeners it binds itself.
        let incoming = TcpIncoming::from(self.grpc_listener)
            .with_nodelay(Some(true))
            .map(move |socket| socket.map(|socket| grpc::connection_age::Aged::new(socket, lifetime)));
        let serve = builder
            .layer(RpcTelemetryLayer)
            .layer(grpc::layer::AuthLayer::new(Arc::clone(&self.app)))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(services.auth)
            .add_service(services.users)
            .add_service(services.reset)
            .add_service(services.platform)
            .add_service(services.support)
            .serve_with_incoming_shutdown(incoming, signal);
        tokio::pin!(serve);
        let result = tokio::select! {
            result = &mut serve => result,
            _ = async {
                let _ = stopping.wait_for(|stop| *stop).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_secs = grace.as_secs(), "in-flight calls outlived the grace period");
                Ok(())
            }
        };
        readiness.abort();
        chores.abort();
        purges.abort();
        if let Some(health_only) = health_only {
            health_only.abort();
        }
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        let gateway_result = if gateway.is_finished() {
            gateway.await.unwrap_or_else(|e| Err(anyhow::anyhow!("HTTP gateway task failed: {e}")))
        } else {
            gateway.abort();
            Ok(())
        };
        // The dispatcher's final pass is bounded by itself; this is a backstop.
        if tokio::time::timeout(dispatcher::FINAL_PASS + Duration::from_secs(1), &mut mail).await.is_err() {
            mail.abort();
        }
        result.context("gRPC server failed")?;
        gateway_result?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Where the in-process gateway reaches the gRPC port: over loopback, with
/// TLS when the port speaks it, trusting `gateway.grpc_ca` and presenting
/// `gateway.grpc_client_cert` when the port asks for client certificates.
fn in_process_grpc_url(config: &Config, grpc_addr: SocketAddr) -> anyhow::Result<String> {
    let url = gateway::loopback_url(grpc_addr);
    if !config.grpc.tls() {
        return Ok(url);
    }
    anyhow::ensure!(
        config.gateway.grpc_ca.is_some(),
        "`grpc.tls_cert` makes the gRPC port speak TLS: set `gateway.grpc_ca` (the CA that issued it) and, unless \
         the certificate names 127.0.0.1, `gateway.grpc_tls_domain`, so that the in-process gateway can reach it"
    );
    anyhow::ensure!(
        config.grpc.tls_client_ca.is_none() || config.gateway.grpc_client_cert.is_some(),
        "`grpc.tls_client_ca` requires client certificates: set `gateway.grpc_client_cert` and \
         `gateway.grpc_client_key` for the in-process gateway"
    );
    Ok(url.replacen("http://", "https://", 1))
}

/// SERVING only while the database answers and its schema is complete (and,
/// when so configured, no maintenance window covers logins).
async fn watch_readiness(app: Arc<App>, health: HealthReporter, mut stop: watch::Receiver<bool>) {
    let store = app.store.clone();
    let mut last = None;
    loop {
        let ready = matches!(
            tokio::time::timeout(READINESS_TIMEOUT, async {
                store.ping().await.is_ok()
                    && store.is_migrated().await.unwrap_or(false)
                    && !(app.config.platform.not_serving_during_maintenance
                        && crate::app::platform::logins_in_maintenance(&app).await)
            })
            .await,
            Ok(true)
        );
        if last != Some(ready) {
            let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
            if ready {
                tracing::info!("ready: database reachable and migrated");
            } else {
                tracing::warn!("not ready: database unreachable or not migrated");
            }
            set_all(&health, status).await;
            last = Some(ready);
        }
        tokio::select! {
            _ = tokio::time::sleep(READINESS_INTERVAL) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Every replica re-reads the published signing keys now and then: a
/// rotation elsewhere.
async fn reload_keys(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_secs(app.config.tokens.key_reload_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if let Err(error) = app.keys.reload(&app.store, app.clock.now_ms()).await {
            tracing::warn!(%error, "could not reload signing keys");
        }
    }
}

/// Housekeeping on every replica, soon after start and then every
/// `retention.interval_secs`; again at once while a run leaves rows behind.
async fn purge_expired(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_secs(app.config.retention.interval_secs);
    let mut wait = Duration::from_secs(1).min(interval);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        wait = interval;
        match crate::app::housekeeping::run_once(&app).await {
            Ok(report) if report.skipped => tracing::debug!("housekeeping: another replica is purging"),
            Ok(report) => {
                let purged: Vec<String> =
                    report.purged.iter().map(|(kind, rows)| format!("{}={rows}", kind.table())).collect();
                if report.backlog_left {
                    tracing::info!(purged = %purged.join(" "), "housekeeping: rows left, continuing");
                    wait = Duration::from_millis(100);
                } else if !purged.is_empty() {
                    tracing::info!(purged = %purged.join(" "), "housekeeping: expired data purged");
                }
            }
            Err(error) => tracing::warn!(%error, "housekeeping failed; retrying at the next interval"),
        }
    }
}

async fn set_all(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in grpc::SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// The URL without its password, for error messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Completes on SIGTERM or Ctrl-C. The SIGTERM handler is installed by this
/// call, not when the future is first polled: a SIGTERM arriving once the
/// server answers must stop it cleanly, never meet the default action.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async move {
            match terminate {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://identity:s3cret@db:5432/identity"),
            "postgres://identity:***@db:5432/identity"
        );
        assert_eq!(redact_url("sqlite://./data/identity.db"), "sqlite://./data/identity.db");
    }
}
