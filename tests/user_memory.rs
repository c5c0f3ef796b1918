//! Memory per user after a restart, counted by the allocator of `tests/common/heap.rs`
//! (issue #13: 10,000 users within 200 MB). Every user has a profile room; after a restart
//! each user's first `/sync` (with `set_presence=online`, as clients send it) loads that room's
//! state and the user's shared rooms into the caches. The allocator counts the whole process,
//! so this file holds this one test only.
mod common;
#[path = "common/heap.rs"]
mod heap;

use std::time::Duration;

use common::TestApp;
use serde_json::json;

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

/// A user whose first `/sync` after a restart brought them online, which loaded their
/// profile room (nine state events: create, power levels, join rules, history visibility,
/// guest access, name, `m.profile`, `m.status`, `m.presence`) and published the change there,
/// holds what the caches keep of them: the room state, the peer set, the inbox entries of
/// their room-mates' changes, the engine's entry. With the profile room's events kept parsed
/// that was 48.5 KB per user; kept as text it is 21.9 KB (docs/performance-history.md "Room state as text").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_s_state_after_a_restart_costs_a_few_kilobytes() {
    const USERS: usize = 200;
    const ROOM: usize = 50;
    let mut app = TestApp::spawn_with(|c| {
        c.presence_device_timeout_ms = 3_600_000;
        c.presence_idle_after_ms = 3_600_000;
    })
    .await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(app.register(&format!("mem{i}")).await);
    }
    // Rooms of 50: every user shares a room with 49 others, as in the benchmark's small-rooms.
    for group in users.chunks(ROOM) {
        let room = app.create_room(&group[0], json!({"preset": "public_chat"})).await;
        for u in &group[1..] {
            assert_eq!(app.join(u, &room).await.0, 200);
        }
    }
    // No one has synced yet: everyone is offline, and each first `/sync` below brings its user
    // online, which the server publishes in the user's profile room (as after a restart of a
    // real server, where clients come back one by one).
    app.restart().await;
    // The first request after a restart warms what every request needs (connection pool,
    // statement caches), not what a user needs: done before measuring.
    let warm = app.sync(&users[0], "timeout=0").await;
    assert!(warm["next_batch"].is_string());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = heap::snapshot();
    for u in &users[1..] {
        let first = app.sync(u, "set_presence=online&timeout=0").await;
        assert!(first["rooms"]["join"].as_object().is_some_and(|j| !j.is_empty()), "{first}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = heap::snapshot();
    let per_user = (after.live_bytes - before.live_bytes) / (USERS as i64 - 1);
    eprintln!("heap per user after a restart and a first /sync: {per_user} bytes");
    for (size, blocks) in after.growth_by_size(&before, 12) {
        eprintln!("  {size:>6} B x {:.2} per user", blocks as f64 / (USERS - 1) as f64);
    }
    assert!(per_user < 30 * 1024, "a synced user holds {per_user} bytes of heap");

    // The state is still right: a room-mate is online, in an initial sync and in the profile
    // room's `m.presence` as the room's state says it.
    let v = app.sync(&users[1], "timeout=0").await;
    let seen = v["presence"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["sender"] == users[2].user_id.as_str() && e["content"]["presence"] == "online");
    assert!(seen, "{}", v["presence"]);
    let own =
        app.get(&format!("/_matrix/client/v3/profile/{}", common::enc(&users[2].user_id)), Some(&users[2].token)).await;
    assert_eq!(own.0, 200, "{}", own.1);
}
