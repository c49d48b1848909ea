//! The bench's command line. Being an integration test of this package also
//! makes `cargo test --workspace` build the `identity-bench` executable, which
//! the service's `bench_smoke` stories run end to end.
#![forbid(unsafe_code)]

use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_identity-bench");

#[test]
fn help_lists_every_scenario() {
    let output = Command::new(BENCH).arg("--help").output().expect("run identity-bench --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    let scenarios = [
        "login",
        "validate",
        "reset",
        "gateway",
        "memory",
        "scale",
        "signin",
        "purge",
        "secrets",
        "client",
        "pages",
        "during_reset",
        "scaleout",
    ];
    for scenario in scenarios {
        assert!(help.contains(&format!("- {scenario}:")), "`{scenario}` missing from:\n{help}");
    }
}

#[test]
fn an_unknown_scenario_is_refused_by_name() {
    let output = Command::new(BENCH).arg("logins").output().expect("run identity-bench logins");
    assert_eq!(output.status.code(), Some(2), "clap's usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value 'logins'"), "{stderr}");
}
