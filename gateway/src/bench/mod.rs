//! The measurements behind BENCHMARKS.md, run by `itc-gateway bench …`.

pub mod api;
pub mod consensus;
pub mod dag;
pub mod light;
pub mod mqtt;

pub use consensus::consensus;

/// The `q` quantile of sorted samples (NaN when there are none).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

/// This process's resident set size in bytes (Linux), if readable.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
