//! What Linux says about a process: CPU time (`/proc/PID/stat` utime + stime), resident
//! and peak resident memory (`/proc/PID/status` VmRSS, VmHWM), and the calling thread's
//! CPU time in nanoseconds (`/proc/thread-self/schedstat`).

use anyhow::Context as _;

/// Clock ticks per second (`getconf CLK_TCK`; 100 when that cannot be asked).
pub(crate) fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) process `pid` has used.
pub(crate) fn cpu_seconds(pid: u32, ticks_per_second: f64) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).with_context(|| format!("{path}: no ')'"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `after` starts at field 3.
    let field = |n: usize| -> anyhow::Result<f64> {
        let text = fields.get(n - 3).with_context(|| format!("{path}: field {n} missing"))?;
        text.parse::<f64>().with_context(|| format!("{path}: field {n} is {text:?}"))
    };
    Ok((field(14)? + field(15)?) / ticks_per_second)
}

/// A `kB` line of `/proc/PID/status`, in MiB.
fn status_mib(pid: u32, key: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix(':')))
        .with_context(|| format!("{path}: no {key}"))?;
    let kib: f64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("{path}: {key} is {line:?}"))?;
    Ok(kib / 1024.0)
}

/// Resident memory of `pid`, MiB.
pub(crate) fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmRSS")
}

/// Peak resident memory of `pid`, MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmHWM")
}

/// CPU nanoseconds the calling thread has run.
pub(crate) fn thread_cpu_ns() -> anyhow::Result<u64> {
    let path = "/proc/thread-self/schedstat";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let first = text.split_whitespace().next().with_context(|| format!("{path} is empty"))?;
    first.parse().with_context(|| format!("{path}: {first:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid, clock_ticks()).is_ok());
        assert!(rss_mib(pid).is_ok_and(|m| m > 0.0));
        assert!(peak_rss_mib(pid).is_ok_and(|m| m > 0.0));
        // The kernel updates a thread's run time at scheduler ticks, not on every read: spin
        // (up to a second of wall time) until it has moved.
        let before = thread_cpu_ns().unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut advanced = false;
        while !advanced && start.elapsed() < std::time::Duration::from_secs(1) {
            for i in 0..100_000u64 {
                x = x.wrapping_add(std::hint::black_box(i * i));
            }
            advanced = thread_cpu_ns().unwrap() > before;
        }
        assert!(x > 0);
        assert!(advanced, "thread CPU time did not advance in a second of spinning");
    }
}
