//! [`ResourceSampler`]: where process memory and CPU come from.

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// Resource usage at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ResourceUsage {
    /// Resident memory, in MB (2^20 bytes).
    pub memory_mb: f64,
    /// CPU used since the previous sample, in percent of one core.
    pub cpu_percent: f64,
}

/// A source of resource usage. The default, [`ProcessSampler`], reads the
/// real process; tests inject fixed values.
pub trait ResourceSampler: Send + Sync {
    /// Takes a sample.
    fn sample(&self) -> ResourceUsage;
}

/// Reads this process's resident memory (`/proc/self/status`, `VmRSS`) and
/// CPU time (`/proc/self/stat`, user + system, at the Linux `USER_HZ` of
/// 100) on Linux. CPU percent is over the time since the previous sample
/// (since creation for the first). On other systems, or if `/proc` cannot be
/// read, the values are 0.
#[derive(Debug)]
pub struct ProcessSampler {
    last: Mutex<(Instant, f64)>,
}

impl Default for ProcessSampler {
    fn default() -> Self {
        ProcessSampler {
            last: Mutex::new((Instant::now(), cpu_seconds().unwrap_or(0.0))),
        }
    }
}

/// Resident memory in bytes, from `/proc/self/status`.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User + system CPU seconds of this process, from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields resume after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11, 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

impl ResourceSampler for ProcessSampler {
    fn sample(&self) -> ResourceUsage {
        let memory_mb = resident_memory_bytes().map_or(0.0, |b| b as f64 / 1_048_576.0);
        let now = Instant::now();
        let cpu = cpu_seconds();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let cpu_percent = match cpu {
            Some(cpu) => {
                let wall = now.duration_since(last.0).as_secs_f64();
                let used = (cpu - last.1).max(0.0);
                *last = (now, cpu);
                if wall > 0.0 { used / wall * 100.0 } else { 0.0 }
            }
            None => 0.0,
        };
        ResourceUsage {
            memory_mb,
            cpu_percent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_the_real_process() {
        let sampler = ProcessSampler::default();
        // Burn some CPU so the percentage has something to see.
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let usage = sampler.sample();
        assert!(usage.memory_mb > 1.0, "{usage:?}");
        assert!(usage.cpu_percent >= 0.0 && usage.cpu_percent.is_finite());
        // Allocating and touching 64 MiB shows in resident memory.
        let before = resident_memory_bytes().unwrap();
        let block = vec![1u8; 64 << 20];
        let after = resident_memory_bytes().unwrap();
        std::hint::black_box(&block);
        assert!(after >= before + (48 << 20), "{before} -> {after}");
    }
}
