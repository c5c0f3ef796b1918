//! The `/sync` `presence` section at 10,000 × 100 (issue #13): one viewer in a room of 101
//! whose 100 room-mates have each changed their presence since the viewer's token. Each
//! iteration builds that viewer's incremental answer (`SyncService::sync`, timeout 0: the
//! changes are read from the viewer's presence inbox, checked against the viewer's visible
//! set, and turned into 100 `m.presence` events with display names), then serializes it, as
//! the server does for a poll woken after the delivery window. Per delivered change this is
//! the sync side's share of the CPU figure in README "Performance".
//!
//! Run: `cargo bench --bench presence_section` (SQLite in a temp dir, the server in-process).
#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use serde_json::json;

const MATES: usize = 100;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (app, viewer, since) = rt.block_on(async {
        let app = common::TestApp::spawn_with(|c| {
            c.presence_delivery_window_ms = 0;
            // The changes must stay "online" for the whole run.
            c.presence_device_timeout_ms = 3_600_000;
            c.presence_idle_after_ms = 3_600_000;
        })
        .await;
        let viewer = app.register("viewer").await;
        let room = app.create_room(&viewer, json!({"preset": "public_chat"})).await;
        let mut mates = Vec::with_capacity(MATES);
        for i in 0..MATES {
            let m = app.register(&format!("mate{i:03}")).await;
            app.join(&m, &room).await;
            mates.push(m);
        }
        let since = app.sync(&viewer, "set_presence=offline").await["next_batch"].as_str().unwrap().to_owned();
        for (i, m) in mates.iter().enumerate() {
            common::set_status(&app, m, json!({"presence": "online", "status_msg": format!("pb:bench:{i}")})).await;
        }
        (app, viewer, seed::ground::token::parse(&since).expect("a stream token"))
    });
    let state = app.running.as_ref().expect("running").state.clone();
    let session = seed::accounts::Session { user_id: viewer.user_id.clone(), device_id: viewer.device_id.clone() };
    let request = || seed::sync::SyncRequest {
        since: Some(since),
        timeout: Duration::ZERO,
        full_state: false,
        filter: Arc::default(),
    };
    let first = rt.block_on(state.sync.sync(&session, request())).expect("sync");
    assert_eq!(first.presence.events.len(), MATES, "every room-mate's change is in the answer");

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("presence_section");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5)).sample_size(30);
    group.throughput(Throughput::Elements(MATES as u64));
    group.bench_function("incremental_100_changes", |b| {
        b.iter(|| {
            let answer = rt.block_on(state.sync.sync(&session, request())).expect("sync");
            black_box(serde_json::to_vec(&answer).expect("serializes"))
        })
    });
    group.finish();
    c.final_summary();
}
