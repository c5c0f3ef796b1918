//! Settings about the server process itself, checked on the real binary (built by cargo)
//! through the kernel's view of it (`/proc/<pid>/...`):
//! - transparent huge pages (issue #13, docs/performance-history.md "Transparent huge pages"): the server turns
//!   them off for its own process unless `transparent_huge_pages` is on (`THP_enabled`);
//! - `worker_threads` (README "Configuration"): how many threads run the server's tasks
//!   (tokio's `tokio-rt-worker` threads);
//! - `allocator_purge_delay_ms` (docs/performance-history.md "Allocator purge delay"): the delay the allocator
//!   reports back once the server set it, as the start-up `memory` line logs it.
#![cfg(target_os = "linux")]

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// The binary on a random port with a fresh SQLite database (the switch is about the process,
/// not the store). Answers once `/versions` is served.
struct Server {
    child: tokio::process::Child,
    dir: std::path::PathBuf,
    /// What the server logged before it listened.
    startup: Vec<String>,
}

impl Server {
    async fn start(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("seed-process-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = format!("sqlite://{}/seed.db?mode=rwc", dir.display());
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_seed-homeserver"))
            .args(["--bind", "127.0.0.1:0", "--database-url", &db, "--argon2-memory-kib", "8"])
            .args(["--media-path", &dir.join("media").display().to_string(), "--log", "info,sqlx=warn"])
            .args(extra)
            .env("NO_COLOR", "1")
            // The defaults under test, whatever the runner's environment says.
            .env_remove("TOKIO_WORKER_THREADS")
            .env_remove("SEED_WORKER_THREADS")
            .env_remove("SEED_TRANSPARENT_HUGE_PAGES")
            .env_remove("SEED_ALLOCATOR_PURGE_DELAY_MS")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn seed-homeserver");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut startup = Vec::new();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = line.find("addr=").filter(|_| line.contains("listening")) {
                    let addr: String =
                        line[at + 5..].chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect();
                    return addr;
                }
                startup.push(line);
            }
            panic!("the server exited before listening");
        })
        .await
        .expect("the server listens within 30 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let versions = reqwest::get(format!("http://{addr}/_matrix/client/versions")).await.expect("GET /versions");
        assert_eq!(versions.status(), 200);
        Self { child, dir, startup }
    }

    /// The purge delay the allocator reported at start-up (`None` on the system allocator).
    fn purge_delay(&self) -> String {
        let line = self.startup.iter().find(|l| l.contains(" memory")).expect("a start-up `memory` line");
        let at = line.find("allocator_purge_delay_ms=").expect("the purge delay is logged") + 25;
        line[at..].split_whitespace().next().unwrap_or_default().to_owned()
    }

    /// The kernel's `THP_enabled` for the server process (1: huge pages allowed, 0: off).
    fn thp_enabled(&self) -> u8 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
        let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("a THP_enabled line (Linux 5.0+)");
        line["THP_enabled:".len()..].trim().parse().expect("0 or 1")
    }

    /// How many of the server's threads are tokio workers (named `tokio-rt-worker`).
    fn worker_threads(&self) -> usize {
        let pid = self.child.id().expect("running");
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/<pid>/task");
        tasks
            .filter_map(|t| std::fs::read_to_string(t.expect("task entry").path().join("comm")).ok())
            .filter(|comm| comm.trim() == "tokio-rt-worker")
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_server_runs_without_transparent_huge_pages_by_default() {
    let server = Server::start(&[]).await;
    assert_eq!(server.thp_enabled(), 0, "huge pages are off for the server process");
}

#[tokio::test]
async fn an_operator_can_leave_huge_pages_to_the_system() {
    let server = Server::start(&["--transparent-huge-pages", "true"]).await;
    assert_eq!(server.thp_enabled(), 1, "the process does not turn huge pages off");
    // And off again when asked explicitly.
    let server = Server::start(&["--transparent-huge-pages", "false"]).await;
    assert_eq!(server.thp_enabled(), 0);
}

/// Runs the binary with `args`, which must stop it at start; returns what it printed on stderr.
async fn refused(args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_seed-homeserver"))
        .args(args)
        .output()
        .await
        .expect("run seed-homeserver");
    assert!(!out.status.success(), "the server did not stop for {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_bad_switch_value_stops_the_server_with_a_message() {
    let stderr = refused(&["--bind", "127.0.0.1:0", "--transparent-huge-pages", "sometimes"]).await;
    assert!(stderr.contains("transparent-huge-pages"), "{stderr}");
}

#[tokio::test]
async fn the_server_runs_one_worker_thread_per_core_unless_told() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let server = Server::start(&[]).await;
    assert_eq!(server.worker_threads(), cores, "tokio's default: one worker per core");
    let server = Server::start(&["--worker-threads", "1"]).await;
    assert_eq!(server.worker_threads(), 1);
    let server = Server::start(&["--worker-threads", "3"]).await;
    assert_eq!(server.worker_threads(), 3);
}

#[tokio::test]
async fn a_bad_worker_thread_count_stops_the_server_with_a_message() {
    let stderr = refused(&["--worker-threads", "many"]).await;
    assert!(stderr.contains("--worker-threads"), "the message names the flag: {stderr}");
}

#[tokio::test]
async fn the_allocator_gives_freed_memory_back_at_once_unless_told() {
    let server = Server::start(&[]).await;
    assert_eq!(server.purge_delay(), "Some(0)", "the default: at once");
    let server = Server::start(&["--allocator-purge-delay-ms", "250"]).await;
    assert_eq!(server.purge_delay(), "Some(250)");
    let server = Server::start(&["--allocator-purge-delay-ms", "99999999999"]).await;
    assert_eq!(server.purge_delay(), "Some(3600000)", "at most an hour");
    let stderr = refused(&["--allocator-purge-delay-ms", "soon"]).await;
    assert!(stderr.contains("--allocator-purge-delay-ms"), "the message names the flag: {stderr}");
}
