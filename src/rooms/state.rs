//! The current state of a room, held in memory (copy-on-write) so auth checks and reads
//! never hit the database.
use std::collections::BTreeMap;
use std::sync::Arc;

use super::event::Pdu;

#[derive(Debug, Clone, Default)]
pub struct RoomState {
    events: BTreeMap<(String, String), Arc<Pdu>>,
}

impl RoomState {
    pub(crate) fn from_events(events: impl IntoIterator<Item = Pdu>) -> Self {
        let mut s = Self::default();
        for e in events {
            s.apply(Arc::new(e));
        }
        s
    }

    pub(crate) fn apply(&mut self, pdu: Arc<Pdu>) {
        if let Some(sk) = &pdu.state_key {
            self.events.insert((pdu.kind.clone(), sk.clone()), pdu);
        }
    }

    pub(crate) fn get(&self, kind: &str, state_key: &str) -> Option<&Arc<Pdu>> {
        self.events.get(&(kind.to_owned(), state_key.to_owned()))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Pdu>> {
        self.events.values()
    }

    pub(crate) fn membership(&self, user_id: &str) -> Option<&str> {
        self.get("m.room.member", user_id).and_then(|e| e.membership())
    }

    /// Users whose membership is one of `which`.
    pub(crate) fn members_with<'a>(&'a self, which: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
        self.events
            .range(("m.room.member".to_owned(), String::new())..)
            .take_while(|((k, _), _)| k == "m.room.member")
            .filter(move |(_, e)| e.membership().is_some_and(|m| which.contains(&m)))
            .map(|((_, sk), _)| sk.as_str())
    }

    pub(crate) fn join_rule(&self) -> &str {
        self.get("m.room.join_rules", "").and_then(|e| e.content.get("join_rule")?.as_str()).unwrap_or("invite")
    }

    pub(crate) fn history_visibility(&self) -> &str {
        self.get("m.room.history_visibility", "")
            .and_then(|e| e.content.get("history_visibility")?.as_str())
            .unwrap_or("shared")
    }

    pub(crate) fn room_type(&self) -> Option<&str> {
        self.get("m.room.create", "").and_then(|e| e.content.get("type")?.as_str())
    }

    /// Stripped state shown with an invite (spec: `invite_state`).
    pub(crate) fn stripped(&self) -> Vec<serde_json::Value> {
        const KEEP: &[&str] = &[
            "m.room.create",
            "m.room.name",
            "m.room.avatar",
            "m.room.topic",
            "m.room.join_rules",
            "m.room.canonical_alias",
            "m.room.encryption",
        ];
        self.events.values().filter(|e| KEEP.contains(&e.kind.as_str())).map(|e| e.to_stripped()).collect()
    }
}
