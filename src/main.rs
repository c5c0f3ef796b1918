use clap::Parser;

// The server allocates many short-lived buffers per request (JSON, headers); mimalloc serves
// them with far less contention than the system allocator on many threads. The
// `system-allocator` feature leaves it out, so heap profilers that hook malloc (heaptrack,
// valgrind's massif) see every allocation (docs/performance-history.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use seed::config::{Cli, Config};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli)?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into()))
        .init();
    // Before the server allocates its state (`ground/memory.rs`).
    let off = seed::ground::memory::set_transparent_huge_pages(config.transparent_huge_pages);
    let purge_delay_ms = seed::ground::memory::set_allocator_purge_delay(config.allocator_purge_delay_ms);
    tracing::info!(
        transparent_huge_pages = config.transparent_huge_pages,
        process_thp_off = ?off,
        allocator_purge_delay_ms = ?purge_delay_ms,
        "memory"
    );
    // The runtime is built after the config is read: its thread count is a setting
    // (`worker_threads`; README "Configuration").
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.runtime_workers() {
        runtime.worker_threads(n);
    }
    runtime.enable_all().build()?.block_on(seed::app::run(config))
}
