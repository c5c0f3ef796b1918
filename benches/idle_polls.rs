//! What one idle `/sync` long-poll holds in the server (issue #13: < 16 KB per waiting poll).
//!
//! The server runs in this process under a counting allocator (`tests/common/heap.rs`, over
//! mimalloc like the server binary). N users each make an initial sync, then N raw TCP
//! connections (plain blocking sockets on one thread: the client side allocates nothing per
//! connection) each send one `GET /sync?since=…&timeout=600000` and wait. Once every poll is
//! parked (`Notifier::parked_polls`), the growth of live heap bytes, live blocks and RSS
//! divided by N is what each waiting poll costs, and the allocation sizes that grew most
//! say where it goes. Then half the clients hang up, to show the server notices and frees
//! their polls.
//!
//! Run: `cargo bench --bench idle_polls` (`IDLE_POLLS=n`, default 2000; SQLite in a temp dir;
//! `IDLE_HTTP1_DRIVER=hyper` serves HTTP/1 with hyper instead of our own driver, to compare).
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/heap.rs"]
mod heap;

use std::io::Write;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

/// The presence-bench `idle` scenario's filter: nothing but the next batch comes back.
const IDLE_FILTER: &str = r#"{"room":{"rooms":[]},"presence":{"types":[]},"account_data":{"types":[]}}"#;

fn main() {
    let n: usize = std::env::var("IDLE_POLLS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let driver = match std::env::var("IDLE_HTTP1_DRIVER").as_deref() {
        Ok("hyper") => seed::config::Http1Driver::Hyper,
        _ => seed::config::Http1Driver::Seed,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run(n, driver));
}

async fn run(n: usize, driver: seed::config::Http1Driver) {
    let app = common::TestApp::spawn_with(|c| {
        // The delivery timers of test_config are sub-second; an idle poll must stay idle.
        c.presence_device_timeout_ms = 3_600_000;
        c.presence_idle_after_ms = 3_600_000;
        c.max_sync_timeout_ms = 600_000;
        c.http1_driver = driver;
    })
    .await;
    eprintln!("idle_polls: HTTP/1 driver {driver:?}");
    let running = app.running.as_ref().expect("running");
    let (addr, state) = (running.addr, running.state.clone());
    let t = Instant::now();
    let mut users = Vec::with_capacity(n);
    let filter = format!("filter={}", common::enc(IDLE_FILTER));
    for i in 0..n {
        let u = app.register(&format!("idle{i}")).await;
        let first = app.sync(&u, &filter).await;
        users.push((u.token, first["next_batch"].as_str().expect("next_batch").to_owned()));
    }
    eprintln!("idle_polls: {n} users registered and synced in {:.1}s", t.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, rss_before) = (heap::snapshot(), heap::rss_kib());

    let requests: Vec<String> = users
        .iter()
        .map(|(token, since)| {
            format!(
                "GET /_matrix/client/v3/sync?since={since}&timeout=600000&filter={} HTTP/1.1\r\nhost: {addr}\r\n\
                 authorization: Bearer {token}\r\naccept: */*\r\n\r\n",
                common::enc(IDLE_FILTER)
            )
        })
        .collect();
    heap::trace_sizes(true);
    let conns = tokio::task::spawn_blocking(move || {
        let mut conns = Vec::with_capacity(requests.len());
        for r in &requests {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.write_all(r.as_bytes()).expect("send");
            conns.push(s);
        }
        drop(requests);
        conns
    })
    .await
    .expect("clients");
    let parked = wait_parked(&state, n as u64).await;
    heap::trace_sizes(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (with, rss_with) = (heap::snapshot(), heap::rss_kib());
    let per = |d: i64| d as f64 / n as f64;
    println!(
        "idle_polls: {n} polls parked={parked}: heap {:.0} B/poll in {:.1} blocks/poll; RSS {} KiB/poll",
        per(with.live_bytes - before.live_bytes),
        per(with.live_blocks - before.live_blocks),
        rss_before.zip(rss_with).map_or("n/a".into(), |(b, w)| format!("{:.1}", per(w - b))),
    );
    println!("  sizes that grew most (size: blocks per poll, bytes per poll):");
    for (size, blocks) in with.growth_by_size(&before, 16) {
        println!("  {size:>6} B: {:>6.2} blocks/poll = {:>7.0} B/poll", per(blocks), per(blocks * size as i64));
    }

    // Half the clients hang up: their polls must end and free what they held.
    let mut conns = conns;
    let gone = conns.split_off(n / 2);
    drop(gone);
    let t = Instant::now();
    let left = loop {
        let p = state.notifier.parked_polls();
        if p <= (n / 2) as u64 || t.elapsed() > Duration::from_secs(10) {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let after = heap::snapshot();
    println!(
        "  after {} clients hung up: {left} polls parked ({:.1}s), heap freed {:.0} B per closed poll",
        n - n / 2,
        t.elapsed().as_secs_f64(),
        (with.live_bytes - after.live_bytes) as f64 / (n - n / 2) as f64,
    );
    drop(conns);
    let mut app = app;
    if let Some(r) = app.running.take() {
        r.stop().await;
    }
}

async fn wait_parked(state: &seed::app::AppState, n: u64) -> u64 {
    let t = Instant::now();
    loop {
        let p = state.notifier.parked_polls();
        if p >= n || t.elapsed() > Duration::from_secs(120) {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
