//! The presence-history pruning hot path (`profile::retention`, msc/README.md "Retention of presence
//! history"), on a real SQLite database in a temporary directory:
//!
//! - `prune_batch/<rooms>`: one run deleting 500 due versions spread over `<rooms>` profile
//!   rooms (the steady state under churn: each run deletes what fell due since the last);
//! - `nothing_due/<rows>`: one run when `<rows>` versions are stored but none is due yet (the
//!   cost of a run on a quiet server: one index probe, whatever the size of the history);
//! - `plan_room`: the pure keep/delete decision for one room.
//!
//! Run with `cargo bench --bench retention`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use seed::profile::retention::{plan_room, PresenceHistoryRetention, RetentionPolicy};
use seed::rooms::Pdu;
use seed::store::Store;
use serde_json::json;

const BATCH: usize = 500;

fn pdu(room: &str, kind: &str, id: &str, ts: i64, status: usize) -> Pdu {
    Pdu {
        event_id: id.to_owned(),
        room_id: room.to_owned(),
        sender: "@bench:localhost".to_owned(),
        kind: kind.to_owned(),
        state_key: Some(String::new()),
        content: json!({"status": format!("s{status}")}),
        origin_server_ts: ts,
        depth: 1,
        prev_events: vec![],
        ..Default::default()
    }
}

/// A fresh database with `rooms` profile rooms and `versions` m.status versions per room, sent
/// at `ts`; returns the store and the next free stream position.
async fn history(dir: &std::path::Path, rooms: usize, versions: usize, ts: i64) -> Store {
    let url = format!("sqlite://{}/bench-{}.db?mode=rwc", dir.display(), rand_suffix());
    let store = Store::connect(&url, 4).await.expect("database");
    let mut pos = 1;
    for r in 0..rooms {
        let room = format!("!r{r}:localhost");
        let owner = format!("@u{r}:localhost");
        let new_room = seed::store::NewRoom {
            room_id: &room,
            creator: &owner,
            version: "10",
            room_type: Some("org.matrix.msc1769.profile"),
            now: 0,
            aliases: vec![],
            reclaim_aliases: false,
            published: false,
            profile_owner: Some(&owner),
        };
        store.create_room(&new_room, &[]).await.unwrap();
        let events: Vec<Pdu> = (0..versions).map(|v| pdu(&room, "m.status", &format!("$e{r}_{v}"), ts, v)).collect();
        let rows: Vec<(&Pdu, i64)> = events
            .iter()
            .map(|e| {
                pos += 1;
                (e, pos)
            })
            .collect();
        store.persist_events(&rows).await.unwrap();
    }
    store
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn policy(keep_last: u32, keep_ms: i64) -> RetentionPolicy {
    RetentionPolicy { keep_last, keep_ms, interval: Duration::from_secs(10), batch: BATCH, vacuum_after: 0 }
}

fn main() {
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("seed-bench-retention-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let mut g = c.benchmark_group("prune_batch");
    g.throughput(Throughput::Elements(BATCH as u64));
    for rooms in [10usize, 100, 500] {
        // `versions` per room so that keep_last = 1 leaves exactly BATCH superseded versions.
        let versions = BATCH / rooms + 1;
        g.bench_with_input(BenchmarkId::from_parameter(rooms), &rooms, |b, &rooms| {
            b.iter_batched(
                || rt.block_on(history(&dir, rooms, versions, 0)),
                |store| {
                    let r = rt.block_on(PresenceHistoryRetention::new(store, policy(1, 0)).run_once(1_000)).unwrap();
                    assert_eq!(r.pruned as usize, rooms * (versions - 1));
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("nothing_due");
    for rows in [1_000usize, 20_000] {
        let store = rt.block_on(history(&dir, rows / 10, 11, 1_000_000));
        let retention = PresenceHistoryRetention::new(store, policy(1, 3_600_000));
        g.bench_with_input(BenchmarkId::from_parameter(rows), &rows, |b, _| {
            b.iter(|| {
                let r = rt.block_on(retention.run_once(1_000_001)).unwrap();
                assert_eq!(r.examined, 0);
            })
        });
    }
    g.finish();

    let candidates: Vec<i64> = (0..50).rev().collect();
    c.bench_function("plan_room", |b| b.iter(|| plan_room(black_box(3), black_box(&candidates), black_box(9))));
    c.final_summary();
    let _ = std::fs::remove_dir_all(&dir);
}
