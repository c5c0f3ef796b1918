use clap::Parser;

// The server allocates many short-lived buffers per request (JSON, headers); mimalloc serves
// them with far less contention than the system allocator on many threads. The
// `system-allocator` feature leaves it out, so heap profilers that hook malloc (heaptrack,
// valgrind's massif) see every allocation (README, Performance).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use seed::config::{Cli, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli)?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into()))
        .init();
    // Before the server allocates its state (`ground/memory.rs`).
    let off = seed::ground::memory::set_transparent_huge_pages(config.transparent_huge_pages);
    tracing::info!(transparent_huge_pages = config.transparent_huge_pages, process_thp_off = ?off, "memory");
    seed::app::run(config).await
}
