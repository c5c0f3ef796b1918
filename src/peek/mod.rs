//! Peeking (MSC2753): a device subscribes to a room it has not joined; the room's state and
//! new events come down that device's `/sync` under `rooms.peek`. Who may peek a profile room
//! is the presence permission model (`PresenceAccess`); other rooms must be world-readable.
use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::{json, Map, Value};

use crate::accounts::Session;
use crate::error::{MatrixError, Result};
use crate::presence::access::PresenceAccess;
use crate::profile::ProfileRooms;
use crate::rooms::service::RoomObserver;
use crate::rooms::{now_ms, Pdu, RoomState, Rooms};
use crate::store::Store;
use crate::sync::service::SyncSource;
use crate::sync::{token, Notifier, StreamHub, SyncFilter};

type DeviceKey = (String, String);

pub struct Peeks {
    store: Store,
    rooms: Arc<Rooms>,
    stream: Arc<StreamHub>,
    notifier: Arc<Notifier>,
    profiles: Arc<ProfileRooms>,
    access: Arc<PresenceAccess>,
    /// Device -> peeked room -> stream position the peek started at.
    by_device: DashMap<DeviceKey, HashMap<String, i64>>,
    /// Room -> peeking user -> number of (device) subscriptions, for wake-ups.
    by_room: DashMap<String, HashMap<String, u32>>,
    /// Peeks that ended (unpeek or lost permission) and the position they ended at, reported
    /// once in `rooms.leave` (MSC2753).
    ended: DashMap<DeviceKey, Vec<(String, i64)>>,
}

impl Peeks {
    pub async fn new(
        store: Store,
        rooms: Arc<Rooms>,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
        profiles: Arc<ProfileRooms>,
        access: Arc<PresenceAccess>,
    ) -> anyhow::Result<Arc<Self>> {
        let this = Self {
            store,
            rooms,
            stream,
            notifier,
            profiles,
            access,
            by_device: DashMap::new(),
            by_room: DashMap::new(),
            ended: DashMap::new(),
        };
        for (user, device, room, pos) in this.store.all_peeks().await? {
            this.add_local(&user, &device, &room, pos);
        }
        Ok(Arc::new(this))
    }

    /// May `viewer` read `room_id` without being joined? Profile rooms: the owner, anyone
    /// allowed to see the owner's presence, or anyone if the owner made it world-readable.
    /// Other rooms: world-readable only (MSC2753).
    pub async fn can_peek(&self, viewer: &str, room_id: &str) -> Result<bool> {
        let state = self.rooms.state(room_id).await?;
        if state.history_visibility() == "world_readable" || state.membership(viewer) == Some("join") {
            return Ok(true);
        }
        match self.profiles.owner_of(room_id) {
            Some(owner) => self.access.can_see(viewer, &owner).await,
            None => Ok(false),
        }
    }

    fn add_local(&self, user: &str, device: &str, room: &str, pos: i64) {
        let fresh = self.by_device.entry((user.into(), device.into())).or_default().insert(room.into(), pos).is_none();
        if fresh {
            *self.by_room.entry(room.into()).or_default().entry(user.into()).or_default() += 1;
        }
    }

    fn remove_local(&self, user: &str, device: &str, room: &str) -> bool {
        let removed = self.by_device.get_mut(&(user.into(), device.into())).and_then(|mut m| m.remove(room)).is_some();
        if removed {
            if let Some(mut users) = self.by_room.get_mut(room) {
                if let Some(n) = users.get_mut(user) {
                    *n -= 1;
                    if *n == 0 {
                        users.remove(user);
                    }
                }
            }
        }
        removed
    }

    pub fn is_peeking(&self, session: &Session, room_id: &str) -> bool {
        self.by_device
            .get(&(session.user_id.clone(), session.device_id.clone()))
            .is_some_and(|m| m.contains_key(room_id))
    }

    /// `POST /peek/{roomIdOrAlias}`.
    pub async fn peek(&self, session: &Session, room_id: &str) -> Result<()> {
        self.rooms.state(room_id).await?;
        if !self.can_peek(&session.user_id, room_id).await? {
            return Err(MatrixError::forbidden("You may not peek this room"));
        }
        let pos = self.stream.allocate();
        self.store.insert_peek(&session.user_id, &session.device_id, room_id, pos.pos).await?;
        self.add_local(&session.user_id, &session.device_id, room_id, pos.pos);
        if let Some(mut e) = self.ended.get_mut(&(session.user_id.clone(), session.device_id.clone())) {
            e.retain(|(r, _)| r != room_id);
        }
        let p = pos.pos;
        pos.complete();
        self.notifier.wake([session.user_id.as_str()], p);
        Ok(())
    }

    /// `POST /rooms/{roomId}/unpeek`: 400 if the device was not peeking.
    pub async fn unpeek(&self, session: &Session, room_id: &str) -> Result<()> {
        self.rooms.state(room_id).await?;
        if !self.is_peeking(session, room_id) {
            return Err(MatrixError::invalid_param("You are not peeking this room"));
        }
        self.end(session, room_id).await
    }

    async fn end(&self, session: &Session, room_id: &str) -> Result<()> {
        self.store.delete_peek(&session.user_id, &session.device_id, room_id).await?;
        if self.remove_local(&session.user_id, &session.device_id, room_id) {
            let pos = self.stream.allocate();
            self.record_ended(session, room_id, pos.pos);
            let p = pos.pos;
            pos.complete();
            self.notifier.wake([session.user_id.as_str()], p);
        }
        Ok(())
    }

    /// The peek ended (reported in `rooms.leave` of syncs whose range covers `pos`).
    fn record_ended(&self, session: &Session, room_id: &str, pos: i64) {
        let mut ended = self.ended.entry((session.user_id.clone(), session.device_id.clone())).or_default();
        ended.retain(|(r, _)| r != room_id);
        ended.push((room_id.to_owned(), pos));
        if ended.len() > 256 {
            ended.remove(0);
        }
    }

    /// Logout: the device's peeks end with it.
    pub async fn end_device(&self, session: &Session) -> Result<()> {
        self.store.delete_device_peeks(&session.user_id, &session.device_id).await?;
        let key = (session.user_id.clone(), session.device_id.clone());
        let rooms: Vec<String> = self.by_device.get(&key).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        for r in rooms {
            self.remove_local(&session.user_id, &session.device_id, &r);
        }
        self.by_device.remove(&key);
        self.ended.remove(&key);
        Ok(())
    }

    fn room_block(
        events: &[(i64, Pdu)],
        state: Option<&RoomState>,
        limited: bool,
        first_pos: i64,
        now: i64,
        viewer: (&str, &str),
    ) -> Value {
        let in_timeline: std::collections::HashSet<&str> = events.iter().map(|(_, e)| e.event_id.as_str()).collect();
        let state_events: Vec<Value> = state
            .map(|s| {
                s.iter()
                    .filter(|e| !in_timeline.contains(e.event_id.as_str()))
                    .map(|e| e.to_client(now, Some(viewer)))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "timeline": {
                "events": events.iter().map(|(_, e)| e.to_client(now, Some(viewer))).collect::<Vec<_>>(),
                "limited": limited,
                "prev_batch": token::pagination_token(first_pos - 1),
            },
            "state": {"events": state_events},
            "ephemeral": {"events": []},
            "account_data": {"events": []},
        })
    }
}

impl RoomObserver for Peeks {
    fn watchers(&self, room_id: &str) -> Vec<String> {
        self.by_room.get(room_id).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    fn on_event(&self, _pdu: &Arc<Pdu>, _state: &Arc<RoomState>, _pos: i64) {}
}

#[async_trait::async_trait]
impl SyncSource for Peeks {
    async fn contribute(
        &self,
        session: &Session,
        since: Option<i64>,
        upto: i64,
        filter: &SyncFilter,
        out: &mut Map<String, Value>,
    ) -> Result<bool> {
        let key = (session.user_id.clone(), session.device_id.clone());
        let peeked: Vec<(String, i64)> =
            self.by_device.get(&key).map(|m| m.iter().map(|(r, p)| (r.clone(), *p)).collect()).unwrap_or_default();
        let now = now_ms();
        let viewer = (session.user_id.as_str(), session.device_id.as_str());
        let limit = filter.timeline_limit();
        let mut peek = Map::new();
        for (room_id, started) in peeked {
            if started > upto {
                continue;
            }
            // Permission is checked at delivery: losing it (e.g. leaving the last shared room)
            // ends the peek before anything else is sent.
            if !self.can_peek(&session.user_id, &room_id).await? {
                // Reported in this very response, as ending at `upto`.
                self.store.delete_peek(&session.user_id, &session.device_id, &room_id).await?;
                self.remove_local(&session.user_id, &session.device_id, &room_id);
                self.record_ended(session, &room_id, upto);
                continue;
            }
            let full = since.is_none_or(|s| started > s);
            let after = if full { 0 } else { since.unwrap_or(0) };
            if !full && self.rooms.last_position(&room_id) <= after {
                continue;
            }
            let crate::rooms::service::Timeline { events, limited, first_pos } =
                self.rooms.timeline(&room_id, after, upto, limit).await?;
            if events.is_empty() && !full {
                continue;
            }
            let state = if full { Some(self.rooms.state(&room_id).await?) } else { None };
            peek.insert(room_id.clone(), Self::room_block(&events, state.as_deref(), limited, first_pos, now, viewer));
        }
        let mut has = !peek.is_empty();
        let ended: Vec<(String, i64)> = self.ended.get(&key).map(|v| v.clone()).unwrap_or_default();
        if let Some(rooms) = out.get_mut("rooms").and_then(Value::as_object_mut) {
            rooms.insert("peek".into(), Value::Object(peek));
            if let Some(leave) = rooms.get_mut("leave").and_then(Value::as_object_mut) {
                for (room, pos) in ended {
                    if since.is_some_and(|s| pos > s) && pos <= upto && !self.is_peeking(session, &room) {
                        leave.insert(room, json!({"timeline": {"events": [], "limited": false}, "state": {"events": []}, "account_data": {"events": []}}));
                        has = true;
                    }
                }
            }
        }
        Ok(has)
    }
}

/// A legacy `/events` long-poll on a room: wakes the user like a peek while it lasts.
pub struct RoomWatch {
    peeks: Arc<Peeks>,
    user: String,
    room: String,
}

impl Peeks {
    pub fn watch_room(self: &Arc<Self>, user: &str, room: &str) -> RoomWatch {
        *self.by_room.entry(room.into()).or_default().entry(user.into()).or_default() += 1;
        RoomWatch { peeks: self.clone(), user: user.into(), room: room.into() }
    }
}

impl Drop for RoomWatch {
    fn drop(&mut self) {
        if let Some(mut users) = self.peeks.by_room.get_mut(&self.room) {
            if let Some(n) = users.get_mut(&self.user) {
                *n -= 1;
                if *n == 0 {
                    users.remove(&self.user);
                }
            }
        }
    }
}
