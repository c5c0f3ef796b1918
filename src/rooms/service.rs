//! The room service: the only writer of room events. Every event is authorized against the
//! in-memory current state, written with its derived state in one transaction, given a
//! stream position and announced to the users who may see it.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::{json, Value};

use super::auth;
use super::event::{now_ms, Pdu};
use super::state::RoomState;
use crate::error::{MatrixError, Result};
use crate::ground::{Notifier, StreamHub, StreamPos};
use crate::store::Store;

/// A room's events for one sync response (see [`Rooms::timeline`]).
pub struct Timeline {
    pub events: Vec<(i64, Pdu)>,
    pub limited: bool,
    pub first_pos: i64,
}

/// (room id, membership, stream position of the membership event).
pub type Membership = (String, String, i64);

/// An event a user (or the server on a user's behalf) wants to add to a room.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: String,
    pub state_key: Option<String>,
    pub content: Value,
    /// (device id, transaction id) for idempotent sends.
    pub txn: Option<(String, String)>,
}

impl NewEvent {
    pub fn state(kind: &str, state_key: &str, content: Value) -> Self {
        Self { kind: kind.into(), state_key: Some(state_key.into()), content, txn: None }
    }
    pub fn message(kind: &str, content: Value) -> Self {
        Self { kind: kind.into(), state_key: None, content, txn: None }
    }
}

/// Observes every event after it is persisted (profile rooms and peeks hook in here).
pub trait RoomObserver: Send + Sync {
    /// Extra users to wake for an event in `room_id` (e.g. peekers).
    fn watchers(&self, room_id: &str) -> Vec<String>;
    /// Called after the event is stored, with the room's state after it.
    fn on_event(&self, pdu: &Arc<Pdu>, state: &Arc<RoomState>, pos: i64);
}

pub struct Rooms {
    store: Store,
    stream: Arc<StreamHub>,
    notifier: Arc<Notifier>,
    pub server_name: String,
    max_event_bytes: usize,
    /// Serializes event writes: one linear order per room (and per server) for now.
    write_lock: tokio::sync::Mutex<()>,
    states: DashMap<String, Arc<RoomState>>,
    heads: DashMap<String, (String, i64)>,
    last_pos: DashMap<String, i64>,
    observers: parking_lot::RwLock<Vec<Arc<dyn RoomObserver>>>,
    /// Joined rooms per user, loaded on first use and kept current by membership events.
    joined: DashMap<String, Arc<HashSet<String>>>,
    /// Every membership per user (room, membership, stream position), for `/sync`.
    memberships: DashMap<String, Arc<Vec<Membership>>>,
    /// Bumped by every membership change, so a loader racing a change does not cache stale data.
    membership_gen: std::sync::atomic::AtomicU64,
}

impl Rooms {
    pub async fn new(
        store: Store,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
        server_name: String,
        max_event_bytes: usize,
    ) -> anyhow::Result<Self> {
        let last_pos = DashMap::new();
        for (room, pos) in store.room_last_positions().await? {
            last_pos.insert(room, pos);
        }
        Ok(Self {
            store,
            stream,
            notifier,
            server_name,
            max_event_bytes,
            write_lock: tokio::sync::Mutex::new(()),
            states: DashMap::new(),
            heads: DashMap::new(),
            last_pos,
            observers: Default::default(),
            joined: DashMap::new(),
            memberships: DashMap::new(),
            membership_gen: Default::default(),
        })
    }

    pub fn add_observer(&self, o: Arc<dyn RoomObserver>) {
        self.observers.write().push(o);
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Newest stream position of a room's events (0 if none).
    pub fn last_position(&self, room_id: &str) -> i64 {
        self.last_pos.get(room_id).map(|p| *p).unwrap_or(0)
    }

    /// The current state of a room, or 404 if there is no such room.
    pub async fn state(&self, room_id: &str) -> Result<Arc<RoomState>> {
        if let Some(s) = self.states.get(room_id) {
            return Ok(s.clone());
        }
        if !self.store.room_exists(room_id).await? {
            return Err(MatrixError::not_found("Unknown room"));
        }
        let state = Arc::new(RoomState::from_events(self.store.load_room_state(room_id).await?));
        Ok(self.states.entry(room_id.to_owned()).or_insert(state).clone())
    }

    pub async fn resolve(&self, room_id_or_alias: &str) -> Result<String> {
        if room_id_or_alias.starts_with('#') {
            self.store
                .resolve_alias(room_id_or_alias)
                .await?
                .ok_or_else(|| MatrixError::not_found("Room alias not found"))
        } else if room_id_or_alias.starts_with('!') && room_id_or_alias.contains(':') {
            Ok(room_id_or_alias.to_owned())
        } else {
            Err(MatrixError::invalid_param("Not a room id or alias"))
        }
    }

    /// Authorize and append an event as `sender`. Idempotent per (sender, device, txn id).
    pub async fn send(&self, room_id: &str, sender: &str, ev: NewEvent) -> Result<Arc<Pdu>> {
        let _guard = self.write_lock.lock().await;
        if let Some((device, txn)) = &ev.txn {
            if let Some(existing) = self.store.txn_event(sender, device, txn).await? {
                if let Some((_, pdu)) = self.store.get_event(&existing).await? {
                    return Ok(Arc::new(pdu));
                }
            }
        }
        let state = self.state(room_id).await?;
        auth::check(&state, sender, &ev.kind, ev.state_key.as_deref(), &ev.content).map_err(MatrixError::Forbidden)?;
        self.append_locked(room_id, state, sender, ev).await
    }

    /// Append without the auth rules (room creation, server-owned state). Caller holds no lock.
    pub async fn send_as_server(&self, room_id: &str, sender: &str, ev: NewEvent) -> Result<Arc<Pdu>> {
        let _guard = self.write_lock.lock().await;
        let state = self.state(room_id).await?;
        self.append_locked(room_id, state, sender, ev).await
    }

    /// Create a room from a list of events appended in order, without auth (the creator
    /// builds the initial state). Returns the room id.
    pub async fn create_with_events(
        &self,
        creator: &str,
        room_type: Option<&str>,
        events: Vec<NewEvent>,
    ) -> Result<String> {
        let room_id = format!("!{}:{}", super::event::random_string(18), self.server_name);
        let _guard = self.write_lock.lock().await;
        self.store.insert_room(&room_id, creator, super::ROOM_VERSION, room_type, now_ms()).await?;
        let mut state = Arc::new(RoomState::default());
        for ev in events {
            self.append_locked(&room_id, state.clone(), creator, ev).await?;
            state = self.states.get(&room_id).map(|s| s.clone()).unwrap_or_default();
        }
        Ok(room_id)
    }

    /// Build the next event of a room on top of `state` and `head` (prev event id, depth).
    fn build_pdu(
        &self,
        room_id: &str,
        state: &RoomState,
        head: Option<(String, i64)>,
        sender: &str,
        ev: NewEvent,
    ) -> Result<Pdu> {
        if super::event::json_depth(&ev.content) > super::event::MAX_JSON_DEPTH {
            return Err(MatrixError::bad_json(format!(
                "event content nests deeper than {} levels",
                super::event::MAX_JSON_DEPTH
            )));
        }
        let (prev_events, depth) = match head {
            Some((id, depth)) => (vec![id], depth + 1),
            None => (vec![], 1),
        };
        let mut unsigned = serde_json::Map::new();
        if let Some(sk) = &ev.state_key {
            if let Some(prev) = state.get(&ev.kind, sk) {
                unsigned.insert("replaces_state".into(), json!(prev.event_id));
                unsigned.insert("prev_content".into(), prev.content.clone());
                unsigned.insert("prev_sender".into(), json!(prev.sender));
            }
        }
        let mut pdu = Pdu {
            event_id: String::new(),
            room_id: room_id.to_owned(),
            sender: sender.to_owned(),
            kind: ev.kind,
            state_key: ev.state_key,
            content: ev.content,
            origin_server_ts: now_ms(),
            depth,
            prev_events,
            unsigned,
            txn: ev.txn,
        };
        pdu.compute_event_id();
        let size = serde_json::to_vec(&pdu.to_client(pdu.origin_server_ts, None)).map(|v| v.len()).unwrap_or(0);
        if size > self.max_event_bytes {
            return Err(MatrixError::TooLarge(format!("event is {size} bytes, the limit is {}", self.max_event_bytes)));
        }
        Ok(pdu)
    }

    async fn append_locked(
        &self,
        room_id: &str,
        state: Arc<RoomState>,
        sender: &str,
        ev: NewEvent,
    ) -> Result<Arc<Pdu>> {
        let head = self.head(room_id).await?;
        let pdu = self.build_pdu(room_id, &state, head, sender, ev)?;
        let pos = self.stream.allocate();
        self.store.persist_event(&pdu, pos.pos, Some(sender)).await?;
        let pdu = Arc::new(pdu);
        let new_state = if pdu.is_state() {
            let mut s = (*state).clone();
            s.apply(pdu.clone());
            Arc::new(s)
        } else {
            state
        };
        self.after_persist(&pdu, new_state, pos);
        Ok(pdu)
    }

    /// Write several server-authored events (possibly in several rooms) in one database
    /// transaction: the profile-room publisher's batch. No auth rules, like `send_as_server`.
    pub async fn send_batch_as_server(&self, items: Vec<(String, String, NewEvent)>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let _guard = self.write_lock.lock().await;
        let mut states: HashMap<String, Arc<RoomState>> = HashMap::new();
        let mut heads: HashMap<String, Option<(String, i64)>> = HashMap::new();
        let mut built = Vec::with_capacity(items.len());
        for (room_id, sender, ev) in items {
            let state = match states.get(&room_id) {
                Some(s) => s.clone(),
                None => self.state(&room_id).await?,
            };
            let head = match heads.get(&room_id) {
                Some(h) => h.clone(),
                None => self.head(&room_id).await?,
            };
            let pdu = Arc::new(self.build_pdu(&room_id, &state, head, &sender, ev)?);
            let new_state = if pdu.is_state() {
                let mut s = (*state).clone();
                s.apply(pdu.clone());
                Arc::new(s)
            } else {
                state
            };
            heads.insert(room_id.clone(), Some((pdu.event_id.clone(), pdu.depth)));
            states.insert(room_id, new_state.clone());
            built.push((pdu, new_state, self.stream.allocate()));
        }
        let rows: Vec<(&Pdu, i64)> = built.iter().map(|(p, _, pos)| (p.as_ref(), pos.pos)).collect();
        self.store.persist_events(&rows).await?;
        for (pdu, state, pos) in built {
            self.after_persist(&pdu, state, pos);
        }
        Ok(())
    }

    /// Caches, stream position and wake-ups once an event is stored.
    fn after_persist(&self, pdu: &Arc<Pdu>, new_state: Arc<RoomState>, pos: StreamPos) {
        let room_id = pdu.room_id.as_str();
        let depth = pdu.depth;
        self.states.insert(room_id.to_owned(), new_state.clone());
        self.heads.insert(room_id.to_owned(), (pdu.event_id.clone(), depth));
        self.last_pos.insert(room_id.to_owned(), pos.pos);
        if let (Some(target), Some(membership)) = (&pdu.state_key, pdu.membership()) {
            self.membership_gen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Some(mut all) = self.memberships.get_mut(target) {
                let mut list: Vec<(String, String, i64)> =
                    all.iter().filter(|(r, _, _)| r != room_id).cloned().collect();
                list.push((room_id.to_owned(), membership.to_owned(), pos.pos));
                *all = Arc::new(list);
            }
            if let Some(mut rooms) = self.joined.get_mut(target) {
                let mut set = (**rooms).clone();
                if membership == "join" {
                    set.insert(room_id.to_owned());
                } else {
                    set.remove(room_id);
                }
                *rooms = Arc::new(set);
            }
        }
        let position = pos.pos;
        pos.complete();

        let mut wake: HashSet<String> = new_state.members_with(&["join", "invite"]).map(str::to_owned).collect();
        if let (Some(target), Some(_)) = (&pdu.state_key, pdu.membership()) {
            wake.insert(target.clone());
        }
        let observers = self.observers.read().clone();
        for o in &observers {
            wake.extend(o.watchers(room_id));
        }
        self.notifier.wake(wake.iter().map(String::as_str), position);
        for o in &observers {
            o.on_event(pdu, &new_state, position);
        }
    }

    /// Store a rewritten copy of an event (a redaction); the copy replaces the event in the
    /// current state if it is there.
    pub async fn rewrite_event(&self, pdu: Pdu) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        let json = serde_json::to_string(&pdu).map_err(|e| MatrixError::Internal(e.into()))?;
        self.store.replace_event_json(&pdu.event_id, &json).await?;
        let Some(sk) = pdu.state_key.clone() else { return Ok(()) };
        let Some(state) = self.states.get(&pdu.room_id).map(|s| s.clone()) else { return Ok(()) };
        if state.get(&pdu.kind, &sk).is_some_and(|cur| cur.event_id == pdu.event_id) {
            let mut s = (*state).clone();
            let room_id = pdu.room_id.clone();
            s.apply(Arc::new(pdu));
            self.states.insert(room_id, Arc::new(s));
        }
        Ok(())
    }

    /// The timeline slice of a room for a sync: the newest `limit` events in `(after, upto]`,
    /// oldest first, whether more were left out (`limited`), and the position of the first.
    pub async fn timeline(&self, room_id: &str, after: i64, upto: i64, limit: i64) -> Result<Timeline> {
        let mut events = self.store.room_events_desc(room_id, after, upto, limit + 1).await?;
        let limited = events.len() as i64 > limit;
        events.truncate(limit as usize);
        events.reverse();
        let first_pos = events.first().map(|(p, _)| *p).unwrap_or(upto + 1);
        Ok(Timeline { events, limited, first_pos })
    }

    /// The rooms `user_id` is joined to.
    pub async fn joined_rooms(&self, user_id: &str) -> Result<Arc<HashSet<String>>> {
        if let Some(r) = self.joined.get(user_id) {
            return Ok(r.clone());
        }
        let gen = self.membership_gen.load(std::sync::atomic::Ordering::SeqCst);
        tracing::debug!(user_id, "joined-rooms cache miss");
        let rooms: HashSet<String> = self
            .store
            .rooms_for_user(user_id)
            .await?
            .into_iter()
            .filter(|(_, m, _)| m == "join")
            .map(|(r, _, _)| r)
            .collect();
        let rooms = Arc::new(rooms);
        if gen == self.membership_gen.load(std::sync::atomic::Ordering::SeqCst) {
            self.joined.insert(user_id.to_owned(), rooms.clone());
        }
        Ok(rooms)
    }

    /// Every room the user has a membership in: (room id, membership, stream position).
    pub async fn memberships(&self, user_id: &str) -> Result<Arc<Vec<Membership>>> {
        if let Some(m) = self.memberships.get(user_id) {
            return Ok(m.clone());
        }
        let gen = self.membership_gen.load(std::sync::atomic::Ordering::SeqCst);
        tracing::debug!(user_id, "membership cache miss");
        let list = Arc::new(self.store.rooms_for_user(user_id).await?);
        if gen == self.membership_gen.load(std::sync::atomic::Ordering::SeqCst) {
            self.memberships.insert(user_id.to_owned(), list.clone());
        }
        Ok(list)
    }

    /// Everyone who shares a joined room with `user_id` (including the user).
    pub async fn room_peers(&self, user_id: &str) -> Result<HashSet<String>> {
        let mut peers = HashSet::new();
        peers.insert(user_id.to_owned());
        for room in self.joined_rooms(user_id).await?.iter() {
            let state = self.state(room).await?;
            peers.extend(state.members_with(&["join"]).map(str::to_owned));
        }
        Ok(peers)
    }

    /// Do `a` and `b` share a joined room?
    pub async fn share_a_room(&self, a: &str, b: &str) -> Result<bool> {
        if a == b {
            return Ok(true);
        }
        let (ra, rb) = (self.joined_rooms(a).await?, self.joined_rooms(b).await?);
        let (small, big) = if ra.len() <= rb.len() { (ra, rb) } else { (rb, ra) };
        Ok(small.iter().any(|r| big.contains(r)))
    }

    async fn head(&self, room_id: &str) -> Result<Option<(String, i64)>> {
        if let Some(h) = self.heads.get(room_id) {
            return Ok(Some(h.clone()));
        }
        Ok(self.store.latest_event(room_id).await?)
    }

    /// Change `target`'s membership as `sender` (join, invite, leave/kick, ban).
    pub async fn set_membership(
        &self,
        room_id: &str,
        sender: &str,
        target: &str,
        membership: &str,
        reason: Option<String>,
    ) -> Result<Arc<Pdu>> {
        let mut content = json!({ "membership": membership });
        if membership == "join" {
            if let Some(user) = self.store.get_user(target).await? {
                if let Some(n) = user.displayname {
                    content["displayname"] = json!(n);
                }
                if let Some(a) = user.avatar_url {
                    content["avatar_url"] = json!(a);
                }
            }
        }
        if let Some(r) = reason {
            content["reason"] = json!(r);
        }
        self.send(room_id, sender, NewEvent::state("m.room.member", target, content)).await
    }

    /// Who may read a room's state and history: members, or anyone if world-readable.
    /// Returns the stream position up to which the user may read.
    pub async fn visible_upto(&self, room_id: &str, user_id: &str) -> Result<i64> {
        let state = self.state(room_id).await?;
        match state.get("m.room.member", user_id) {
            Some(_) if state.membership(user_id) == Some("join") => Ok(i64::MAX),
            _ if state.history_visibility() == "world_readable" => Ok(i64::MAX),
            Some(ev) if matches!(ev.membership(), Some("leave") | Some("ban")) => {
                let (pos, _) =
                    self.store.get_event(&ev.event_id).await?.ok_or_else(|| MatrixError::forbidden("not a member"))?;
                // A member who left may still read up to the moment they left (shared history),
                // unless the member left by rejecting an invite.
                let was_joined =
                    ev.unsigned.get("prev_content").and_then(|c| c.get("membership")).and_then(Value::as_str)
                        == Some("join");
                if was_joined {
                    Ok(pos)
                } else {
                    Err(MatrixError::forbidden("You are not a member of this room"))
                }
            }
            _ => Err(MatrixError::forbidden("You are not a member of this room")),
        }
    }
}
