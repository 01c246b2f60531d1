//! What Linux says about a process: CPU time (`/proc/PID/stat` utime + stime), that of a
//! process tree (a database server and its backends), resident and peak resident memory
//! (`/proc/PID/status` VmRSS, VmHWM), and the calling thread's CPU time in nanoseconds
//! (`/proc/thread-self/schedstat`).

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

/// Fields `numbers` (as proc(5) numbers them) of `/proc/PID/stat`.
fn stat_fields<T: std::str::FromStr + Copy + Default, const N: usize>(
    pid: u32,
    numbers: [usize; N],
) -> anyhow::Result<[T; N]> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).with_context(|| format!("{path}: no ')'"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let mut values = [T::default(); N];
    for (value, n) in values.iter_mut().zip(numbers) {
        // `after` starts at field 3.
        let text = n
            .checked_sub(3)
            .and_then(|i| fields.get(i))
            .with_context(|| format!("{path}: field {n} missing"))?;
        *value = text.parse::<T>().ok().with_context(|| format!("{path}: field {n} is {text:?}"))?;
    }
    Ok(values)
}

/// CPU seconds (user + system) process `pid` has used.
pub(crate) fn cpu_seconds(pid: u32, ticks_per_second: f64) -> anyhow::Result<f64> {
    let [user, system]: [f64; 2] = stat_fields(pid, [14, 15])?;
    Ok((user + system) / ticks_per_second)
}

/// CPU seconds the process tree under `root` has used: `root` with its children that
/// ended and were waited for (cutime, cstime), and every live descendant (a database
/// server's backends). Compare two readings: a descendant that ends in between moves its
/// time into its parent's.
pub(crate) fn tree_cpu_seconds(root: u32, ticks_per_second: f64) -> anyhow::Result<f64> {
    let [user, system, children_user, children_system]: [f64; 4] = stat_fields(root, [14, 15, 16, 17])?;
    let mut ticks = user + system + children_user + children_system;
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").context("reading /proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        // Processes that end while this reads are skipped.
        if let Ok([parent]) = stat_fields::<u32, 1>(pid, [4]) {
            parents.push((pid, parent));
        }
    }
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        next += 1;
        for &(pid, _) in parents.iter().filter(|(_, p)| *p == parent) {
            if let Ok([user, system]) = stat_fields::<f64, 2>(pid, [14, 15]) {
                ticks += user + system;
                tree.push(pid);
            }
        }
    }
    Ok(ticks / ticks_per_second)
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
        // This test's process tree holds at least this process.
        let tree = tree_cpu_seconds(pid, clock_ticks()).unwrap();
        assert!(tree >= cpu_seconds(pid, clock_ticks()).unwrap());
        assert!(tree_cpu_seconds(u32::MAX, clock_ticks()).is_err(), "no such process");
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
