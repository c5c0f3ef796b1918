//! Memory per idle `/sync` long-poll, counted by the allocator of `tests/common/heap.rs`
//! (issue #13: < 16 KB per waiting poll). The allocator counts the whole process, so this
//! file holds this one test only: nothing else allocates while it measures.
mod common;
#[path = "common/heap.rs"]
mod heap;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{enc, TestApp};

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

const FILTER: &str = r#"{"room":{"rooms":[]},"presence":{"types":[]},"account_data":{"types":[]}}"#;

async fn wait_parked(app: &TestApp, want: impl Fn(u64) -> bool) -> u64 {
    let notifier = &app.running.as_ref().unwrap().state.notifier;
    let t = Instant::now();
    loop {
        let p = notifier.parked_polls();
        if want(p) || t.elapsed() > Duration::from_secs(30) {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn long_poll_request(app: &TestApp, token: &str, since: &str) -> String {
    let host = app.base.trim_start_matches("http://");
    format!(
        "GET /_matrix/client/v3/sync?since={since}&timeout=600000&filter={} HTTP/1.1\r\nhost: {host}\r\n\
         authorization: Bearer {token}\r\naccept: */*\r\n\r\n",
        enc(FILTER)
    )
}

/// Many idle long-polls over their own connections, each parked; the heap they hold together,
/// per poll, stays under the bound of issue #13 (16 KB). In this debug build the listener of
/// `axum::serve` held ~38 KB per poll, the own listener over hyper's HTTP/1 connection ~28 KB
/// (16 KB of it hyper's 8 KB read and write buffers; `SEED_TEST_HTTP1_DRIVER=hyper` still
/// fails this test), our own HTTP/1 driver keeps no buffer while a request waits (docs/performance-history.md "Idle long-poll
/// memory"), and the futures a waiting poll holds keep no copy of its request (docs/performance-history.md "Smaller
/// parked polls") and no slot for what only a response or a refusal needs. Then the clients
/// hang up, and the server ends their polls and frees what they held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_long_polls_are_small_and_end_when_the_client_hangs_up() {
    const POLLS: usize = 200;
    let app = TestApp::spawn_with(|c| {
        c.presence_device_timeout_ms = 3_600_000;
        c.presence_idle_after_ms = 3_600_000;
        c.max_sync_timeout_ms = 600_000;
        // `SEED_TEST_HTTP1_DRIVER=hyper` shows the bound failing on hyper's HTTP/1 connection.
        if std::env::var("SEED_TEST_HTTP1_DRIVER").as_deref() == Ok("hyper") {
            c.http1_driver = seed::config::Http1Driver::Hyper;
        }
    })
    .await;
    let addr = app.running.as_ref().unwrap().addr;
    let mut requests = Vec::new();
    for i in 0..POLLS {
        let u = app.register(&format!("idle{i}")).await;
        let first = app.sync(&u, &format!("filter={}", enc(FILTER))).await;
        requests.push(long_poll_request(&app, &u.token, first["next_batch"].as_str().unwrap()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = heap::snapshot();
    let conns = tokio::task::spawn_blocking(move || {
        requests
            .iter()
            .map(|r| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(r.as_bytes()).unwrap();
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(wait_parked(&app, |p| p >= POLLS as u64).await, POLLS as u64, "every poll parks");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let with = heap::snapshot();
    let per_poll = (with.live_bytes - before.live_bytes) / POLLS as i64;
    eprintln!("heap per idle long-poll: {per_poll} bytes");
    for (size, blocks) in with.growth_by_size(&before, 12) {
        eprintln!("  {size:>6} B x {:.2} per poll", blocks as f64 / POLLS as f64);
    }
    // Issue #13 asks < 16 KB; the bound is tighter, so that a future that grows back fails
    // here (5.6 KB now; 7.0 KB before the connection's task and the `/sync` handler's future
    // stopped keeping arguments, a refusal's state and the answer in slots of their own,
    // docs/performance-history.md "Futures laid out for a parked poll"; 9.0 KB before CORS
    // stopped building a header map per request and the held empty answer its one-time-key
    // B-tree node; 10.4 KB before the HTTP/1 connection
    // task stopped storing its handler's future, stream and service twice; 14.2 KB before the
    // `/sync` handler, the edge and the latency metric stopped keeping the request in their
    // futures).
    assert!(per_poll < 6 * 1024, "an idle long-poll holds {per_poll} bytes of heap");

    drop(conns);
    assert_eq!(wait_parked(&app, |p| p == 0).await, 0, "hung-up clients end their polls");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = heap::snapshot();
    let freed = (with.live_bytes - after.live_bytes) / POLLS as i64;
    let blocks = (with.live_blocks - before.live_blocks) as f64 / POLLS as f64;
    let freed_blocks = (with.live_blocks - after.live_blocks) as f64 / POLLS as f64;
    eprintln!("freed per closed poll: {freed} of {per_poll} bytes, {freed_blocks:.1} of {blocks:.1} blocks");
    // Counted in blocks: containers that grew for 200 polls (the runtime's socket slab, maps)
    // keep their capacity, a few large blocks that are ~1 MB together, a third of what the
    // polls themselves held.
    assert!(freed_blocks >= blocks * 0.9, "a closed poll frees what it held: {freed_blocks:.1} of {blocks:.1} blocks");
}
