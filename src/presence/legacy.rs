//! Legacy `m.presence` events (the compatibility shim's read side, `/sync`'s `presence` and
//! `GET /presence/{userId}/status`): built from the same effective presence the profile rooms
//! publish, never from a second truth.
use serde_json::{json, Map, Value};

use super::engine::PresenceSnapshot;
use super::policy::LegacyBusy;
use super::Presence;

/// The `m.presence` event content for a snapshot (spec: `m.presence`), with `busy` spelled
/// as the operator chose for legacy clients (MSC3026, `legacy_busy_as`) and `last_active_ago`
/// computed at delivery.
pub fn presence_content(s: &PresenceSnapshot, now: i64, busy_as: LegacyBusy) -> Value {
    let mut c = Map::new();
    c.insert("presence".into(), json!(busy_as.spell(s.presence.presence)));
    if let Some(ts) = s.presence.last_active_ts {
        c.insert("last_active_ago".into(), json!((now - ts).max(0)));
    }
    if s.presence.presence != Presence::Offline || s.presence.currently_active {
        c.insert("currently_active".into(), json!(s.presence.currently_active));
    }
    if let Some(m) = &s.status_msg {
        c.insert("status_msg".into(), json!(m));
    }
    if !s.presence.active_kinds.is_empty() {
        c.insert(
            "org.matrix.msc3032.device_kinds".into(),
            json!(s.presence.active_kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
        );
    }
    Value::Object(c)
}

pub fn presence_event(s: &PresenceSnapshot, now: i64, busy_as: LegacyBusy) -> Value {
    json!({"type": "m.presence", "sender": s.user_id, "content": presence_content(s, now, busy_as)})
}
