//! The room service: the only writer of room events. Every event is authorized against the
//! in-memory current state, written with its derived state in one transaction, given a
//! stream position and announced to the users who may see it (see `send.rs`).
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use serde_json::Value;

use super::state::RoomState;
use super::state_groups::{GroupCache, GroupHead};
use super::state_read::EventCache;
use crate::accounts::Accounts;
use crate::e2ee::E2ee;
use crate::error::{MatrixError, Result};
use crate::federation::Federation;
use crate::ground::{Notifier, StreamHub};
use crate::peek::Peeks;
use crate::presence::PresenceEngine;
use crate::profile::ProfileRooms;
use crate::relations::Relations;
use crate::store::Store;

pub use super::timeline::Timeline;

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
    pub(crate) fn state(kind: &str, state_key: &str, content: Value) -> Self {
        Self { kind: kind.into(), state_key: Some(state_key.into()), content, txn: None }
    }
    pub(crate) fn message(kind: &str, content: Value) -> Self {
        Self { kind: kind.into(), state_key: None, content, txn: None }
    }
}

/// The services built on top of `Rooms` that room events reach, attached once they exist.
/// Named fields rather than a registry, so a reader can follow an event from
/// [`Rooms::after_persist`] to whoever hears of it.
pub struct RoomLinks {
    /// The profile-room rules for user-sent events (`send_user_event`).
    pub profiles: Arc<ProfileRooms>,
    /// Sending is pro-active (seed 000); the `m.status` of a profile room feeds the engine.
    pub presence: Arc<PresenceEngine>,
    /// Events with `m.relates_to` are indexed as they are sent.
    pub relations: Arc<Relations>,
    /// Peekers are woken by a peeked room's events and may read its state (MSC2753).
    pub peeks: Arc<Peeks>,
    /// Notes which rooms had membership changes, for device-list deltas.
    pub e2ee: Arc<E2ee>,
}

pub struct Rooms {
    /// Signs every event (key loaded also with federation off) and reaches other servers.
    pub(super) federation: Arc<Federation>,
    pub(super) store: Store,
    pub(super) stream: Arc<StreamHub>,
    pub(super) notifier: Arc<Notifier>,
    /// Display names and avatars that joins carry.
    pub(super) accounts: Arc<Accounts>,
    pub server_name: String,
    pub(super) max_event_bytes: usize,
    /// Serializes event writes: one linear order per room (and per server) for now.
    pub(super) write_lock: tokio::sync::Mutex<()>,
    /// Current state per room, compact: memberships as ids (see `state.rs`).
    pub(super) states: DashMap<String, Arc<RoomState>>,
    /// Forward extremities per room: (event id, depth) of the events nothing points to yet,
    /// the `prev_events` of the next event (see `dag.rs`).
    pub(super) extremities: DashMap<String, Arc<Vec<(String, i64)>>>,
    /// Recently used whole events (member events for `/sync` `state`), bounded.
    pub(super) event_cache: EventCache,
    pub(super) last_pos: DashMap<String, i64>,
    /// Per room, since start-up: the position of its newest membership event (see
    /// [`Rooms::members_changed_since`]).
    pub(super) member_pos: DashMap<String, i64>,
    /// The stream position at start-up: before it, `member_pos` knows nothing.
    started_at: i64,
    pub(super) links: OnceLock<RoomLinks>,
    /// Joined rooms per user, loaded on first use and kept current by membership events.
    pub(super) joined: DashMap<String, Arc<HashSet<String>>>,
    /// Every membership per user (room, membership, stream position), for `/sync`.
    pub(super) memberships: DashMap<String, Arc<Vec<Membership>>>,
    /// Bumped by every membership change, so a loader racing a change does not cache stale data.
    pub(super) membership_gen: std::sync::atomic::AtomicU64,
    /// The next state group id (`state_groups.rs`).
    pub(super) next_group: std::sync::atomic::AtomicI64,
    /// The group of each room's current state (set under the write lock).
    pub(super) group_heads: DashMap<String, GroupHead>,
    pub(super) group_cache: GroupCache,
}

impl Rooms {
    pub(crate) async fn new(
        federation: Arc<Federation>,
        store: Store,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
        accounts: Arc<Accounts>,
        server_name: String,
        max_event_bytes: usize,
    ) -> anyhow::Result<Self> {
        let last_pos = DashMap::new();
        for (room, pos) in store.room_last_positions().await? {
            last_pos.insert(room, pos);
        }
        let next_group = std::sync::atomic::AtomicI64::new(store.max_state_group().await? + 1);
        let started_at = stream.current();
        Ok(Self {
            federation,
            store,
            stream,
            notifier,
            accounts,
            server_name,
            max_event_bytes,
            write_lock: tokio::sync::Mutex::new(()),
            states: DashMap::new(),
            extremities: DashMap::new(),
            event_cache: EventCache::new(EventCache::DEFAULT_CAPACITY),
            last_pos,
            member_pos: DashMap::new(),
            started_at,
            links: OnceLock::new(),
            joined: DashMap::new(),
            memberships: DashMap::new(),
            membership_gen: Default::default(),
            next_group,
            group_heads: DashMap::new(),
            group_cache: GroupCache::new(),
        })
    }

    /// Keep at most `capacity` whole events in memory (`event_cache_capacity`).
    pub(crate) fn with_event_cache(mut self, capacity: usize) -> Self {
        self.event_cache = EventCache::new(capacity);
        self
    }

    /// Attach the services built on top of rooms (once, at start-up).
    pub(crate) fn link(&self, links: RoomLinks) {
        if self.links.set(links).is_err() {
            tracing::warn!("room links attached twice; keeping the first");
        }
    }

    pub(crate) fn links(&self) -> Result<&RoomLinks> {
        self.links.get().ok_or_else(|| MatrixError::Internal(anyhow::anyhow!("rooms used before start-up finished")))
    }

    /// Newest stream position of a room's events (0 if none).
    pub(crate) fn last_position(&self, room_id: &str) -> i64 {
        self.last_pos.get(room_id).map(|p| *p).unwrap_or(0)
    }

    /// Whether a membership event of `room_id` may have been stored after `since`: `false`
    /// only when it is known that none was, so `/sync` looks for joins and leaves (newcomers'
    /// presence, device-list changes) only in rooms that had one, without a query for the
    /// others (issue #13: a user's own profile room gets an event with each of their presence
    /// changes, and each of their next syncs read its state changes from the database).
    pub(crate) fn members_changed_since(&self, room_id: &str, since: i64) -> bool {
        if self.last_position(room_id) <= since {
            return false;
        }
        if since < self.started_at {
            return true;
        }
        self.member_pos.get(room_id).is_some_and(|p| *p > since)
    }

    /// The current state of a room, or 404 if there is no such room.
    pub(crate) async fn state(&self, room_id: &str) -> Result<Arc<RoomState>> {
        if let Some(s) = self.states.get(room_id) {
            return Ok(s.clone());
        }
        if !self.store.room_exists(room_id).await? {
            return Err(MatrixError::not_found("Unknown room"));
        }
        let (events, members) = self.store.load_room_state_compact(room_id).await?;
        let state = Arc::new(RoomState::from_parts(events, members));
        Ok(self.states.entry(room_id.to_owned()).or_insert(state).clone())
    }
}
