//! Room-state cache size and copy cost (issue #13, "compact membership and state caches").
//!
//! Prints the heap bytes per membership of a room of N members, measured with a counting
//! allocator, for the cache as it was (whole member events by (type, state key)) and as it is
//! (`seed::rooms::RoomState`: memberships as interned user id → event id + membership); then
//! times the copy-on-write clone every state event makes of its room's state.
//!
//! Run with `cargo bench --bench room_state`.
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion};
use seed::rooms::{Pdu, RoomState};
use serde_json::json;

/// Live heap bytes, to measure what a structure holds.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Profile-room events as the server writes them (shared with `src/rooms/state_text.rs`).
#[path = "../tests/common/profile_room.rs"]
mod profile;

/// A join as Seed writes it: display name, avatar, and the invite it replaces.
fn member(room: &str, user: &str) -> Pdu {
    let mut unsigned = serde_json::Map::new();
    unsigned.insert("prev_content".into(), json!({"membership": "invite"}));
    unsigned.insert("prev_sender".into(), json!("@creator:localhost"));
    unsigned.insert("replaces_state".into(), json!("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"));
    let mut e = Pdu {
        event_id: String::new(),
        room_id: room.into(),
        sender: user.into(),
        kind: "m.room.member".into(),
        state_key: Some(user.into()),
        content: json!({"membership": "join", "displayname": user.trim_start_matches('@'), "avatar_url": "mxc://localhost/AbCdEfGhIjKlMnOp"}),
        origin_server_ts: 1_764_000_000_000,
        depth: 7,
        prev_events: vec!["$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg".into()],
        unsigned,
        ..Default::default()
    };
    // A reference-hash-shaped id (43 url-safe base64 characters), unique per event.
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{room}{user}").as_bytes());
    e.event_id = format!("${}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest));
    e
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("@user{i:06}:localhost")).collect()
}

/// Heap bytes still held by what `make` returns (everything it allocated and kept: the
/// events it builds from are counted if the structure keeps them, not if it drops them).
fn held<T>(make: impl FnOnce() -> T) -> (isize, T) {
    let before = LIVE.load(Ordering::Relaxed);
    let v = make();
    (LIVE.load(Ordering::Relaxed) - before, v)
}

fn report_sizes() {
    println!("room-state cache, heap bytes per membership (counting allocator):");
    for n in [100usize, 1_000, 10_000] {
        let ids = users(n);
        let room = format!("!room{n}:localhost");
        let mk = || ids.iter().map(|u| member(&room, u)).collect::<Vec<_>>();
        // Before: every state event whole, keyed by (type, state key).
        let (old, old_map) = held(|| {
            let mut m: BTreeMap<(String, String), Arc<Pdu>> = BTreeMap::new();
            for e in mk() {
                m.insert((e.kind.clone(), e.state_key.clone().unwrap_or_default()), Arc::new(e));
            }
            m
        });
        // After, first room of these users (their interned ids are created here) ...
        let (first, s1) = held(|| RoomState::compact_from_events(mk()));
        // ... and another room of the same users (ids already interned): the usual case,
        // a user is in several rooms.
        let room2 = format!("!other{n}:localhost");
        let (again, s2) = held(|| RoomState::compact_from_events(ids.iter().map(|u| member(&room2, u))));
        println!(
            "  {n:>6} members: whole events {:>5} B, compact {:>4} B (first room, ids interned) / {:>3} B (users already interned)",
            old / n as isize,
            first / n as isize,
            again / n as isize
        );
        drop((old_map, s1, s2));
    }
}

/// A user's profile room: its nine non-member state events and the owner's membership.
fn profile_room(room: &str) -> Vec<Pdu> {
    let mut events = profile::non_member_events(room);
    events.push(profile::member(room));
    events
}

/// Issue #13: what the cached state of one profile room holds (10,000 users hold 10,000).
fn report_profile_room() {
    let n = 1_000;
    // The events are built inside: what the states keep of them is counted, not the events.
    let (bytes, states) = held(|| {
        (0..n)
            .map(|i| RoomState::compact_from_events(profile_room(&format!("!profile{i:05}:localhost"))))
            .collect::<Vec<_>>()
    });
    println!("profile room state: {} heap bytes each ({n} rooms, counting allocator)", bytes / n as isize);
    drop(states);
}

fn main() {
    report_sizes();
    report_profile_room();
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("room_state_clone");
    for n in [100usize, 1_000, 10_000] {
        let room = "!clone:localhost";
        let s = RoomState::compact_from_events(users(n).iter().map(|u| member(room, u)));
        // What `with_event` pays for each state event: a copy of the room's state.
        g.bench_with_input(BenchmarkId::from_parameter(n), &s, |b, s| b.iter(|| black_box(s.clone())));
    }
    g.finish();
    // What one presence change costs the cached state of a profile room: the copy and the
    // new `m.presence` (`rooms::send::with_event`).
    let room = "!profile:localhost";
    let state = RoomState::compact_from_events(profile_room(room));
    let change =
        Arc::new(profile::event(room, "m.presence", "", 99, json!({"presence": "online", "currently_active": true})));
    c.bench_function("profile_room_change", |b| {
        b.iter(|| {
            let mut next = state.clone();
            next.apply(change.clone());
            black_box(next)
        })
    });
    c.final_summary();
}
