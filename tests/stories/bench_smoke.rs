//! CI smoke run of `identity-bench` with tiny parameters, so the tool cannot
//! rot: every scenario runs against a real server process and reports its
//! figures and checks. Nothing here judges the figures themselves: CI
//! machines are too noisy for that, and the figures are not the point.

use crate::common;

use std::{collections::BTreeSet, process::Command};

use serde_json::Value;

const BURST: u64 = 40;

/// The bench binary of this build: `cargo test --workspace` builds it beside
/// `identity` because `crates/bench/tests/cli.rs` needs it. None when only
/// this package was built.
fn bench_binary() -> Option<std::path::PathBuf> {
    // The gateway scenario drives the legacy API with wrk; the gRPC scenarios use h2load.
    if !common::tools::require(&[common::tools::Tool::Wrk, common::tools::Tool::H2load]) {
        return None;
    }
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_identity")).with_file_name("identity-bench");
    if path.is_file() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "CI runs `cargo test --workspace`, which builds identity-bench");
    eprintln!("identity-bench is not built: skipping (run `cargo test --workspace`)");
    None
}

/// Runs every scenario with cheap argon2 (through the configuration, as an
/// operator would) and returns the JSON report.
fn bench(exe: &std::path::Path, backend: &[&str]) -> Value {
    let mut command = Command::new(exe);
    for (key, _) in std::env::vars() {
        if key.starts_with("IDENTITY_") {
            command.env_remove(key);
        }
    }
    command
        .env("IDENTITY_ARGON2__MEMORY_KIB", "64")
        .env("IDENTITY_ARGON2__ITERATIONS", "1")
        .env("IDENTITY_LOG_FILTER", "warn")
        .args(["--identity", env!("CARGO_BIN_EXE_identity")])
        .args(["--json", "--duration", "0.5", "--warmup", "0.2", "--concurrency", "2"])
        .args(["--rounds", "1", "--rpc-concurrency", "4", "--connections", "2", "--batch-users", "20"])
        .args(["--burst", &BURST.to_string(), "--small-users", "10", "--large-users", "300", "--purge-rows", "2000"])
        .args(["--page-users", "600"])
        .args(backend);
    let output = command.output().expect("run identity-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "identity-bench failed:\n{stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("bench printed no JSON report ({e}):\n{stderr}"))
}

/// The scenarios the bench offers, as its `--help` lists them under
/// `Arguments:` (`- login: …`):
/// a new one is smoke-tested without being listed here too
/// (`crates/bench/tests/cli.rs` keeps the list that must be there).
fn scenarios(exe: &std::path::Path) -> Vec<String> {
    let output = Command::new(exe).arg("--help").output().expect("run identity-bench --help");
    let help = String::from_utf8_lossy(&output.stdout);
    let listed: Vec<String> = help
        .lines()
        .skip_while(|line| !line.starts_with("Arguments:"))
        .take_while(|line| !line.starts_with("Options:"))
        .filter_map(|line| line.trim().strip_prefix("- ")?.split_once(':'))
        .map(|(name, _)| name.to_owned())
        .collect();
    assert!(listed.iter().any(|name| name == "login"), "no scenarios in:\n{help}");
    listed
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("`{key}` in {value}"))
}

fn assert_complete(report: &Value, backend: &str, scenarios: &[String]) {
    assert_eq!(report["settings"]["backend"], backend);
    assert_eq!(report["settings"]["argon2_memory_kib"], 64, "the tool takes argon2 parameters from the configuration");
    assert!(report["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(0), "{report:#}");

    let measurements = report["measurements"].as_array().expect("measurements");
    let checks = report["checks"].as_array().expect("checks");
    for scenario in scenarios.iter().map(String::as_str) {
        let mine: Vec<&Value> = measurements.iter().filter(|m| text(m, "scenario") == scenario).collect();
        if scenario == "scaleout" && backend == "sqlite" {
            assert!(mine.is_empty(), "replicas share PostgreSQL: scaleout skips SQLite");
            continue;
        }
        assert!(!mine.is_empty(), "{scenario} measured nothing: {report:#}");
        assert!(checks.iter().any(|c| text(c, "scenario") == scenario), "{scenario} checked nothing");
        for measurement in mine {
            let name = text(measurement, "name");
            // Every measurement did work and printed a figure of its kind.
            let has_rate = measurement["throughput"].as_f64().is_some_and(|t| t > 0.0);
            let has_wall = measurement["wall_s"].as_f64().is_some_and(|w| w > 0.0);
            assert!(has_rate || has_wall, "{scenario}/{name} has no figure: {measurement}");
            // Limits, fixtures and in-process figures have no server behind them.
            if name.starts_with("limit:") || name.starts_with("fixture:") || name.starts_with("in-process:") {
                continue;
            }
            assert!(measurement["completed"].as_u64().is_some_and(|n| n > 0), "{scenario}/{name}: {measurement}");
            assert!(measurement["p99_ms"].as_f64().is_some() || has_wall, "{scenario}/{name} has no latency");
            assert!(measurement["server_peak_rss_mib"].as_f64().is_some_and(|m| m > 0.0), "{scenario}/{name}");
            let errors = measurement["errors"].as_object().expect("errors");
            let unexpected: BTreeSet<&String> =
                errors.keys().filter(|code| !(scenario == "memory" && *code == "ResourceExhausted")).collect();
            assert!(unexpected.is_empty(), "{scenario}/{name} failed requests: {errors:?}");
        }
    }
    let burst = measurements.iter().find(|m| text(m, "scenario") == "memory").expect("the burst");
    let refused: u64 = burst["errors"].as_object().expect("errors").values().filter_map(Value::as_u64).sum();
    assert_eq!(
        burst["completed"].as_u64().unwrap_or(0) + refused,
        BURST,
        "every attempt of the burst is accounted for"
    );
    for check in checks {
        assert!(check["value"].as_f64().is_some_and(f64::is_finite), "a check without a figure: {check}");
        assert!(check["met"].is_boolean());
    }
    // These two hold whatever the machine: the server survived the burst and refused only by throttling.
    for name in ["server still serving", "attempts refused other than RESOURCE_EXHAUSTED"] {
        let check = checks.iter().find(|c| text(c, "name") == name).expect(name);
        assert_eq!(check["met"], true, "{check}");
    }
}

#[test]
fn every_scenario_runs_and_reports_on_sqlite() {
    let _shared = common::shared_machine_blocking();
    let Some(exe) = bench_binary() else { return };
    assert_complete(&bench(&exe, &[]), "sqlite", &scenarios(&exe));
}

#[test]
fn every_scenario_runs_and_reports_on_postgres() {
    let _shared = common::shared_machine_blocking();
    let Some(exe) = bench_binary() else { return };
    if !common::postgres_configured() {
        return;
    }
    let url = common::postgres_admin_url().expect("TEST_DATABASE_URL");
    assert_complete(&bench(&exe, &["--backend", "postgres", "--database-url", &url]), "postgres", &scenarios(&exe));
}
