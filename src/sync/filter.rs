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

/// Longest accepted type/sender/room pattern, in bytes (Matrix identifiers are at most 255).
pub const MAX_FILTER_PATTERN_BYTES: usize = 255;
/// Most entries in one filter list (`types`, `not_types`, `senders`, `rooms`, ...).
pub const MAX_FILTER_LIST_LEN: usize = 500;

/// `*` matches any run of characters (spec: filter type patterns). The classic two-pointer
/// wildcard match: on a mismatch, only the last `*` is retried one character further, so the
/// cost is O(pattern × subject) at worst, never exponential (issue 10, defect 2).
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn check_list(name: &str, list: &[String]) -> Result<(), String> {
    if list.len() > MAX_FILTER_LIST_LEN {
        return Err(format!("filter {name} has more than {MAX_FILTER_LIST_LEN} entries"));
    }
    if list.iter().any(|p| p.len() > MAX_FILTER_PATTERN_BYTES) {
        return Err(format!("filter {name} has an entry longer than {MAX_FILTER_PATTERN_BYTES} bytes"));
    }
    Ok(())
}

impl EventFilter {
    /// Bounds on what a client may ask us to match (see the `MAX_FILTER_*` constants).
    pub fn validate(&self) -> Result<(), String> {
        check_list("types", self.types.as_deref().unwrap_or_default())?;
        check_list("not_types", &self.not_types)?;
        check_list("senders", self.senders.as_deref().unwrap_or_default())?;
        check_list("not_senders", &self.not_senders)
    }

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
    pub fn validate(&self) -> Result<(), String> {
        check_list("rooms", self.rooms.as_deref().unwrap_or_default())?;
        check_list("not_rooms", &self.not_rooms)?;
        for f in [&self.timeline, &self.state, &self.ephemeral, &self.account_data] {
            f.validate()?;
        }
        Ok(())
    }

    pub fn allows_room(&self, room_id: &str) -> bool {
        !self.not_rooms.iter().any(|r| r == room_id)
            && self.rooms.as_ref().is_none_or(|r| r.iter().any(|x| x == room_id))
    }
}

impl SyncFilter {
    pub fn validate(&self) -> Result<(), String> {
        self.room.validate()?;
        self.presence.validate()?;
        self.account_data.validate()
    }

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
        assert!(glob("m.*.message", "m.room.message"));
        assert!(glob("*a*b", "xxaxxb"));
        assert!(!glob("*a*b", "xxaxxbc"));
        assert!(glob("a**", "a"));
        assert!(!glob("", "a"));
        assert!(glob("", ""));
        assert!(glob("é*ü", "éxyzü"));
    }

    #[test]
    fn glob_is_not_exponential() {
        let subject = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(100));
        let start = std::time::Instant::now();
        assert!(!glob(&pattern, &subject));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
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
