//! Presence visibility (issue #13, `PresenceAccess`): the set of users a viewer may see, the
//! same set as who may see them, in the `watchers` shape of `presence-bench` (each user in
//! 101 rooms of 101: ~200 peers).
//!
//! - `visibility/cold/…`: building the set from the room states, as it was (`HashSet<String>`:
//!   a copy and a SipHash per name) and as it is (`PeerSet`: interned ids, integer hashing).
//!   What a `/sync` or a presence change paid every time before the cache, and pays now once
//!   per change of the user's rooms' members.
//! - `visibility/cached/…`: what they pay now: a cache hit and `k` membership checks (the
//!   incremental `/sync` presence section), or a hit and a walk of the set (waking viewers).
//!
//! Run with `cargo bench --bench visibility`.
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion};
use seed::rooms::peers::{PeerCache, PeerSet};
use seed::rooms::{Pdu, RoomState};
use serde_json::json;

const ROOMS: usize = 101;
const ROOM_SIZE: usize = 101;

fn user(i: usize) -> String {
    format!("@w{i:05}:localhost")
}

fn join(room: &str, user: &str, n: usize) -> Pdu {
    Pdu {
        event_id: format!("$join{n}:localhost"),
        room_id: room.into(),
        sender: user.into(),
        kind: "m.room.member".into(),
        state_key: Some(user.into()),
        content: json!({"membership": "join"}),
        ..Default::default()
    }
}

/// Room `j` holds users `j ..= j + 100`; user 100 is in all of them and sees users 0..=200.
fn rooms() -> Vec<Arc<RoomState>> {
    (0..ROOMS)
        .map(|j| {
            let room = format!("!r{j}:localhost");
            Arc::new(RoomState::compact_from_events((j..j + ROOM_SIZE).map(|u| join(&room, &user(u), u))))
        })
        .collect()
}

/// The set as `Rooms::room_peers` built it before (kept here as the baseline).
fn strings(viewer: &str, rooms: &[Arc<RoomState>]) -> HashSet<String> {
    let mut peers = HashSet::from([viewer.to_owned()]);
    for s in rooms {
        peers.extend(s.members_with(&["join"]).map(str::to_owned));
    }
    peers
}

fn main() {
    let rooms = rooms();
    let viewer = user(100);
    let set = PeerSet::from_rooms(rooms.iter().map(|s| &**s), None);
    println!("{} peers from {ROOMS} rooms of {ROOM_SIZE}; a cached set holds ~{} bytes", set.len(), set.approx_bytes());
    let cache = PeerCache::new(1_000);
    let Err(epoch) = cache.get(&viewer) else { unreachable!("empty cache") };
    cache.insert(&viewer, Arc::new(set), epoch);
    // The changed users an incremental sync checks: half visible, half not.
    let changed: Vec<String> = (0..16).map(|i| user(i * 25)).collect();

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("visibility/cold");
    g.bench_function("hashset_of_strings", |b| b.iter(|| black_box(strings(&viewer, &rooms))));
    g.bench_function("peer_set", |b| b.iter(|| black_box(PeerSet::from_rooms(rooms.iter().map(|s| &**s), None))));
    g.bench_function("peer_set_with_limit", |b| {
        b.iter(|| black_box(PeerSet::from_rooms(rooms.iter().map(|s| &**s), Some(1_000))))
    });
    g.finish();

    let mut g = c.benchmark_group("visibility/cached");
    for k in [1usize, 16] {
        g.bench_with_input(BenchmarkId::new("can_see_changed", k), &k, |b, &k| {
            b.iter(|| {
                let set = cache.get(&viewer).expect("cached");
                black_box(changed[..k].iter().filter(|u| set.contains(u)).count())
            })
        });
    }
    g.bench_function("viewers_walk", |b| {
        b.iter(|| {
            let set = cache.get(&viewer).expect("cached");
            black_box(set.iter().map(str::len).sum::<usize>())
        })
    });
    g.finish();
    c.final_summary();
}
