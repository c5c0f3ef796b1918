//! Legacy `m.presence` events (the compatibility shim's read side, `/sync`'s `presence` and
//! `GET /presence/{userId}/status`): built from the same effective presence the profile rooms
//! publish, never from a second truth.
//!
//! The event is a typed struct, not a JSON tree: `/sync` builds one per delivered change
//! (issue #13: at 10,000 × 100 that is 16,670 a second), and serializing the struct costs a
//! few allocations where a `serde_json::Value` cost one per key and value.
use serde::Serialize;
use serde_json::Value;

use super::engine::PresenceSnapshot;
use super::policy::LegacyBusy;
use super::Presence;

/// The `m.presence` event content (spec: `m.presence`), with `busy` spelled as the operator
/// chose for legacy clients (MSC3026, `legacy_busy_as`) and `last_active_ago` computed at
/// delivery. Keys are written in sorted order, as a JSON object of them would be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresenceContent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currently_active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub displayname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_active_ago: Option<i64>,
    #[serde(rename = "org.matrix.msc3032.device_kinds", skip_serializing_if = "Vec::is_empty")]
    pub device_kinds: Vec<&'static str>,
    pub presence: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_msg: Option<String>,
}

impl PresenceContent {
    pub fn new(s: &PresenceSnapshot, now: i64, busy_as: LegacyBusy) -> Self {
        Self {
            avatar_url: None,
            currently_active: (s.presence.presence != Presence::Offline || s.presence.currently_active)
                .then_some(s.presence.currently_active),
            displayname: None,
            last_active_ago: s.presence.last_active_ts.map(|ts| (now - ts).max(0)),
            device_kinds: s.presence.active_kinds.iter().map(|k| k.as_str()).collect(),
            presence: busy_as.spell(s.presence.presence),
            status_msg: s.status_msg.clone(),
        }
    }
}

/// A whole `m.presence` event: `{"content": …, "sender": …, "type": "m.presence"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresenceEvent {
    pub content: PresenceContent,
    pub sender: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl PresenceEvent {
    pub fn new(s: &PresenceSnapshot, now: i64, busy_as: LegacyBusy) -> Self {
        Self { content: PresenceContent::new(s, now, busy_as), sender: s.user_id.clone(), kind: "m.presence" }
    }

    /// [`Self::new`] taking the snapshot: its id and status message move into the event
    /// instead of being copied (`/sync` builds one per delivered change).
    pub fn of(mut s: PresenceSnapshot, now: i64, busy_as: LegacyBusy) -> Self {
        let status_msg = s.status_msg.take();
        let mut content = PresenceContent::new(&s, now, busy_as);
        content.status_msg = status_msg;
        Self { content, sender: std::mem::take(&mut s.user_id), kind: "m.presence" }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a presence event serializes")
    }
}

/// [`PresenceContent`] as JSON, for the callers that add to it.
pub fn presence_content(s: &PresenceSnapshot, now: i64, busy_as: LegacyBusy) -> Value {
    serde_json::to_value(PresenceContent::new(s, now, busy_as)).expect("presence content serializes")
}

/// [`PresenceEvent`] as JSON.
pub fn presence_event(s: &PresenceSnapshot, now: i64, busy_as: LegacyBusy) -> Value {
    PresenceEvent::new(s, now, busy_as).to_value()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::presence::{DeviceKind, EffectivePresence};

    fn snapshot(presence: Presence, status_msg: Option<&str>) -> PresenceSnapshot {
        PresenceSnapshot {
            user_id: "@a:x".into(),
            presence: EffectivePresence {
                presence,
                last_active_ts: Some(1_000),
                currently_active: presence != Presence::Offline,
                active_kinds: if presence == Presence::Offline { vec![] } else { vec![DeviceKind::Mobile] },
                hidden: false,
            },
            status_msg: status_msg.map(str::to_owned),
            pos: 7,
        }
    }

    #[test]
    fn the_event_has_exactly_the_keys_that_apply_and_never_a_null() {
        let mut ev = PresenceEvent::new(&snapshot(Presence::Busy, Some("call")), 4_000, LegacyBusy::Msc3026);
        ev.content.displayname = Some("Alice".into());
        assert_eq!(
            ev.to_value(),
            json!({"type": "m.presence", "sender": "@a:x", "content": {
                "presence": "org.matrix.msc3026.busy", "last_active_ago": 3_000, "currently_active": true,
                "status_msg": "call", "displayname": "Alice", "org.matrix.msc3032.device_kinds": ["mobile"]}})
        );
        let off = PresenceEvent::new(&snapshot(Presence::Offline, None), 500, LegacyBusy::Busy);
        assert_eq!(
            serde_json::to_string(&off).unwrap(),
            r#"{"content":{"last_active_ago":0,"presence":"offline"},"sender":"@a:x","type":"m.presence"}"#
        );
        assert_eq!(presence_content(&snapshot(Presence::Busy, None), 1_000, LegacyBusy::Online)["presence"], "online");
    }
}
