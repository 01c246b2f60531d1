//! The standard `process_*` metrics (Prometheus client guidelines), read from `/proc/self`
//! (proc(5)). A file that cannot be read leaves its metrics out rather than inventing them.

use std::fmt::Write as _;

/// Clock ticks per second of `/proc/[pid]/stat` times: `USER_HZ`, 100 on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// Appends the process metrics to `out`.
pub(super) fn render(out: &mut String) {
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(") "))
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        metric(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            (utime + stime) / TICKS_PER_SECOND,
        );
    }
    if let (Some(start), Some(boot)) = (field(22), boot_time()) {
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            boot + start / TICKS_PER_SECOND,
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
    };
    if let Some(rss) = kib("VmRSS:") {
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss * 1024.0);
    }
    if let Some(size) = kib("VmSize:") {
        metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", size * 1024.0);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        #[allow(clippy::cast_precision_loss)] // a count of file descriptors
        metric("process_open_fds", "gauge", "Number of open file descriptors.", fds.count() as f64);
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<f64>().ok());
    if let Some(max) = max_fds {
        metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", max);
    }
}

/// `btime` of `/proc/stat`: when the system booted, in seconds since the Unix epoch.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_is_described() {
        let mut out = String::new();
        super::render(&mut out);
        for name in [
            "process_cpu_seconds_total",
            "process_start_time_seconds",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
        ] {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing:\n{out}"));
            let value: f64 = line.rsplit(' ').next().unwrap_or_default().parse().unwrap_or(-1.0);
            // CPU time counts in 10 ms ticks: a young test process may not have one yet.
            let least = if name == "process_cpu_seconds_total" { 0.0 } else { f64::MIN_POSITIVE };
            assert!(value >= least, "{line}");
        }
    }
}
