//! The measurements behind BENCHMARKS.md, run by `itc-gateway bench …`.

pub mod api;
pub mod consensus;
pub mod dag;
pub mod light;
pub mod mqtt;

pub use consensus::{consensus, ConsensusRun};

/// The `q` quantile of sorted samples (NaN when there are none).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

/// The CPU time this process has used, user and system, over all its
/// threads (Linux: `/proc/self/stat`'s `utime` and `stime`, in the kernel's
/// fixed user clock ticks of 1/100 s), if readable.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // After the name: state is field 3 of proc(5), utime 14 and stime 15.
    let ticks = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((ticks(14)? + ticks(15)?) as f64 / 100.0)
}

/// This process's resident set size in bytes (Linux), if readable.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    /// The CPU time grows while this thread works, and never faster than
    /// the machine's cores allow: the right fields, in the right unit.
    #[test]
    fn cpu_seconds_follows_the_work_done() {
        let before = super::cpu_seconds().expect("/proc/self/stat");
        let started = Instant::now();
        let mut x = 0u64;
        let used = loop {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
            let used = super::cpu_seconds().expect("/proc/self/stat") - before;
            if used >= 0.2 {
                break used;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the CPU time did not grow"
            );
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let wall = started.elapsed().as_secs_f64();
        assert!(
            used <= wall * cores + 0.05,
            "{used} s of CPU in {wall} s on {cores} cores"
        );
    }
}
