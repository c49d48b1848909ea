//! What a run found: measurements, the checks against the targets, and the
//! machine they were taken on; printed as a table or as JSON.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use super::load::Sample;

/// One measured thing: a load phase, a raw limit, or a timed call.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measurement {
    pub scenario: String,
    pub name: String,
    /// Concurrent callers (or threads, for raw limits).
    pub concurrency: Option<usize>,
    /// Successful operations counted.
    pub completed: u64,
    /// Successful operations per second.
    pub throughput: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Wall time of a single timed operation (batch reset, burst, fixture).
    pub wall_s: Option<f64>,
    /// Failed operations by gRPC code (or HTTP/XML outcome).
    pub errors: BTreeMap<String, u64>,
    /// The server's peak resident memory during this measurement.
    pub server_peak_rss_mib: Option<f64>,
    /// CPU time per successful operation (server and load generator, or the
    /// raw threads), in ms.
    pub cpu_ms_per_op: Option<f64>,
    /// The server's share of `cpu_ms_per_op`.
    pub server_cpu_ms_per_op: Option<f64>,
    /// The load generator's share of `cpu_ms_per_op` (h2load, wrk or the bench's own client).
    pub client_cpu_ms_per_op: Option<f64>,
    /// CPU time of the database server's processes per successful operation, in ms,
    /// where a scenario reads it (PostgreSQL on this machine).
    pub database_cpu_ms_per_op: Option<f64>,
}

impl Measurement {
    pub fn new(scenario: &str, name: impl Into<String>) -> Self {
        Self { scenario: scenario.to_owned(), name: name.into(), ..Self::default() }
    }

    pub fn from_sample(scenario: &str, name: impl Into<String>, concurrency: usize, sample: &Sample) -> Self {
        Self {
            concurrency: Some(concurrency),
            completed: sample.completed,
            throughput: Some(sample.throughput()),
            p50_ms: sample.quantile_ms(0.50),
            p99_ms: sample.quantile_ms(0.99),
            errors: sample.errors.clone(),
            cpu_ms_per_op: sample.cpu_ms_per_op(),
            server_cpu_ms_per_op: sample.server_cpu_ms_per_op(),
            client_cpu_ms_per_op: sample.client_cpu_ms_per_op(),
            ..Self::new(scenario, name)
        }
    }

    pub fn rss_kib(mut self, kib: Option<u64>) -> Self {
        self.server_peak_rss_mib = kib.map(|k| k as f64 / 1024.0);
        self
    }
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    AtLeast,
    AtMost,
    Below,
}

/// A figure compared with its target.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub scenario: String,
    pub name: String,
    pub value: f64,
    pub bound: Bound,
    pub target: f64,
    pub unit: String,
    pub met: bool,
    /// The figure of each round, when `value` is their median.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<f64>,
}

impl Check {
    pub fn new(scenario: &str, name: impl Into<String>, value: f64, bound: Bound, target: f64, unit: &str) -> Self {
        let met = value.is_finite()
            && match bound {
                Bound::AtLeast => value >= target,
                Bound::AtMost => value <= target,
                Bound::Below => value < target,
            };
        Self {
            scenario: scenario.to_owned(),
            name: name.into(),
            value,
            bound,
            target,
            unit: unit.to_owned(),
            met,
            rounds: Vec::new(),
        }
    }

    /// The median of the rounds' figures against the target, keeping each round's.
    pub fn median(scenario: &str, name: impl Into<String>, rounds: &[f64], bound: Bound, target: f64) -> Self {
        Self { rounds: rounds.to_vec(), ..Self::new(scenario, name, median(rounds), bound, target, "") }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_mib: u64,
}

impl Machine {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')))
            .map_or_else(|| "unknown".to_owned(), |(_, model)| model.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        Self { cores: std::thread::available_parallelism().map_or(1, usize::from), cpu_model, memory_mib }
    }
}

/// The run's settings, echoed so a figure can be reproduced.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub backend: String,
    pub scenarios: Vec<String>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub rounds: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub hashing_workers: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub measurements: Vec<Measurement>,
    pub checks: Vec<Check>,
    /// Scenarios that could not run to the end, with the reason.
    pub failures: Vec<String>,
}

/// The median of figures measured round by round. Each round measures the
/// service right after its limit, so a machine whose speed drifts (a shared
/// virtual machine can vary by 20 % within a minute) moves both alike; the
/// median keeps one disturbed round from deciding the verdict.
pub fn median(per_round: &[f64]) -> f64 {
    let mut finite: Vec<f64> = per_round.iter().copied().filter(|r| r.is_finite()).collect();
    if finite.is_empty() {
        return f64::NAN;
    }
    finite.sort_by(f64::total_cmp);
    let middle = finite.len() / 2;
    if finite.len() % 2 == 1 { finite[middle] } else { (finite[middle - 1] + finite[middle]) / 2.0 }
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let s = &self.settings;
        let _ = writeln!(
            out,
            "machine: {} cores, {}, {} MiB; backend {}; argon2 m={} KiB t={} p={}, {} hashing workers; {} s after {} s warm-up, {} round(s)",
            m.cores,
            m.cpu_model,
            m.memory_mib,
            s.backend,
            s.argon2_memory_kib,
            s.argon2_iterations,
            s.argon2_parallelism,
            s.hashing_workers,
            s.duration_s,
            s.warmup_s,
            s.rounds
        );
        let _ = writeln!(
            out,
            "\n{:<9} {:<52} {:>5} {:>9} {:>11} {:>9} {:>9} {:>8} {:>10} {:>10} {:>9}  errors",
            "scenario",
            "measurement",
            "conc",
            "completed",
            "per second",
            "p50 ms",
            "p99 ms",
            "wall s",
            "cpu ms/op",
            "client ms",
            "peak MiB"
        );
        for r in &self.measurements {
            let mut errors = if r.errors.is_empty() {
                "-".to_owned()
            } else {
                r.errors.iter().map(|(code, n)| format!("{code}={n}")).collect::<Vec<_>>().join(" ")
            };
            if let Some(database) = r.database_cpu_ms_per_op {
                errors.push_str(&format!("  (database cpu ms/op {database:.3})"));
            }
            let _ = writeln!(
                out,
                "{:<9} {:<52} {:>5} {:>9} {:>11} {:>9} {:>9} {:>8} {:>10} {:>10} {:>9}  {}",
                r.scenario,
                r.name,
                r.concurrency.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                r.completed,
                cell(r.throughput, 1),
                cell(r.p50_ms, 3),
                cell(r.p99_ms, 3),
                cell(r.wall_s, 2),
                cell(r.cpu_ms_per_op, 3),
                cell(r.client_cpu_ms_per_op, 4),
                cell(r.server_peak_rss_mib, 1),
                errors
            );
        }
        let width = self.checks.iter().map(|c| c.name.chars().count()).max().unwrap_or(0).max(52);
        let _ =
            writeln!(out, "\n{:<9} {:<width$} {:>12} {:>14}  verdict  rounds", "scenario", "check", "value", "target");
        for c in &self.checks {
            let bound = match c.bound {
                Bound::AtLeast => "≥",
                Bound::AtMost => "≤",
                Bound::Below => "<",
            };
            let rounds = c.rounds.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(" ");
            let _ = writeln!(
                out,
                "{:<9} {:<width$} {:>12} {:>14}  {:<7}  {}",
                c.scenario,
                c.name,
                format!("{:.3}{}", c.value, c.unit),
                format!("{bound} {}{}", c.target, c.unit),
                if c.met { "met" } else { "MISSED" },
                rounds
            );
        }
        for failure in &self.failures {
            let _ = writeln!(out, "\nFAILED: {failure}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_ignores_one_disturbed_round_and_missing_figures() {
        assert_eq!(median(&[0.95, 0.2, 0.93]), 0.93);
        assert_eq!(median(&[0.9, 1.0]), 0.95);
        assert_eq!(median(&[f64::NAN, 0.8, 0.7, 0.9]), 0.8);
        assert!(median(&[f64::NAN]).is_nan());
        assert!(median(&[]).is_nan());
    }

    fn report() -> Report {
        let mut sample = Sample { completed: 20, window: std::time::Duration::from_secs(2), ..Sample::default() };
        sample.latencies_us = (1..=100).map(|i| i * 100).collect();
        sample.errors.insert("ResourceExhausted".to_owned(), 3);
        Report {
            machine: Machine { cores: 2, cpu_model: "test cpu".to_owned(), memory_mib: 1024 },
            settings: Settings {
                backend: "sqlite".to_owned(),
                scenarios: vec!["login".to_owned()],
                duration_s: 2.0,
                warmup_s: 1.0,
                rounds: 3,
                argon2_memory_kib: 19456,
                argon2_iterations: 2,
                argon2_parallelism: 1,
                hashing_workers: 2,
            },
            measurements: vec![Measurement::from_sample("login", "Login over gRPC", 8, &sample).rss_kib(Some(2048))],
            checks: vec![
                Check::new("login", "ratio", 0.95, Bound::AtLeast, 0.9, ""),
                Check::new("validate", "p99", 2.0, Bound::Below, 2.0, " ms"),
            ],
            failures: vec!["gateway: wrk is not installed".to_owned()],
        }
    }

    #[test]
    fn a_sample_becomes_throughput_and_nearest_rank_quantiles() {
        let row = &report().measurements[0];
        assert_eq!(row.throughput, Some(10.0));
        assert_eq!((row.p50_ms, row.p99_ms), (Some(5.0), Some(9.9)));
        assert_eq!(row.server_peak_rss_mib, Some(2.0));
    }

    #[test]
    fn checks_compare_against_their_bound() {
        let checks = report().checks;
        assert!(checks[0].met);
        assert!(!checks[1].met, "2 ms is not below 2 ms");
        assert!(!Check::new("x", "nan", f64::NAN, Bound::AtMost, 1.0, "").met, "no figure never meets a target");
        assert!(Check::new("x", "equal", 1.15, Bound::AtMost, 1.15, "").met);
    }

    #[test]
    fn the_table_shows_every_row_check_and_failure() {
        let table = report().table();
        for expected in [
            "2 cores, test cpu",
            "Login over gRPC",
            "ResourceExhausted=3",
            "met",
            "MISSED",
            "< 2 ms",
            "FAILED: gateway: wrk is not installed",
        ] {
            assert!(table.contains(expected), "missing {expected:?} in\n{table}");
        }
    }

    #[test]
    fn the_json_report_names_its_fields() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["measurements"][0]["errors"]["ResourceExhausted"], 3);
        assert_eq!(json["checks"][1]["bound"], "below");
        assert_eq!(json["machine"]["cores"], 2);
    }
}
