//! Prometheus metrics at `GET /metrics` on a port of their own
//! (`metrics_addr`), so scraping never shares a listener with the public
//! gateway. Counters and histograms are recorded where things happen through
//! the `metrics` facade; gauges of shared resources (hash pool, database
//! pool, outbox backlog) are read when scraped, so they are never stale.

use std::{future::Future, net::SocketAddr, sync::Arc, sync::OnceLock, time::Duration};

use anyhow::Context;
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::app::App;

pub const GRPC_REQUESTS: &str = "identity_grpc_requests_total";
pub const GRPC_DURATION: &str = "identity_grpc_request_duration_seconds";
pub const HTTP_REQUESTS: &str = "identity_http_requests_total";
pub const HTTP_DURATION: &str = "identity_http_request_duration_seconds";
pub const LOGIN_OUTCOMES: &str = "identity_login_outcomes_total";
pub const LOCKOUTS: &str = "identity_lockouts_total";
pub const HASH_REJECTED: &str = "identity_hash_pool_rejected_total";
pub const HASH_WORKERS: &str = "identity_hash_pool_workers";
pub const HASH_BUSY: &str = "identity_hash_pool_busy_workers";
pub const HASH_QUEUE: &str = "identity_hash_pool_queue_depth";
pub const HASHES_MADE: &str = "identity_hash_pool_hashes_made";
pub const EMAIL_DELIVERIES: &str = "identity_email_deliveries_total";
pub const OUTBOX_PENDING: &str = "identity_outbox_pending";
pub const OUTBOX_OLDEST_AGE: &str = "identity_outbox_oldest_pending_age_seconds";
pub const DB_CONNECTIONS: &str = "identity_db_pool_connections";
pub const DB_MAX_CONNECTIONS: &str = "identity_db_pool_max_connections";
pub const DB_UP: &str = "identity_db_up";
pub const PURGED_ROWS: &str = "identity_purged_rows_total";
pub const HOUSEKEEPING_RUNS: &str = "identity_housekeeping_runs_total";
pub const BUILD_INFO: &str = "identity_build_info";

/// From 1 ms (a token check) to 10 s (a large batch reset).
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A scrape must answer even when the database does not.
const GAUGE_QUERY_TIMEOUT: Duration = Duration::from_secs(1);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls (several servers in
/// one test process) share it.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".to_owned()), &LATENCY_BUCKETS)
            .expect("latency buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed: /metrics will stay empty");
        }
        describe();
        register_constant_series();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(GRPC_REQUESTS, "gRPC calls handled, by method and status code");
    describe_histogram!(GRPC_DURATION, metrics::Unit::Seconds, "gRPC call latency, by method and status code");
    describe_counter!(HTTP_REQUESTS, "HTTP gateway requests, by route and status");
    describe_histogram!(HTTP_DURATION, metrics::Unit::Seconds, "HTTP gateway latency, by route");
    describe_counter!(LOGIN_OUTCOMES, "Password logins by outcome (session, challenge, or the refusal's reason)");
    describe_counter!(LOCKOUTS, "Accounts locked after consecutive failed attempts");
    describe_counter!(HASH_REJECTED, "Hash requests refused with RESOURCE_EXHAUSTED because the queue was full");
    describe_gauge!(HASH_WORKERS, "Password hashing workers");
    describe_gauge!(HASH_BUSY, "Password hashing workers busy right now");
    describe_gauge!(HASH_QUEUE, "Callers waiting for a password hashing worker");
    describe_gauge!(HASHES_MADE, "New password and PIN hashes computed since start (not verifications); only rises");
    describe_counter!(EMAIL_DELIVERIES, "Email delivery attempts by result (sent, retry, failed)");
    describe_gauge!(OUTBOX_PENDING, "Emails neither sent nor given up");
    describe_gauge!(OUTBOX_OLDEST_AGE, metrics::Unit::Seconds, "Age of the oldest pending email");
    describe_gauge!(DB_CONNECTIONS, "Database pool connections by state (idle, in_use)");
    describe_gauge!(DB_MAX_CONNECTIONS, "Database pool size limit");
    describe_gauge!(DB_UP, "1 when the outbox query of the last scrape succeeded, else 0");
    describe_counter!(PURGED_ROWS, "Expired or used rows deleted by housekeeping, by table");
    describe_counter!(
        HOUSEKEEPING_RUNS,
        "Housekeeping runs by result (done, behind: rows left for the next run, skipped: another replica ran, failed)"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the running build's version as a label");
}

/// Series that must exist before their first event: `rate()` over a counter
/// that appears only at its first increment misses that increment, and the
/// alert rules (helm/identity/files/alerts.yaml) would have nothing to read.
fn register_constant_series() {
    // Joined on by dashboards (`* on(instance) group_left(version)`) to show which build runs.
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::counter!(LOCKOUTS).increment(0);
    metrics::counter!(HASH_REJECTED).increment(0);
    for result in ["sent", "retry", "failed"] {
        metrics::counter!(EMAIL_DELIVERIES, "result" => result).increment(0);
    }
    for kind in crate::domain::retention::Expiring::PURGE_ORDER {
        metrics::counter!(PURGED_ROWS, "table" => kind.table()).increment(0);
    }
    for result in ["done", "behind", "skipped", "failed"] {
        metrics::counter!(HOUSEKEEPING_RUNS, "result" => result).increment(0);
    }
}

/// The `/metrics` listener, bound but not yet serving.
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (metrics_addr)"))?;
        let addr = listener.local_addr()?;
        install();
        Ok(Self { listener, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn serve(self, app: Arc<App>, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr, "metrics listening");
        let router = Router::new().route("/metrics", get(scrape)).with_state(app);
        axum::serve(self.listener, router).with_graceful_shutdown(shutdown).await.context("metrics listener failed")
    }
}

async fn scrape(State(app): State<Arc<App>>) -> impl IntoResponse {
    refresh_gauges(&app).await;
    let handle = install();
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render())
}

async fn refresh_gauges(app: &App) {
    metrics::gauge!(HASH_WORKERS).set(app.hasher.worker_count() as f64);
    metrics::gauge!(HASH_BUSY).set(app.hasher.busy_workers() as f64);
    metrics::gauge!(HASH_QUEUE).set(app.hasher.queue_depth() as f64);
    // Counted by the pool itself and read like the other pool figures. A gauge, not a
    // counter: a Prometheus counter only takes values above its last, so servers
    // sharing one process (tests, benchmarks) could not each report their own.
    metrics::gauge!(HASHES_MADE).set(app.hasher.hashes_made() as f64);
    let pool = app.store.pool_usage();
    metrics::gauge!(DB_CONNECTIONS, "state" => "idle").set(f64::from(pool.idle));
    metrics::gauge!(DB_CONNECTIONS, "state" => "in_use").set(f64::from(pool.size.saturating_sub(pool.idle)));
    metrics::gauge!(DB_MAX_CONNECTIONS).set(f64::from(app.config.database_max_connections));
    let backlog =
        tokio::time::timeout(GAUGE_QUERY_TIMEOUT, crate::store::outbox::backlog_stats(app.store.connection()));
    match backlog.await {
        Ok(Ok(stats)) => {
            metrics::gauge!(DB_UP).set(1.0);
            metrics::gauge!(OUTBOX_PENDING).set(stats.pending as f64);
            let age_ms = stats.oldest_pending_at.map_or(0, |oldest| app.clock.now_ms().saturating_sub(oldest).max(0));
            metrics::gauge!(OUTBOX_OLDEST_AGE).set(age_ms as f64 / 1000.0);
        }
        // Keep the last backlog figures: a failed query says nothing about the outbox.
        _ => metrics::gauge!(DB_UP).set(0.0),
    }
}
