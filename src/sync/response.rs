//! The `/sync` response (spec `GET /_matrix/client/v3/sync`), typed.
//!
//! Field names follow ruma's `sync_events::v3` pieces, but the types are our own: ruma's
//! serializer leaves out empty sections (`"presence": {"events": []}`, an empty room
//! `ephemeral`, zero `unread_notifications`), while the wire format clients and our tests have
//! relied on sends every section, and ruma has no `rooms.peek` (MSC2753) nor the unstable
//! MSC2732 field. Events stay JSON objects: they are already in client format, masked per
//! viewer (`profile::privacy::ProfileMask`), and pass through untouched.
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::ground::token;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Events {
    pub events: Vec<Value>,
}

/// The top-level `presence` section: typed legacy events (`presence::legacy`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PresenceEvents {
    pub events: Vec<crate::presence::legacy::PresenceEvent>,
}

impl From<Vec<Value>> for Events {
    fn from(events: Vec<Value>) -> Self {
        Self { events }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Timeline {
    pub events: Vec<Value>,
    pub limited: bool,
    /// Absent only in the `leave` entry of an ended peek (MSC2753).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_batch: Option<String>,
}

impl Timeline {
    /// A timeline whose `prev_batch` points before stream position `first_pos`.
    pub fn new(events: Vec<Value>, limited: bool, first_pos: i64) -> Self {
        Self { events, limited, prev_batch: Some(token::pagination_token(first_pos - 1)) }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct UnreadNotifications {
    pub highlight_count: u64,
    pub notification_count: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RoomSummary {}

/// `rooms.join.{roomId}`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct JoinedRoom {
    pub timeline: Timeline,
    pub state: Events,
    pub ephemeral: Events,
    pub account_data: Events,
    pub unread_notifications: UnreadNotifications,
    pub summary: RoomSummary,
}

impl JoinedRoom {
    /// The entry of a room with nothing new but ephemeral events or account data.
    pub fn empty(upto: i64) -> Self {
        Self { timeline: Timeline::new(vec![], false, upto + 1), ..Default::default() }
    }
}

/// `rooms.invite.{roomId}`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct InvitedRoom {
    pub invite_state: Events,
}

/// `rooms.leave.{roomId}`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LeftRoom {
    pub timeline: Timeline,
    pub state: Events,
    pub account_data: Events,
}

/// `rooms.peek.{roomId}` (MSC2753).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PeekedRoom {
    pub timeline: Timeline,
    pub state: Events,
    pub ephemeral: Events,
    pub account_data: Events,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Rooms {
    pub join: BTreeMap<String, JoinedRoom>,
    pub invite: BTreeMap<String, InvitedRoom>,
    pub leave: BTreeMap<String, LeftRoom>,
    /// Knocking is not supported; always empty.
    pub knock: BTreeMap<String, Value>,
    pub peek: BTreeMap<String, PeekedRoom>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DeviceLists {
    pub changed: Vec<String>,
    pub left: Vec<String>,
}

/// `device_one_time_keys_count`: a JSON object of algorithm -> count, kept as a vector in key
/// order. Usually one entry; a `BTreeMap` allocates a 368-byte node for it, and a long-poll
/// holds its empty answer for its whole wait (issue #13).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyCounts(Vec<(String, i64)>);

impl From<BTreeMap<String, i64>> for KeyCounts {
    fn from(counts: BTreeMap<String, i64>) -> Self {
        Self(counts.into_iter().collect())
    }
}

impl Serialize for KeyCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SyncResponse {
    pub next_batch: String,
    pub rooms: Rooms,
    pub presence: PresenceEvents,
    pub account_data: Events,
    pub to_device: Events,
    pub device_lists: DeviceLists,
    pub device_one_time_keys_count: KeyCounts,
    pub device_unused_fallback_key_types: Vec<String>,
    /// MSC2732's unstable name (`e2ee::UNSTABLE_UNUSED_FALLBACK_TYPES`), still read by some clients.
    #[serde(rename = "org.matrix.msc2732.device_unused_fallback_key_types")]
    pub unstable_unused_fallback_key_types: Vec<String>,
}

impl SyncResponse {
    /// Presence updates delivered: legacy `m.presence` events, and `m.presence`/`m.status`
    /// events of peeked profile rooms (the `seed_presence_deliveries_total` metric).
    pub fn presence_deliveries(&self) -> (usize, usize) {
        let peek = self
            .rooms
            .peek
            .values()
            .flat_map(|r| r.state.events.iter().chain(&r.timeline.events))
            .filter(|e| matches!(e["type"].as_str(), Some("m.presence" | "m.status")))
            .count();
        (self.presence.events.len(), peek)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_counts_are_a_json_object_in_key_order() {
        let counts: KeyCounts =
            BTreeMap::from([("signed_curve25519".to_owned(), 3), ("curve25519".to_owned(), 1)]).into();
        assert_eq!(serde_json::to_string(&counts).unwrap(), r#"{"curve25519":1,"signed_curve25519":3}"#);
        assert_eq!(serde_json::to_string(&KeyCounts::default()).unwrap(), "{}");
    }
}
