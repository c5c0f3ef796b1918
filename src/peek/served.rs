//! The peeked side of MSC2444 (peeking over federation): other servers peek our rooms with
//! `PUT /_matrix/federation/unstable/org.matrix.msc2444/peek/{roomId}/{peekId}`, and while a
//! peek lasts every new event of the room goes to them through the outgoing queue as if they
//! were joined (`Rooms::fan_out`), and they may read the room's DAG (`/event`, `/state`,
//! `get_missing_events`, …).
//!
//! Who may peek is the permission model of local peeks applied to the *server* (an MSC2444
//! peek names no user): a world-readable room, or a profile room whose owner a user of that
//! server may see (shared joined room, accepted presence-list entry). A profile room whose
//! owner restricted presence visibility needs the latter even when world-readable, since
//! its `m.presence` events would otherwise reach a server none of whose users may see them.
//!
//! A peek lasts `peek_renewal_interval_ms` after it was last PUT; expiry is a deadline in one
//! `Timer` (no scan). At most `max_peeks_per_server` peeks per server (429 beyond).
use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::{json, Value};

use super::Peeks;
use crate::error::{MatrixError, Result};
use crate::ground::{Clock, Timer};
use crate::profile::privacy::{presence_visibility, VISIBILITY_RESTRICTED};
use crate::rooms::{now_ms, RoomState};

/// (room, server, peek id): one served peek.
pub(super) type ServedKey = (String, String, String);

/// Longest peek id (MSC2444: "8 or less bytes of ASCII").
pub const MAX_PEEK_ID_BYTES: usize = 8;

pub(super) struct Served {
    /// Room -> (server, peek id) -> expiry (ms since the epoch).
    by_room: DashMap<String, HashMap<(String, String), i64>>,
    /// Server -> number of peeks it holds.
    per_server: DashMap<String, usize>,
    pub(super) expiry: Arc<Timer<ServedKey>>,
}

impl Served {
    pub(super) fn new() -> Self {
        Self { by_room: DashMap::new(), per_server: DashMap::new(), expiry: Timer::new(Clock::system()) }
    }

    fn insert(&self, room: &str, server: &str, peek_id: &str, expires: i64) {
        let fresh = self
            .by_room
            .entry(room.to_owned())
            .or_default()
            .insert((server.to_owned(), peek_id.to_owned()), expires)
            .is_none();
        if fresh {
            *self.per_server.entry(server.to_owned()).or_default() += 1;
        }
        self.expiry.schedule((room.to_owned(), server.to_owned(), peek_id.to_owned()), expires);
    }

    fn remove(&self, room: &str, server: &str, peek_id: &str) -> bool {
        let key = (server.to_owned(), peek_id.to_owned());
        let removed = self.by_room.get_mut(room).and_then(|mut m| m.remove(&key)).is_some();
        self.by_room.remove_if(room, |_, m| m.is_empty());
        if removed {
            if let Some(mut n) = self.per_server.get_mut(server) {
                *n = n.saturating_sub(1);
            }
            self.per_server.remove_if(server, |_, n| *n == 0);
        }
        self.expiry.cancel(&(room.to_owned(), server.to_owned(), peek_id.to_owned()));
        removed
    }

    fn expires(&self, room: &str, server: &str, peek_id: &str) -> Option<i64> {
        self.by_room.get(room).and_then(|m| m.get(&(server.to_owned(), peek_id.to_owned())).copied())
    }
}

/// Is `peek_id` a valid MSC2444 peek id (1 to 8 bytes of printable ASCII)?
pub fn valid_peek_id(peek_id: &str) -> bool {
    (1..=MAX_PEEK_ID_BYTES).contains(&peek_id.len()) && peek_id.bytes().all(|b| b.is_ascii_graphic())
}

impl Peeks {
    /// Load the served peeks that have not expired (start-up).
    pub(super) async fn load_served(&self) -> anyhow::Result<()> {
        let now = now_ms();
        for (room, server, peek_id, expires) in self.store.all_served_peeks().await? {
            if expires <= now {
                self.store.delete_served_peek(&room, &server, &peek_id).await?;
            } else {
                self.served.insert(&room, &server, &peek_id, expires);
            }
        }
        Ok(())
    }

    /// The servers peeking `room_id` now (for `Rooms::fan_out`). Cheap: one map lookup.
    pub(crate) fn peeking_servers(&self, room_id: &str) -> Vec<String> {
        let now = now_ms();
        let Some(m) = self.served.by_room.get(room_id) else { return Vec::new() };
        let mut out: Vec<String> = m.iter().filter(|(_, e)| **e > now).map(|((s, _), _)| s.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Does `server` peek `room_id` now (may it read the room's DAG)?
    pub(crate) fn server_peeks(&self, server: &str, room_id: &str) -> bool {
        let now = now_ms();
        self.served.by_room.get(room_id).is_some_and(|m| m.iter().any(|((s, _), e)| s == server && *e > now))
    }

    /// May `server` peek `room_id` (see the module comment)?
    async fn server_may_peek(&self, server: &str, room_id: &str, state: &RoomState) -> Result<bool> {
        if state.members_with(&["join"]).any(|u| u.split_once(':').map(|(_, s)| s) == Some(server)) {
            return Ok(true);
        }
        let world_readable = state.history_visibility() == "world_readable";
        match self.profiles.owner_of(room_id) {
            Some(owner) => {
                if world_readable && presence_visibility(state) != VISIBILITY_RESTRICTED {
                    return Ok(true);
                }
                self.access.server_can_see(server, &owner).await
            }
            None => Ok(world_readable),
        }
    }

    /// `PUT …/peek/{roomId}/{peekId}` from `origin` (the room version was checked by the
    /// handler). A new peek (or one that lapsed) answers the room's state (MSC2444); a
    /// renewal of a live one answers `{}`. 404: a room we are not in; 403: not peekable by
    /// that server, or encrypted; 429: the server holds `max_peeks_per_server` peeks already.
    pub async fn serve_peek(&self, origin: &str, room_id: &str, peek_id: &str) -> Result<Value> {
        if !self.rooms.is_resident(room_id).await? {
            return Err(MatrixError::not_found("This server is not in that room"));
        }
        let state = self.rooms.state(room_id).await?;
        if state.get("m.room.encryption", "").is_some() {
            return Err(MatrixError::forbidden("Encrypted rooms cannot be peeked (MSC2444)"));
        }
        if !self.server_may_peek(origin, room_id, &state).await? {
            return Err(MatrixError::forbidden("No user of your server may peek this room"));
        }
        let interval = self.config.served_renewal_interval_ms;
        let renewed = {
            let _writing = self.writes.lock().await;
            let now = now_ms();
            let current = self.served.expires(room_id, origin, peek_id);
            if current.is_none() {
                let held = self.served.per_server.get(origin).map(|n| *n).unwrap_or(0);
                if held >= self.config.max_peeks_per_server {
                    return Err(MatrixError::LimitExceeded { retry_after_ms: interval.max(0) as u64 });
                }
            }
            let expires = now + interval;
            self.store.put_served_peek(room_id, origin, peek_id, expires).await?;
            self.served.insert(room_id, origin, peek_id, expires);
            current.is_some_and(|e| e > now)
        };
        if renewed {
            return Ok(json!({}));
        }
        // Registered first, then read: an event persisted meanwhile is in the answer or sent
        // by `/send` (or both: the peeker takes a known event again without harm).
        let mut body = self.rooms.fed_peek_snapshot(room_id).await?;
        body["renewal_interval"] = json!(interval);
        Ok(body)
    }

    /// `DELETE …/peek/{roomId}/{peekId}`: 404 for a peek `origin` does not hold.
    pub async fn serve_unpeek(&self, origin: &str, room_id: &str, peek_id: &str) -> Result<()> {
        let _writing = self.writes.lock().await;
        if self.served.expires(room_id, origin, peek_id).is_none() {
            return Err(MatrixError::not_found("No such peek"));
        }
        self.store.delete_served_peek(room_id, origin, peek_id).await?;
        self.served.remove(room_id, origin, peek_id);
        Ok(())
    }

    /// A served peek's deadline passed: end it unless it was renewed meanwhile.
    pub(super) async fn expire_served(&self, (room, server, peek_id): ServedKey, now: i64) -> Result<()> {
        let _writing = self.writes.lock().await;
        match self.served.expires(&room, &server, &peek_id) {
            Some(e) if e <= now => {
                self.store.delete_served_peek(&room, &server, &peek_id).await?;
                self.served.remove(&room, &server, &peek_id);
                tracing::info!(%room, %server, "a peek over federation expired");
            }
            Some(e) => self.served.expiry.schedule((room, server, peek_id), e),
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_ids_are_one_to_eight_bytes_of_printable_ascii() {
        for ok in ["a", "12345678", "!r~:x", "room_id"] {
            assert!(valid_peek_id(ok), "{ok}");
        }
        for bad in ["", "123456789", "a b", "é", "tab\t"] {
            assert!(!valid_peek_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn served_peeks_are_counted_once_per_server_and_forgotten_when_removed() {
        let s = Served::new();
        s.insert("!r:x", "a.example", "p1", 10);
        s.insert("!r:x", "a.example", "p1", 20); // renewal: same peek
        s.insert("!q:x", "a.example", "p2", 20);
        s.insert("!r:x", "b.example", "p1", 20);
        assert_eq!(s.per_server.get("a.example").map(|n| *n), Some(2));
        assert_eq!(s.expires("!r:x", "a.example", "p1"), Some(20));
        assert_eq!(s.expiry.deadline(&("!r:x".into(), "a.example".into(), "p1".into())), Some(20));
        assert!(s.remove("!r:x", "a.example", "p1"));
        assert!(!s.remove("!r:x", "a.example", "p1"), "removed once");
        assert_eq!(s.per_server.get("a.example").map(|n| *n), Some(1));
        assert!(s.remove("!q:x", "a.example", "p2"));
        assert!(s.per_server.get("a.example").is_none(), "no empty counters kept");
        assert!(s.by_room.get("!q:x").is_none(), "no empty rooms kept");
        assert!(s.expiry.deadline(&("!q:x".into(), "a.example".into(), "p2".into())).is_none());
    }
}
