//! Whole state events, for the readers that send them (`/sync` `state` sections, `/state`,
//! `/members`, invites) and the writer that needs a member event's previous content. The
//! in-memory [`RoomState`] keeps memberships as ids only (see `state.rs`); their events come
//! from a bounded cache of recently used events, then the store.
use std::collections::HashMap;
use std::sync::Arc;

use hashlink::LruCache;
use parking_lot::Mutex;

use super::event::Pdu;
use super::resolve::AuthEvent;
use super::service::Rooms;
use super::state::RoomState;
use crate::error::Result;

/// Events by id, least recently used dropped first; at most `capacity` events.
pub(crate) struct EventCache {
    events: Mutex<LruCache<String, Arc<Pdu>>>,
}

impl EventCache {
    /// Default `event_cache_capacity` (README, Configuration).
    pub(crate) const DEFAULT_CAPACITY: usize = 10_000;

    pub(crate) fn new(capacity: usize) -> Self {
        Self { events: Mutex::new(LruCache::new(capacity.max(1))) }
    }

    fn get(&self, event_id: &str) -> Option<Arc<Pdu>> {
        self.events.lock().get(event_id).cloned()
    }

    pub(crate) fn put(&self, pdu: Arc<Pdu>) {
        self.events.lock().insert(pdu.event_id.clone(), pdu);
    }

    /// A rewritten event (a redaction) replaces the cached copy, if there is one.
    pub(crate) fn replace(&self, pdu: &Arc<Pdu>) {
        let mut events = self.events.lock();
        if events.contains_key(&pdu.event_id) {
            events.insert(pdu.event_id.clone(), pdu.clone());
        }
    }
}

impl Rooms {
    /// Events by id, from the cache or (the misses, in one query per chunk) the store.
    /// Unknown ids are left out.
    pub(crate) async fn events_by_id(&self, ids: impl IntoIterator<Item = String>) -> Result<Vec<Arc<Pdu>>> {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for id in ids {
            match self.event_cache.get(&id) {
                Some(e) => found.push(e),
                None => missing.push(id),
            }
        }
        if !missing.is_empty() {
            for pdu in self.store.get_events(&missing).await? {
                let pdu = Arc::new(pdu);
                self.event_cache.put(pdu.clone());
                found.push(pdu);
            }
        }
        Ok(found)
    }

    /// Every event of `state`, whole (memberships included), in (type, state key) order.
    pub(crate) async fn state_events_of(&self, state: &RoomState) -> Result<Vec<Arc<Pdu>>> {
        let mut out: Vec<Arc<Pdu>> = state.iter().cloned().collect();
        if !state.keeps_whole() {
            out.extend(self.events_by_id(state.member_event_ids()).await?);
        }
        out.sort_by(|a, b| (&a.kind, &a.state_key).cmp(&(&b.kind, &b.state_key)));
        Ok(out)
    }

    /// A room's current state, whole (404 for an unknown room).
    pub(crate) async fn state_events(&self, room_id: &str) -> Result<Vec<Arc<Pdu>>> {
        let state = self.state(room_id).await?;
        self.state_events_of(&state).await
    }

    /// The current state event at (`kind`, `state_key`) of `state`, whole.
    pub(crate) async fn state_event_of(
        &self,
        state: &RoomState,
        kind: &str,
        state_key: &str,
    ) -> Result<Option<Arc<Pdu>>> {
        if kind != "m.room.member" {
            return Ok(state.get(kind, state_key).cloned());
        }
        let Some(id) = state.event_id(kind, state_key) else { return Ok(None) };
        Ok(self.events_by_id([id]).await?.pop())
    }

    /// The state events of `state` the auth rules read for `pdu` (create, power levels, join
    /// rules, the memberships of the sender, the target and a restricted join's authoriser,
    /// a third-party invite), by (type, state key). Member events of a compact state are
    /// fetched (event cache, then store) beside it; the state is not copied.
    pub(crate) async fn auth_events_in(
        &self,
        state: &RoomState,
        pdu: &Pdu,
    ) -> Result<HashMap<(String, String), AuthEvent>> {
        let mut keys: Vec<(&str, &str)> =
            vec![("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", "")];
        keys.push(("m.room.member", pdu.sender.as_str()));
        if pdu.kind == "m.room.member" {
            keys.extend(pdu.state_key.as_deref().map(|t| ("m.room.member", t)));
            let via = pdu.content.get("join_authorised_via_users_server").and_then(serde_json::Value::as_str);
            keys.extend(via.map(|u| ("m.room.member", u)));
            let token = pdu.content.pointer("/third_party_invite/signed/token").and_then(serde_json::Value::as_str);
            keys.extend(token.map(|t| ("m.room.third_party_invite", t)));
        }
        let mut out = HashMap::new();
        let mut fetch = Vec::new();
        for (kind, sk) in keys {
            match state.get(kind, sk) {
                Some(e) => {
                    out.insert((kind.to_owned(), sk.to_owned()), e.clone());
                }
                None if kind == "m.room.member" => fetch.extend(state.event_id(kind, sk)),
                None => {}
            }
        }
        for e in self.events_by_id(fetch).await? {
            if let Some(sk) = &e.state_key {
                out.insert((e.kind.clone(), sk.clone()), e);
            }
        }
        Ok(out.into_iter().filter_map(|(k, e)| Some((k, AuthEvent::new(&e).ok()?))).collect())
    }

    /// The current state event at (`kind`, `state_key`) of a room, whole.
    pub(crate) async fn state_event(&self, room_id: &str, kind: &str, state_key: &str) -> Result<Option<Arc<Pdu>>> {
        let state = self.state(room_id).await?;
        self.state_event_of(&state, kind, state_key).await
    }

    /// A user's current `m.room.member` event in a room, whole.
    pub(crate) async fn member_event(&self, room_id: &str, user_id: &str) -> Result<Option<Arc<Pdu>>> {
        self.state_event(room_id, "m.room.member", user_id).await
    }

    /// The state event a new event at (`kind`, `state_key`) replaces (for `prev_content`):
    /// from `pending` (events built earlier in the same batch, not stored yet) or `state`.
    /// `before` is the room's state when the batch began, if the caller has it: an event not
    /// replaced within the batch is read there, where the caller may already have decoded it
    /// (`state`, a copy with the batch's events applied, decodes it again).
    pub(super) async fn replaced_state(
        &self,
        state: &RoomState,
        before: Option<&RoomState>,
        pending: &HashMap<String, Arc<Pdu>>,
        kind: &str,
        state_key: Option<&str>,
    ) -> Result<Option<Arc<Pdu>>> {
        let Some(sk) = state_key else { return Ok(None) };
        let Some(id) = state.event_id(kind, sk) else { return Ok(None) };
        if let Some(e) = pending.get(&id) {
            return Ok(Some(e.clone()));
        }
        match before.filter(|b| b.event_id(kind, sk).as_deref() == Some(id.as_str())) {
            Some(before) => self.state_event_of(before, kind, sk).await,
            None => self.state_event_of(state, kind, sk).await,
        }
    }
}
