//! What the benchmark reads from `/proc`: peak memory and CPU time used.

/// A `kB` field of `/proc/<pid>/status`, e.g. `VmHWM:`.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// CPU time (user + system, every thread, living or ended) process `pid` has
/// used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // /proc reports clock ticks of USER_HZ, which Linux fixes at 100 for user space.
    Some((utime + stime) as f64 / 100.0)
}

/// CPU seconds used so far by each process named `comm` (a database
/// server's processes on this machine).
#[derive(Clone, Debug, Default)]
pub struct NamedCpu(std::collections::HashMap<u32, f64>);

impl NamedCpu {
    pub fn take(comm: &str) -> Self {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Self::default() };
        let named = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|name| name.trim() == comm));
        Self(named.filter_map(|pid| Some((pid, cpu_seconds(pid)?))).collect())
    }

    /// CPU used since `earlier` by the processes seen both times (one that
    /// ended or began in between is left out, not counted whole); None when
    /// no such process was seen (the database is elsewhere).
    pub fn since(&self, earlier: &NamedCpu) -> Option<f64> {
        let both: Vec<f64> =
            self.0.iter().filter_map(|(pid, now)| Some((now - earlier.0.get(pid)?).max(0.0))).collect();
        (!both.is_empty()).then(|| both.iter().sum())
    }
}

/// CPU seconds of this process and of the server, read together.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSnapshot {
    pub own: f64,
    pub server: f64,
}

impl CpuSnapshot {
    pub fn take(server: Option<u32>) -> Self {
        Self {
            own: cpu_seconds(std::process::id()).unwrap_or(0.0),
            server: server.and_then(cpu_seconds).unwrap_or(0.0),
        }
    }

    /// CPU used between `earlier` and this snapshot.
    pub fn since(self, earlier: CpuSnapshot) -> CpuSnapshot {
        CpuSnapshot { own: self.own - earlier.own, server: self.server - earlier.server }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_and_uses_cpu() {
        let started = cpu_seconds(std::process::id()).unwrap();
        let mut x = 0u64;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < until {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_seconds(std::process::id()).unwrap() >= started);
        assert!(status_kib(std::process::id(), "VmHWM:").unwrap() > 0);
        assert!(cpu_seconds(u32::MAX).is_none());
        let own_name = std::fs::read_to_string(format!("/proc/{}/comm", std::process::id())).unwrap();
        let before = NamedCpu::take(own_name.trim());
        assert!(before.0.contains_key(&std::process::id()), "this process is found by its name");
        assert!(NamedCpu::take(own_name.trim()).since(&before).is_some_and(|used| used >= 0.0));
        let nobody = NamedCpu::take("no process is named this");
        assert_eq!(nobody.since(&nobody), None, "nothing measured is not zero");
    }
}
