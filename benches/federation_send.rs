//! Outgoing federation throughput (issue #14 "Performance"): PDUs per second one Seed sends
//! to one peer, and whether a slow peer (every transaction answered after 200 ms) delays a
//! fast one. The peers are the stand-in of `tests/common/peer.rs` (TLS on loopback, records
//! transactions). Run: `cargo bench --bench federation_send` (SQLite in a temp dir; set
//! SEED_BENCH_DATABASE_URL=postgres://… for PostgreSQL, the database must be empty).
#[path = "../tests/common/peer.rs"]
mod peer;

use std::time::{Duration, Instant};

use peer::{FakePeer, Mode};
use serde_json::json;

const N: usize = 20_000;

fn config(dir: &std::path::Path) -> seed::config::Config {
    let mut c = seed::config::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: std::env::var("SEED_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| format!("sqlite://{}/seed.db?mode=rwc", dir.display())),
        media_path: dir.join("media"),
        log: "warn".into(),
        ..Default::default()
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    c.server_name = format!("localhost:{port}");
    c.federation.enabled = true;
    c.federation.bind = format!("127.0.0.1:{port}").parse().unwrap();
    c.federation.data_dir = dir.join("federation");
    c.federation.accept_invalid_certs = true;
    // Room for every PDU of a run: a full queue drops the oldest, and the run would wait for
    // PDUs that are never sent.
    c.federation.send_max_queued_pdus = 4 * N as u64;
    c
}

/// Queue `n` PDUs (about 300 bytes each) for `to` and time until `fast` has all of them.
async fn run(fed: &seed::federation::Federation, to: &[&FakePeer], fast: &FakePeer, n: usize, tag: &str) -> f64 {
    let before = fast.delivered_count();
    let start = Instant::now();
    for i in 0..n {
        let id = format!("${tag}{i}");
        let pdu = json!({"event_id": id, "room_id": "!bench:x", "type": "m.room.message",
            "sender": "@u:x", "content": {"msgtype": "m.text", "body": "a benchmark message of some length"},
            "origin_server_ts": 1, "depth": i, "prev_events": [], "auth_events": []});
        fed.send_pdu(to.iter().map(|p| p.server_name.clone()), &id, &pdu);
    }
    while fast.delivered_count() < before + n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
    let dir = std::env::temp_dir().join(format!("seed-bench-fed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let running = seed::app::spawn(config(&dir)).await.expect("server starts");
    let fed = running.state.federation.clone();
    let fast = FakePeer::start(Mode::Accept).await;
    let slow = FakePeer::start(Mode::Delay(200)).await;
    let warm = run(&fed, &[&fast], &fast, 1_000, "warm").await;
    println!("warm-up: {warm:.0} PDUs/s");
    let alone = run(&fed, &[&fast], &fast, N, "alone").await;
    let txns = fast.accepted().len();
    println!("one peer: {N} PDUs in {txns} transactions (incl. warm-up): {alone:.0} PDUs/s");
    let with_slow = run(&fed, &[&fast, &slow], &fast, N, "both").await;
    let slow_got = slow.delivered_count();
    println!(
        "fast peer while a slow peer (200 ms per transaction) gets the same PDUs: {with_slow:.0} PDUs/s \
         (the slow one had {slow_got} of {N} when the fast one had all)"
    );
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
