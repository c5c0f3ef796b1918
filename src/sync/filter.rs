//! Sync filters (spec "Filtering"): the parts we honour, parsed from stored or inline JSON.
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SyncFilter {
    pub room: RoomFilter,
    pub presence: EventFilter,
    pub account_data: EventFilter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RoomFilter {
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    pub timeline: EventFilter,
    pub state: EventFilter,
    pub ephemeral: EventFilter,
    pub account_data: EventFilter,
    pub include_leave: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EventFilter {
    pub limit: Option<u64>,
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
}

/// `*` matches any run of characters (spec: filter type patterns).
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(s) = s.strip_prefix(head) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            (0..=s.len()).filter(|i| s.is_char_boundary(*i)).any(|i| glob(rest, &s[i..]))
        }
    }
}

impl EventFilter {
    pub fn allows(&self, kind: &str, sender: &str) -> bool {
        if self.not_types.iter().any(|p| glob(p, kind)) || self.not_senders.iter().any(|s| s == sender) {
            return false;
        }
        self.types.as_ref().is_none_or(|t| t.iter().any(|p| glob(p, kind)))
            && self.senders.as_ref().is_none_or(|s| s.iter().any(|x| x == sender))
    }

    /// A filter that can never match `kind` (e.g. `types: []` or `not_types: ["*"]`).
    pub fn excludes_type(&self, kind: &str) -> bool {
        self.not_types.iter().any(|p| glob(p, kind))
            || self.types.as_ref().is_some_and(|t| !t.iter().any(|p| glob(p, kind)))
    }
}

impl RoomFilter {
    pub fn allows_room(&self, room_id: &str) -> bool {
        !self.not_rooms.iter().any(|r| r == room_id)
            && self.rooms.as_ref().is_none_or(|r| r.iter().any(|x| x == room_id))
    }
}

impl SyncFilter {
    pub fn timeline_limit(&self) -> i64 {
        self.room.timeline.limit.unwrap_or(10).clamp(1, 1000) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_wildcards() {
        assert!(glob("m.*", "m.presence"));
        assert!(glob("*", "anything"));
        assert!(!glob("m.room.*", "m.presence"));
        assert!(glob("m.room.message", "m.room.message"));
    }

    #[test]
    fn empty_types_exclude_everything() {
        let f: EventFilter = serde_json::from_str(r#"{"types": []}"#).unwrap();
        assert!(f.excludes_type("m.presence"));
        let f: EventFilter = serde_json::from_str(r#"{"not_types": ["*"]}"#).unwrap();
        assert!(f.excludes_type("m.presence"));
        let f: EventFilter = serde_json::from_str(r#"{"senders": ["@a:x"]}"#).unwrap();
        assert!(f.allows("m.presence", "@a:x") && !f.allows("m.presence", "@b:x"));
    }
}
