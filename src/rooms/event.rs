//! The stored form of an event (a PDU) and its client format.
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// An event as persisted: the spec PDU fields (room versions 10 and 11: `auth_events`,
/// `prev_events`, `depth`, content `hashes` and `signatures`, with the event id the reference
/// hash), plus what only this server keeps (`unsigned`, `txn`). `crate::federation::pdu`
/// turns it back into the signed federation JSON, canonically equal to what was signed (our
/// own events are signed only then: `Rooms::signed_pdu`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pdu {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_key: Option<String>,
    pub content: Value,
    pub origin_server_ts: i64,
    pub depth: i64,
    pub prev_events: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_events: Vec<String>,
    /// `{"sha256": …}` (absent on events written before events were signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<Value>,
    /// `{server: {key id: signature}}`; `None` on our own events, which are signed when they
    /// leave the server (`Rooms::signed_pdu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Value>,
    /// Other top-level keys of a remote PDU (`origin`, v10 `redacts`, …), kept because the
    /// hashes and signatures cover them.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// `prev_content`, `replaces_state`, `prev_sender` for state events.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub unsigned: Map<String, Value>,
    /// (device id, txn id) of the sender's request, echoed only to that device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<(String, String)>,
}

impl Pdu {
    /// The event a redaction redacts (`content.redacts`, or v10's top-level `redacts`).
    pub fn redacts(&self) -> Option<&str> {
        self.content.get("redacts").or_else(|| self.extra.get("redacts")).and_then(Value::as_str)
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// The client-server API format, with `unsigned.age` computed now and the transaction id
    /// echoed to the device that sent it.
    pub fn to_client(&self, now_ms: i64, viewer: Option<(&str, &str)>) -> Value {
        let mut ev = Map::new();
        ev.insert("event_id".into(), json!(self.event_id));
        ev.insert("room_id".into(), json!(self.room_id));
        ev.insert("sender".into(), json!(self.sender));
        ev.insert("type".into(), json!(self.kind));
        if let Some(sk) = &self.state_key {
            ev.insert("state_key".into(), json!(sk));
        }
        ev.insert("content".into(), self.content.clone());
        if self.kind == "m.room.redaction" {
            // Room versions up to 10 name the redacted event at the top level; newer
            // clients read `content.redacts` (room version 11), so both are sent.
            if let Some(r) = self.redacts() {
                ev.insert("redacts".into(), json!(r));
            }
        }
        ev.insert("origin_server_ts".into(), json!(self.origin_server_ts));
        let mut unsigned = self.unsigned.clone();
        unsigned.insert("age".into(), json!((now_ms - self.origin_server_ts).max(0)));
        if let (Some((dev, txn)), Some((user, viewer_dev))) = (&self.txn, viewer) {
            if user == self.sender && viewer_dev == dev {
                unsigned.insert("transaction_id".into(), json!(txn));
            }
        }
        ev.insert("unsigned".into(), Value::Object(unsigned));
        Value::Object(ev)
    }

    /// Stripped state for invites (`invite_state`) and peek previews.
    pub fn to_stripped(&self) -> Value {
        json!({
            "type": self.kind, "state_key": self.state_key.as_deref().unwrap_or_default(),
            "sender": self.sender, "content": self.content,
        })
    }

    pub fn membership(&self) -> Option<&str> {
        (self.kind == "m.room.member").then(|| self.content.get("membership")?.as_str()).flatten()
    }
}

/// Deepest JSON nesting accepted in a request body or event content. Events are stored as
/// JSON and decoded again on every read (serde_json stops at 128 levels, and the stored event
/// wraps the content in two more), so the limit is checked on write and leaves ample room.
pub const MAX_JSON_DEPTH: usize = 64;

/// Nesting depth of a JSON value (a scalar is 0, `{}` and `[]` are 1).
pub fn json_depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => stack.extend(m.values().map(|c| (c, d + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            _ => {}
        }
        let here = if v.is_object() || v.is_array() { d + 1 } else { d };
        max = max.max(here);
    }
    max
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// A random opaque id of `len` url-safe characters.
pub fn random_string(len: usize) -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_counts_containers() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({})), 1);
        assert_eq!(json_depth(&json!({"a": [1, {"b": []}]})), 4);
    }
}
