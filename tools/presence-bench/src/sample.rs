//! Samples of the target taken from outside: server RSS and CPU from `/proc/<pid>` (Linux),
//! database size from the SQLite files or PostgreSQL's `pg_database_size`.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::cli::Args;
use crate::run::proc_cpu_secs;

/// Resident set size of `pid` in KiB (`VmRSS` of /proc/PID/status).
pub fn proc_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    rss_from_status(&status)
}

pub fn rss_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Bytes of a SQLite database: the main file plus its write-ahead log and shared-memory file.
pub fn sqlite_bytes(path: &Path) -> Option<u64> {
    let main = std::fs::metadata(path).ok()?.len();
    let side = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0)
    };
    Some(main + side("-wal") + side("-shm"))
}

/// `pg_database_size(current_database())` through the `psql` client.
pub fn pg_bytes(url: &str) -> Option<u64> {
    let out = std::process::Command::new("psql")
        .args([url, "-XAtqc", "SELECT pg_database_size(current_database())"])
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// One sample of the target.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub t_secs: f64,
    pub db_bytes: Option<u64>,
    pub rss_kb: Option<u64>,
    pub cpu_secs: Option<f64>,
}

/// Takes samples relative to a start instant.
pub struct Sampler {
    t0: Instant,
    pid: Option<u32>,
    sqlite: Option<std::path::PathBuf>,
    pg: Option<String>,
}

impl Sampler {
    pub fn new(a: &Args) -> Self {
        Self { t0: Instant::now(), pid: a.server_pid, sqlite: a.sqlite_path.clone(), pg: a.pg_url.clone() }
    }

    pub fn db_bytes(&self) -> Option<u64> {
        match (&self.sqlite, &self.pg) {
            (Some(p), _) => sqlite_bytes(p),
            (None, Some(url)) => pg_bytes(url),
            _ => None,
        }
    }

    pub fn take(&self) -> Sample {
        Sample {
            t_secs: (self.t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            db_bytes: self.db_bytes(),
            rss_kb: self.pid.and_then(proc_rss_kb),
            cpu_secs: self.pid.and_then(proc_cpu_secs),
        }
    }
}

/// Growth in bytes per second between two samples, if both have a size.
pub fn growth_per_s(a: &Sample, b: &Sample) -> Option<f64> {
    let (x, y) = (a.db_bytes? as f64, b.db_bytes? as f64);
    let dt = b.t_secs - a.t_secs;
    (dt > 0.0).then(|| (y - x) / dt)
}
