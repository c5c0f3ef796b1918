//! What sealing every room event costs (issue #14, part 1): for a profile-room `m.presence`
//! state event as the presence publisher writes them, the work `Rooms::build_pdu` does on
//! top of building the event: the federation form, content hash and reference-hash event id
//! (`seal`). Our signature is added only when an event leaves the server (`Rooms::signed_pdu`,
//! issue #13), measured apart: a stored event of ours given back signed, and one of another
//! server's given back as it came.
//!
//! Run with `cargo bench --bench event_seal`.
use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use ruma::RoomVersionId;
use seed::federation::pdu;
use seed::federation::signing_key::parse_key_line;
use seed::rooms::Pdu;
use serde_json::json;

fn presence_event() -> Pdu {
    Pdu {
        room_id: "!abcdefghijklmnopqr:example.org".into(),
        sender: "@alice:example.org".into(),
        kind: "m.presence".into(),
        state_key: Some(String::new()),
        content: json!({"presence": "online", "last_active_ts": 1_764_000_000_000_i64, "currently_active": true}),
        origin_server_ts: 1_764_000_000_000,
        depth: 12_345,
        prev_events: vec!["$Lq3pGSMDf2wEiYwF5Rm3cDnK5Jv8kZP1oGnDbA7xY0E".into()],
        auth_events: vec![
            "$YRHyoUSxRuGfbTxbvUdSf7tNfJ6YqNq2R9Hj9vZ0zLo".into(),
            "$7a8t1cV7C3wZrYy5u2dXkP0qLr3n9Hb6sEe4fGh1JkM".into(),
            "$Qw2e3r4t5y6u7i8o9p0aSdFgHjKlZxCvBnM1q2w3e4r".into(),
        ],
        ..Default::default()
    }
}

fn main() {
    let key = parse_key_line("ed25519 a_1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
    let version = RoomVersionId::V10;
    let ev = presence_event();
    let mut c = Criterion::default().measurement_time(Duration::from_secs(5)).configure_from_args();
    c.bench_function("seal_presence_event", |b| {
        b.iter(|| {
            let mut obj = pdu::to_federation(black_box(&ev), &ev.auth_events, &version).unwrap();
            pdu::add_content_hash(&mut obj, &version).unwrap();
            black_box(pdu::event_id(&obj, &version).unwrap())
        })
    });
    let mut obj = pdu::to_federation(&ev, &ev.auth_events, &version).unwrap();
    pdu::add_content_hash(&mut obj, &version).unwrap();
    let mut ours = ev.clone();
    ours.hashes = serde_json::to_value(&obj).unwrap().get("hashes").cloned();
    c.bench_function("signed_json_of_our_stored_event", |b| {
        b.iter(|| {
            let mut obj = pdu::signed_json(black_box(&ours), &version).unwrap();
            pdu::sign(&mut obj, "example.org", &key, &version).unwrap();
            black_box(obj)
        })
    });
    pdu::sign(&mut obj, "example.org", &key, &version).unwrap();
    let mut theirs = ours.clone();
    theirs.signatures = serde_json::to_value(&obj).unwrap().get("signatures").cloned();
    c.bench_function("signed_json_of_a_stored_signed_event", |b| {
        b.iter(|| black_box(pdu::signed_json(black_box(&theirs), &version).unwrap()))
    });
    c.final_summary();
}
