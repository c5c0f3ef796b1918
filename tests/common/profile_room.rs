//! A profile room's state events as this server writes them (reference-hash ids, three auth
//! events, a content hash and a signature, all random base64 like the real ones), for the
//! room-state compression test (`src/rooms/state_text.rs`) and the `room_state` bench.
//!
//! Included by path (`#[path]`) where needed; the including module has `Pdu` in scope.
// Each includer uses part of it (the compression test has no membership).
#![allow(dead_code)]
use base64::Engine;
use serde_json::json;
use sha2::Digest;

use super::Pdu;

/// Random-looking url-safe base64 of `bytes` bytes, the same for the same `seed`.
pub fn b64(seed: &str, bytes: usize) -> String {
    let mut out = Vec::new();
    while out.len() < bytes {
        out.extend_from_slice(&sha2::Sha256::digest(format!("{seed}{}", out.len()).as_bytes()));
    }
    out.truncate(bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
}

/// One state event of `room`; `n` makes its ids, hash and signature unique.
pub fn event(room: &str, kind: &str, state_key: &str, n: usize, content: serde_json::Value) -> Pdu {
    Pdu {
        event_id: format!("${}", b64(&format!("{room}{kind}{state_key}{n}"), 32)),
        room_id: room.into(),
        sender: "@c7998:localhost".into(),
        kind: kind.into(),
        state_key: Some(state_key.into()),
        content,
        origin_server_ts: 1_795_744_801_880 + n as i64,
        depth: n as i64 + 2,
        prev_events: vec![format!("${}", b64(&format!("{room}prev{n}"), 32))],
        auth_events: (0..3).map(|i| format!("${}", b64(&format!("{room}auth{i}"), 32))).collect(),
        hashes: Some(json!({"sha256": b64(&format!("{room}hash{n}"), 32)})),
        signatures: Some(json!({"localhost": {"ed25519:a_Oeuk": b64(&format!("{room}sig{n}"), 64)}})),
        ..Default::default()
    }
}

/// A user's profile room: its nine non-member state events (the owner's membership is
/// [`member`]).
pub fn non_member_events(room: &str) -> Vec<Pdu> {
    [
        ("m.room.create", json!({"creator": "@c7998:localhost", "room_version": "10", "type": "org.matrix.msc1769.profile"})),
        ("m.room.power_levels", json!({"users": {"@c7998:localhost": 100}, "users_default": 0, "events_default": 100, "state_default": 100})),
        ("m.room.join_rules", json!({"join_rule": "invite"})),
        ("m.room.history_visibility", json!({"history_visibility": "shared"})),
        ("m.room.guest_access", json!({"guest_access": "forbidden"})),
        ("m.room.name", json!({"name": "c7998"})),
        ("m.profile", json!({"m.profile": {"fn": "c7998"}})),
        ("m.status", json!({})),
        ("m.presence", json!({"currently_active": false, "presence": "offline"})),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, (kind, content))| event(room, kind, "", n, content))
    .collect()
}

/// The owner's membership of the profile room.
pub fn member(room: &str) -> Pdu {
    event(room, "m.room.member", "@c7998:localhost", 20, json!({"membership": "join"}))
}
