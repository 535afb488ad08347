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

/// The process's soft limit on open files (`Max open files` of
/// `/proc/self/limits`); `None` where it cannot be read or is unlimited.
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Resident memory in bytes, from `/proc/self/status`.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Linux's `USER_HZ`: the unit of CPU times in `/proc`.
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of `/proc/self/stat` after the command name (field 3, the
/// state, first).
fn stat_fields() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields resume after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// User + system CPU seconds of this process, from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let fields = stat_fields()?;
    // After ')': state is field 3, so utime (14) and stime (15) are at 11, 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// What the standard `process_*` metrics report; `None` where `/proc`
/// cannot tell.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ProcessStats {
    pub(crate) resident_bytes: Option<u64>,
    pub(crate) virtual_bytes: Option<u64>,
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) open_fds: Option<u64>,
    pub(crate) max_fds: Option<u64>,
    pub(crate) start_time_seconds: Option<f64>,
}

/// Reads [`ProcessStats`] from `/proc/self` (and `/proc/stat` for the boot
/// time).
pub(crate) fn process_stats() -> ProcessStats {
    let fields = stat_fields();
    let field = |i: usize| -> Option<f64> { fields.as_ref()?.get(i)?.parse().ok() };
    // vsize is field 23 and starttime field 22: indexes 20 and 19 here.
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    let max_fds = open_file_limit();
    ProcessStats {
        resident_bytes: resident_memory_bytes(),
        virtual_bytes: field(20).map(|v| v as u64),
        cpu_seconds: cpu_seconds(),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64),
        max_fds,
        start_time_seconds: boot_time
            .zip(field(19))
            .map(|(boot, ticks)| boot + ticks / TICKS_PER_SECOND),
    }
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
    fn this_process_has_a_limit() {
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }

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

    #[test]
    #[cfg(target_os = "linux")]
    fn process_stats_are_those_of_this_process() {
        let before = process_stats();
        // Opening files shows in open_fds.
        let files: Vec<std::fs::File> = (0..16)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let after = process_stats();
        drop(files);
        assert!(
            after.open_fds.unwrap() >= before.open_fds.unwrap() + 16,
            "{before:?} {after:?}"
        );
        assert!(after.max_fds.unwrap() >= after.open_fds.unwrap());
        assert!(after.virtual_bytes.unwrap() >= after.resident_bytes.unwrap());
        assert!(after.cpu_seconds.unwrap() >= before.cpu_seconds.unwrap());
        // Started within the last day, not in the future.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = after.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
    }
}
