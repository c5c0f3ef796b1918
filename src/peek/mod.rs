//! Peeking (MSC2753): a device subscribes to a room it has not joined; the room's state and
//! new events come down that device's `/sync` under `rooms.peek`. Who may peek a profile room
//! is the presence permission model (`PresenceAccess`); other rooms must be world-readable.
//!
//! A peek lives until `peek_expiry_ms` after it was last (re)made; peeking again renews it.
//! Expiry is a deadline in one `DeadlineQueue` (O(peeks due) per tick, no scan), and an
//! expired peek is reported like an unpeek: once, under `rooms.leave`.
//!
//! Over federation (MSC2444): `served.rs` lets other servers peek our rooms, `remote.rs`
//! peeks rooms of other servers for our users.
mod legacy;
mod limit;
pub mod remote;
pub mod served;

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;

use crate::accounts::Session;
use crate::error::{MatrixError, Result};
use crate::federation::Federation;
use crate::ground::{Clock, Notifier, StreamHub, Timer};
use crate::presence::access::PresenceAccess;
use crate::profile::ProfileRooms;
use crate::rooms::{now_ms, Rooms};
use crate::store::Store;

type DeviceKey = (String, String);
/// (user, device, room): one peek.
type PeekKey = (String, String, String);

/// How long peeks last and how often a user may start or renew one.
#[derive(Debug, Clone, Copy)]
pub struct PeekConfig {
    pub expiry_ms: i64,
    pub rate_per_second: u32,
    pub rate_burst: u32,
    /// MSC2444: the `renewal_interval` other servers' peeks get (`peek_renewal_interval_ms`).
    pub served_renewal_interval_ms: i64,
    /// MSC2444: most peeks one server may hold on our rooms (`max_peeks_per_server`).
    pub max_peeks_per_server: usize,
}

/// One device's peek into one room.
#[derive(Debug, Clone, Copy)]
struct Peek {
    /// Stream position the peek started at (the first sync after it gets the full state).
    started: i64,
    /// When it ends unless renewed (`peek_expiry_ts`, ms since the epoch).
    expires: i64,
}

pub struct Peeks {
    store: Store,
    rooms: Arc<Rooms>,
    stream: Arc<StreamHub>,
    notifier: Arc<Notifier>,
    profiles: Arc<ProfileRooms>,
    access: Arc<PresenceAccess>,
    config: PeekConfig,
    limiter: limit::UserLimiter,
    /// Device -> peeked room -> the peek.
    by_device: DashMap<DeviceKey, HashMap<String, Peek>>,
    /// Expiry deadlines of every peek; one task sleeps until the earliest.
    expiry: Arc<Timer<PeekKey>>,
    /// Serializes changes to peeks (start, renew, end), which are rare and rate-limited, so
    /// that checking a peek and acting on it is one step.
    writes: tokio::sync::Mutex<()>,
    /// Room -> peeking user -> number of (device) subscriptions, for wake-ups.
    by_room: DashMap<String, HashMap<String, u32>>,
    /// Peeks that ended (unpeek or lost permission) and the position they ended at, reported
    /// once in `rooms.leave` (MSC2753).
    ended: DashMap<DeviceKey, Vec<(String, i64)>>,
    /// Room -> number of device peeks of it (legacy `/events` watches not counted): when it
    /// falls to 0, our federation peek of the room (if any) ends.
    device_counts: DashMap<String, u32>,
    federation: Arc<Federation>,
    /// Other servers' peeks of our rooms (MSC2444, `served.rs`).
    served: served::Served,
    /// Our peeks of other servers' rooms (MSC2444, `remote.rs`).
    remote: remote::Remote,
}

impl Peeks {
    pub async fn new(
        store: Store,
        rooms: Arc<Rooms>,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
        profiles: Arc<ProfileRooms>,
        access: Arc<PresenceAccess>,
        config: PeekConfig,
    ) -> anyhow::Result<Arc<Self>> {
        let config = PeekConfig {
            expiry_ms: config.expiry_ms.max(1),
            served_renewal_interval_ms: config.served_renewal_interval_ms.max(1_000),
            ..config
        };
        let federation = rooms.federation().clone();
        let this = Self {
            store,
            rooms,
            stream,
            notifier,
            profiles,
            access,
            config,
            limiter: limit::UserLimiter::new(config.rate_per_second, config.rate_burst),
            by_device: DashMap::new(),
            by_room: DashMap::new(),
            expiry: Timer::new(Clock::system()),
            writes: tokio::sync::Mutex::new(()),
            ended: DashMap::new(),
            device_counts: DashMap::new(),
            federation,
            served: served::Served::new(),
            remote: remote::Remote::new(),
        };
        let fresh = now_ms() + config.expiry_ms;
        for (user, device, room, pos, expires) in this.store.all_peeks().await? {
            // Rows older than expiry tracking get a full lifetime from now.
            let expires = if expires <= 0 { fresh } else { expires };
            this.add_local(&user, &device, &room, Peek { started: pos, expires });
        }
        this.load_served().await?;
        this.load_remote().await?;
        Ok(Arc::new(this))
    }

    /// Run the expiry timer until shutdown.
    pub fn start(self: &Arc<Self>, workers: &crate::ground::Workers) {
        let this = self.clone();
        let handle = self.expiry.spawn(workers.signal(), move |due, now| {
            let this = this.clone();
            async move {
                for (user, device, room) in due {
                    if let Err(e) = this.expire(&user, &device, &room, now).await {
                        tracing::warn!(%user, %device, %room, error = %e, "could not expire a peek");
                    }
                }
            }
        });
        workers.track("peek expiry", handle);
        let this = self.clone();
        let handle = self.served.expiry.spawn(workers.signal(), move |due, now| {
            let this = this.clone();
            async move {
                for key in due {
                    if let Err(e) = this.expire_served(key, now).await {
                        tracing::warn!(error = %e, "could not expire a peek over federation");
                    }
                }
            }
        });
        workers.track("federation peek expiry", handle);
        let this = self.clone();
        let handle = self.remote.renewals.spawn(workers.signal(), move |due, _| {
            let this = this.clone();
            async move {
                for room in due {
                    if let Err(e) = this.renew_remote(&room).await {
                        tracing::warn!(%room, error = %e, "could not renew a peek over federation");
                    }
                }
            }
        });
        workers.track("federation peek renewal", handle);
    }

    /// A peek's deadline passed: end it unless it was renewed meanwhile.
    async fn expire(&self, user: &str, device: &str, room: &str, now: i64) -> Result<()> {
        self.end_if(user, device, room, |p| p.expires <= now).await.map(|_| ())
    }

    /// The device's peek of `room`, if any.
    fn current(&self, user: &str, device: &str, room: &str) -> Option<Peek> {
        self.by_device.get(&(user.to_owned(), device.to_owned())).and_then(|m| m.get(room).copied())
    }

    fn schedule_expiry(&self, user: &str, device: &str, room: &str, at: i64) {
        self.expiry.schedule((user.to_owned(), device.to_owned(), room.to_owned()), at);
    }

    /// May `viewer` keep receiving `room_id` through `/sync` as a peek? `can_peek`, and the room
    /// is not encrypted (MSC2753/MSC2444: peeking into encrypted rooms is not allowed).
    pub(crate) async fn may_sync_peek(&self, viewer: &str, room_id: &str) -> Result<bool> {
        let state = self.rooms.state(room_id).await?;
        Ok(state.get("m.room.encryption", "").is_none()
            && self.remote_room_readable(room_id).await?
            && self.can_peek(viewer, room_id).await?)
    }

    /// May `viewer` read `room_id` without being joined? Profile rooms: the owner, anyone
    /// allowed to see the owner's presence, or anyone if the owner made it world-readable.
    /// Other rooms: world-readable only (MSC2753).
    pub async fn can_peek(&self, viewer: &str, room_id: &str) -> Result<bool> {
        let state = self.rooms.state(room_id).await?;
        if state.history_visibility() == "world_readable" || state.membership(viewer) == Some("join") {
            return Ok(true);
        }
        match self.profile_owner(room_id, &state) {
            Some(owner) => self.access.can_see(viewer, &owner).await,
            None => Ok(false),
        }
    }

    /// The owner of a profile room: ours from `ProfileRooms`, another server's (peeked over
    /// federation) from its create event — never a room of ours that merely claims the type.
    fn profile_owner(&self, room_id: &str, state: &crate::rooms::RoomState) -> Option<String> {
        if let Some(owner) = self.profiles.owner_of(room_id) {
            return Some(owner);
        }
        let ours = self.federation.server_name.as_str();
        crate::profile::owner_in_state(state)
            .filter(|o| o.split_once(':').map(|(_, s)| s) != Some(ours))
            .map(str::to_owned)
    }

    fn add_local(&self, user: &str, device: &str, room: &str, peek: Peek) {
        let fresh = self.by_device.entry((user.into(), device.into())).or_default().insert(room.into(), peek).is_none();
        if fresh {
            *self.by_room.entry(room.into()).or_default().entry(user.into()).or_default() += 1;
            *self.device_counts.entry(room.into()).or_default() += 1;
        }
        self.schedule_expiry(user, device, room, peek.expires);
    }

    fn remove_local(&self, user: &str, device: &str, room: &str) -> bool {
        let removed = self.by_device.get_mut(&(user.into(), device.into())).and_then(|mut m| m.remove(room)).is_some();
        self.expiry.cancel(&(user.to_owned(), device.to_owned(), room.to_owned()));
        if removed {
            if let Some(mut users) = self.by_room.get_mut(room) {
                if let Some(n) = users.get_mut(user) {
                    *n -= 1;
                    if *n == 0 {
                        users.remove(user);
                    }
                }
            }
            let left = self.device_counts.get_mut(room).map(|mut n| {
                *n = n.saturating_sub(1);
                *n
            });
            if left == Some(0) {
                self.device_counts.remove_if(room, |_, n| *n == 0);
                self.local_peeks_gone(room);
            }
        }
        removed
    }

    /// How many devices peek `room_id`.
    fn local_peek_count(&self, room_id: &str) -> u32 {
        self.device_counts.get(room_id).map(|n| *n).unwrap_or(0)
    }

    /// The device's peeked rooms and the stream position each peek started at.
    pub(crate) fn device_peeks(&self, session: &Session) -> Vec<(String, i64)> {
        let key = (session.user_id.clone(), session.device_id.clone());
        self.by_device.get(&key).map(|m| m.iter().map(|(r, p)| (r.clone(), p.started)).collect()).unwrap_or_default()
    }

    /// The device's ended peeks and the position each ended at (MSC2753 `rooms.leave`).
    pub(crate) fn ended_peeks(&self, session: &Session) -> Vec<(String, i64)> {
        let key = (session.user_id.clone(), session.device_id.clone());
        self.ended.get(&key).map(|v| v.clone()).unwrap_or_default()
    }

    pub fn is_peeking(&self, session: &Session, room_id: &str) -> bool {
        self.by_device
            .get(&(session.user_id.clone(), session.device_id.clone()))
            .is_some_and(|m| m.contains_key(room_id))
    }

    /// `POST /peek/{roomIdOrAlias}` (MSC2753): start a peek, or renew the device's peek of the
    /// room. Returns `peek_expiry_ts`. Rate-limited per user (429); `400 M_BAD_STATE` if the
    /// user is joined; `403` for encrypted rooms and rooms the user may not peek.
    pub async fn peek(&self, session: &Session, room_id: &str) -> Result<i64> {
        self.peek_via(session, room_id, &[]).await
    }

    /// [`Peeks::peek`] of a room that may live on another server: no local user in it, so this
    /// server peeks it over federation first (MSC2444, `remote.rs`) through `via`, then the
    /// room id's server.
    pub async fn peek_via(&self, session: &Session, room_id: &str, via: &[String]) -> Result<i64> {
        self.limiter.check(&session.user_id)?;
        let over_federation = self.federation.enabled() && self.rooms.needs_remote_join(room_id).await?;
        if over_federation {
            self.ensure_remote_peek(room_id, via).await?;
        }
        let expires = match self.peek_known(session, room_id).await {
            Ok(e) => e,
            Err(e) => {
                // Not for this user after all (the peeked server admits our *server*): end our
                // federation peek unless another device holds one.
                if over_federation && self.local_peek_count(room_id) == 0 {
                    self.local_peeks_gone(room_id);
                }
                return Err(e);
            }
        };
        // Our federation peek may have ended between `ensure_remote_peek` and this device's
        // peek counting (its last local peeker left meanwhile): start it again.
        if over_federation && !self.remote_peek_usable(room_id) {
            self.ensure_remote_peek(room_id, via).await?;
        }
        Ok(expires)
    }

    /// The local part of a peek: the room is known here.
    async fn peek_known(&self, session: &Session, room_id: &str) -> Result<i64> {
        let state = self.rooms.state(room_id).await?;
        if state.membership(&session.user_id) == Some("join") {
            return Err(MatrixError::BadState("You are joined to this room; there is nothing to peek".into()));
        }
        if state.get("m.room.encryption", "").is_some() {
            return Err(MatrixError::forbidden("Encrypted rooms cannot be peeked"));
        }
        if !self.can_peek(&session.user_id, room_id).await? {
            return Err(MatrixError::forbidden("You may not peek this room"));
        }
        let _writing = self.writes.lock().await;
        let expires = now_ms() + self.config.expiry_ms;
        let key = (session.user_id.clone(), session.device_id.clone());
        if let Some(peek) = self.current(&session.user_id, &session.device_id, room_id) {
            // Renewal: the same peek goes on (no second full state), only its expiry moves.
            self.store.renew_peek(&session.user_id, &session.device_id, room_id, expires).await?;
            if let Some(mut m) = self.by_device.get_mut(&key) {
                if let Some(p) = m.get_mut(room_id) {
                    p.expires = expires;
                }
            }
            self.schedule_expiry(&session.user_id, &session.device_id, room_id, expires.max(peek.expires));
            return Ok(expires);
        }
        let pos = self.stream.allocate();
        self.store.insert_peek(&session.user_id, &session.device_id, room_id, pos.pos, expires).await?;
        self.add_local(&session.user_id, &session.device_id, room_id, Peek { started: pos.pos, expires });
        if let Some(mut e) = self.ended.get_mut(&key) {
            e.retain(|(r, _)| r != room_id);
        }
        let p = pos.pos;
        pos.complete();
        self.notifier.wake([session.user_id.as_str()], p);
        Ok(expires)
    }

    /// `POST /rooms/{roomId}/unpeek`: `400 M_BAD_STATE` if the room is unknown or the device
    /// was not peeking it (MSC2753).
    pub async fn unpeek(&self, session: &Session, room_id: &str) -> Result<()> {
        match self.rooms.state(room_id).await {
            Err(MatrixError::NotFound(_)) => return Err(MatrixError::BadState("Unknown room".into())),
            other => other?,
        };
        if !self.end_if(&session.user_id, &session.device_id, room_id, |_| true).await? {
            return Err(MatrixError::BadState("You are not peeking this room".into()));
        }
        Ok(())
    }

    /// End the device's peek of `room_id` if it exists and `cond` holds for it, and report it
    /// once under `rooms.leave`. Serialized with other peek writes, so a renewal and an expiry
    /// (or two unpeeks) cannot both act on the same peek. Returns whether it ended.
    async fn end_if(&self, user: &str, device: &str, room_id: &str, cond: impl Fn(&Peek) -> bool) -> Result<bool> {
        let _writing = self.writes.lock().await;
        match self.current(user, device, room_id) {
            None => return Ok(false),
            Some(p) if !cond(&p) => {
                // Renewed meanwhile: its new deadline is (or will be) in the queue.
                self.schedule_expiry(user, device, room_id, p.expires);
                return Ok(false);
            }
            Some(_) => {}
        }
        self.store.delete_peek(user, device, room_id).await?;
        self.remove_local(user, device, room_id);
        let pos = self.stream.allocate();
        self.record_ended(user, device, room_id, pos.pos);
        let p = pos.pos;
        pos.complete();
        self.notifier.wake([user], p);
        Ok(true)
    }

    /// End a peek found out at delivery (joined, or no longer allowed); `report_at`: the
    /// position to report it under `rooms.leave` at, if at all.
    pub(crate) async fn end_at_delivery(&self, session: &Session, room_id: &str, report_at: Option<i64>) -> Result<()> {
        let _writing = self.writes.lock().await;
        self.store.delete_peek(&session.user_id, &session.device_id, room_id).await?;
        if self.remove_local(&session.user_id, &session.device_id, room_id) {
            if let Some(pos) = report_at {
                self.record_ended(&session.user_id, &session.device_id, room_id, pos);
            }
        }
        Ok(())
    }

    /// The peek ended (reported in `rooms.leave` of syncs whose range covers `pos`).
    fn record_ended(&self, user: &str, device: &str, room_id: &str, pos: i64) {
        let mut ended = self.ended.entry((user.to_owned(), device.to_owned())).or_default();
        ended.retain(|(r, _)| r != room_id);
        ended.push((room_id.to_owned(), pos));
        if ended.len() > 256 {
            ended.remove(0);
        }
    }

    /// Logout: the device's peeks end with it.
    pub async fn end_device(&self, session: &Session) -> Result<()> {
        let _writing = self.writes.lock().await;
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
}

impl Peeks {
    /// Who peeks `room_id`: `Rooms` wakes them for its events.
    pub(crate) fn watchers(&self, room_id: &str) -> Vec<String> {
        self.by_room.get(room_id).map(|m| m.keys().cloned().collect()).unwrap_or_default()
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
