//! CPU, memory and disk of this workspace, for the dashboard header.
//!
//! Inside a pod the numbers that matter are the container's cgroup (v2)
//! usage and limits, not the node's; outside a container the same files
//! describe the user's session, and the host's totals fill in the limits.
//! Disk is the file system that holds the home directory.
//!
//! CPU usage is a rate, so it needs two readings: the sampler keeps the
//! previous one. The sampler task publishes a `system` event every few
//! seconds, and only while someone listens to `/api/events`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How often the header's figures are pushed to listening dashboards.
pub const PUSH_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SystemStats {
    /// CPU in use, in cores (1.5 = one and a half cores busy); `None` until
    /// two readings exist.
    pub cpu_cores: Option<f64>,
    /// The CPU limit in cores (cgroup `cpu.max`), or the machine's cores.
    pub cpu_limit_cores: f64,
    pub memory_bytes: Option<u64>,
    /// The memory limit (cgroup `memory.max`), or the machine's memory.
    pub memory_limit_bytes: Option<u64>,
    pub disk_used_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
}

/// Where the readings come from; tests point it at fixture files.
#[derive(Debug, Clone)]
pub struct Sources {
    pub cgroup: PathBuf,
    pub proc: PathBuf,
    pub home: PathBuf,
}

impl Sources {
    pub fn system(home: &Path) -> Self {
        Self {
            cgroup: PathBuf::from("/sys/fs/cgroup"),
            proc: PathBuf::from("/proc"),
            home: home.to_path_buf(),
        }
    }
}

#[derive(Clone)]
pub struct Sampler {
    sources: Sources,
    last_cpu: Arc<Mutex<Option<(u64, Instant)>>>,
}

impl Sampler {
    pub fn new(sources: Sources) -> Self {
        let s = Self {
            sources,
            last_cpu: Arc::new(Mutex::new(None)),
        };
        // A first reading now, so the first request already has a rate.
        let _ = s.sample();
        s
    }

    /// Read everything once (blocking file reads of a few bytes each).
    pub fn sample(&self) -> SystemStats {
        let src = &self.sources;
        let cpu_usage = cpu_usage_usec(src);
        let now = Instant::now();
        let cpu_cores = cpu_usage.and_then(|usage| {
            let mut last = self.last_cpu.lock().unwrap_or_else(|p| p.into_inner());
            let rate = last.and_then(|(prev, at)| {
                let dt = now.duration_since(at).as_secs_f64();
                (dt > 0.05 && usage >= prev).then(|| (usage - prev) as f64 / 1e6 / dt)
            });
            // Keep the older reading when this one is too close to it, so
            // back-to-back requests still see a rate.
            if last.is_none_or(|(_, at)| now.duration_since(at) > Duration::from_millis(50)) {
                *last = Some((usage, now));
            }
            rate
        });
        let (disk_used_bytes, disk_total_bytes) = disk(&src.home);
        SystemStats {
            cpu_cores: cpu_cores.map(|c| (c * 100.0).round() / 100.0),
            cpu_limit_cores: cpu_limit(src),
            memory_bytes: memory_used(src),
            memory_limit_bytes: memory_limit(src),
            disk_used_bytes,
            disk_total_bytes,
        }
    }
}

fn read(path: PathBuf) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `usage_usec` from cgroup v2 `cpu.stat`, else all non-idle time in `/proc/stat`.
fn cpu_usage_usec(src: &Sources) -> Option<u64> {
    if let Some(stat) = read(src.cgroup.join("cpu.stat")) {
        return stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse().ok());
    }
    let stat = read(src.proc.join("stat"))?;
    let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle+iowait.
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    // USER_HZ is 100 on every Linux we run on: one tick is 10 000 µs.
    Some(total.saturating_sub(idle) * 10_000)
}

fn host_cores() -> f64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0)
}

/// cgroup v2 `cpu.max` is `max 100000` or `<quota> <period>`.
fn cpu_limit(src: &Sources) -> f64 {
    let parsed = read(src.cgroup.join("cpu.max")).and_then(|s| {
        let mut parts = s.split_whitespace();
        let quota: f64 = parts.next()?.parse().ok()?;
        let period: f64 = parts.next()?.parse().ok()?;
        (period > 0.0).then(|| quota / period)
    });
    let cores = host_cores();
    parsed.map_or(cores, |q| q.min(cores))
}

fn meminfo(src: &Sources, key: &str) -> Option<u64> {
    let info = read(src.proc.join("meminfo"))?;
    info.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
}

fn memory_used(src: &Sources) -> Option<u64> {
    if let Some(v) = read(src.cgroup.join("memory.current")) {
        return v.trim().parse().ok();
    }
    Some(meminfo(src, "MemTotal:")?.saturating_sub(meminfo(src, "MemAvailable:")?))
}

/// `memory.max` is a number or `max` (no limit: the machine's memory).
fn memory_limit(src: &Sources) -> Option<u64> {
    let total = meminfo(src, "MemTotal:");
    match read(src.cgroup.join("memory.max")).map(|s| s.trim().to_string()) {
        Some(v) if v != "max" => v.parse::<u64>().ok().map(|l| total.map_or(l, |t| l.min(t))),
        _ => total,
    }
}

fn disk(home: &Path) -> (Option<u64>, Option<u64>) {
    match rustix::fs::statvfs(home) {
        Ok(s) => {
            let total = s.f_blocks * s.f_frsize;
            let used = s.f_blocks.saturating_sub(s.f_bfree) * s.f_frsize;
            (Some(used), Some(total))
        }
        Err(_) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(files: &[(&str, &str)]) -> (tempfile::TempDir, Sources) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let s = Sources {
            cgroup: dir.path().join("cgroup"),
            proc: dir.path().join("proc"),
            home: dir.path().to_path_buf(),
        };
        (dir, s)
    }

    #[test]
    fn reads_the_containers_cgroup_limits() {
        let (_d, src) = fixture(&[
            ("cgroup/cpu.stat", "usage_usec 5000000\nuser_usec 1\n"),
            ("cgroup/cpu.max", "50000 100000\n"),
            ("cgroup/memory.current", "104857600\n"),
            ("cgroup/memory.max", "536870912\n"),
            (
                "proc/meminfo",
                "MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n",
            ),
        ]);
        let s = Sampler::new(src.clone()).sample();
        assert_eq!(s.cpu_limit_cores, 0.5f64.min(host_cores()));
        assert_eq!(s.memory_bytes, Some(104_857_600));
        assert_eq!(s.memory_limit_bytes, Some(536_870_912));
        assert!(s.disk_total_bytes.unwrap() > 0);
    }

    #[test]
    fn unlimited_cgroup_falls_back_to_the_machine() {
        let (_d, src) = fixture(&[
            ("cgroup/cpu.max", "max 100000\n"),
            ("cgroup/memory.max", "max\n"),
            (
                "proc/meminfo",
                "MemTotal:       2048 kB\nMemAvailable:    1024 kB\n",
            ),
            ("proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n"),
        ]);
        let s = Sampler::new(src).sample();
        assert_eq!(s.cpu_limit_cores, host_cores());
        assert_eq!(s.memory_limit_bytes, Some(2048 * 1024));
        // No memory.current: the host's used memory.
        assert_eq!(s.memory_bytes, Some(1024 * 1024));
    }

    #[test]
    fn cpu_rate_comes_from_two_readings() {
        let (d, src) = fixture(&[("cgroup/cpu.stat", "usage_usec 1000000\n")]);
        let sampler = Sampler::new(src);
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(d.path().join("cgroup/cpu.stat"), "usage_usec 1100000\n").unwrap();
        let cores = sampler.sample().cpu_cores.unwrap();
        // 0.1 s of CPU in a little over 0.2 s: about half a core.
        assert!(cores > 0.1 && cores <= 0.5, "{cores}");
    }
}
