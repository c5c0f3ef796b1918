//! Presence across servers (issue #15; spec server-server "Presence", the `m.presence` EDU
//! `{"push": [{user_id, presence, last_active_ago, currently_active, status_msg}]}`), with
//! seed 004's "API efficiency" rules:
//!
//! - **Out, batched.** The engine hands every public change of a local user to the
//!   [`FederationOutbox`] (a set: a user who changes five times in a window is sent once, as
//!   they are at the flush). Every `presence_flush_ms` the window is flushed: each user goes
//!   to the servers of everyone allowed to see them ([`PresenceAccess::viewers_of`]: shared
//!   rooms, presence-list grants) and to any extra destinations ([`PresenceFederation::set_extra_destinations`],
//!   e.g. servers peeking the user's profile room), and each destination gets **one**
//!   `m.presence` EDU for the window (split only past [`MAX_PUSH_PER_EDU`] users), which the
//!   outgoing queue puts in one transaction.
//! - **Hidden users** are sent as the public view has them: `offline`, without status text or
//!   last-active time. `busy` is sent as MSC3026's `org.matrix.msc3026.busy` (what Synapse
//!   sends for busy), and the device kinds as `org.matrix.msc3032.device_kinds`.
//! - **In.** Each `push` entry must name a user of the sending server (others are dropped),
//!   at most [`MAX_PUSH_ENTRIES`] are read, and only users some local user may see are kept
//!   (engine `remote.rs`), with the same permission model as local users.
//! - **Watchdogs.** A local user who is not offline is announced again every
//!   `presence_reannounce_ms` (a deadline per user, so the re-announcements spread over the
//!   period as the users' changes did); a remote user not refreshed within
//!   `presence_remote_timeout_ms` decays to `offline` (engine `remote.rs`). A destination that
//!   comes back (its transactions got through again after failures, or it speaks to us after
//!   a silence of more than `presence_reannounce_ms`) gets a full refresh: every local user it
//!   may see who is not offline.
//! - **New room-mates.** When a server's user joins a room, the local members of that room
//!   are sent to it; when a local user joins, they are sent to the room's other servers (as
//!   Synapse does), so nobody waits for the next change.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::access::PresenceAccess;
use super::engine::RemotePresenceUpdate;
use super::legacy::presence_content;
use super::policy::LegacyBusy;
use super::{DeviceKind, Presence, PresenceEngine};
use crate::federation::Federation;
use crate::ground::{Clock, Timer, Workers};
use crate::metrics::Metrics;
use crate::rooms::Rooms;

/// Users per outgoing `m.presence` EDU; a larger window is split (each entry is ~150 bytes, so
/// an EDU stays far below the ~1 MiB a transaction may carry).
pub const MAX_PUSH_PER_EDU: usize = 500;
/// `push` entries read from one incoming EDU; the rest are ignored.
pub const MAX_PUSH_ENTRIES: usize = 1000;
/// Longest status text accepted from another server (the local limit).
const MAX_STATUS_MSG_BYTES: usize = 2048;
/// Largest `last_active_ago` taken as given (about a year); larger ones are clamped.
const MAX_LAST_ACTIVE_AGO_MS: i64 = 365 * 24 * 3_600_000;

/// Extra destinations for a user's presence beyond shared rooms and grants (servers peeking
/// the user's profile room, MSC2444).
pub type ExtraDestinations = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// What the next flush has to send.
#[derive(Default)]
struct Pending {
    /// Local users whose public presence changed (or is due for re-announcement).
    users: HashSet<String>,
    /// (room, user) joins since the last flush.
    joins: Vec<(String, String)>,
    /// Destinations owed a full refresh.
    refresh: HashSet<String>,
}

/// The window being gathered; filled by the engine (changes), the rooms (joins) and the
/// transport (a destination back).
#[derive(Default)]
pub struct FederationOutbox {
    pending: Mutex<Pending>,
    wake: Notify,
}

/// Joins remembered per window at most (a remote room's full state arrives as joins).
const MAX_PENDING_JOINS: usize = 10_000;

impl FederationOutbox {
    /// A local user's public presence changed.
    pub fn changed(&self, user_id: &str) {
        self.pending.lock().users.insert(user_id.to_owned());
        self.wake.notify_one();
    }

    /// `user_id` joined `room_id` (local or remote user).
    pub fn joined(&self, room_id: &str, user_id: &str) {
        let mut p = self.pending.lock();
        if p.joins.len() < MAX_PENDING_JOINS {
            p.joins.push((room_id.to_owned(), user_id.to_owned()));
        }
        drop(p);
        self.wake.notify_one();
    }

    fn refresh(&self, destination: &str) {
        self.pending.lock().refresh.insert(destination.to_owned());
        self.wake.notify_one();
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock())
    }
}

pub struct PresenceFederation {
    engine: Arc<PresenceEngine>,
    access: Arc<PresenceAccess>,
    rooms: Arc<Rooms>,
    federation: Arc<Federation>,
    server_name: String,
    outbox: Arc<FederationOutbox>,
    flush: Duration,
    reannounce_ms: i64,
    /// Local users who are not offline -> when they are announced again.
    reannounce: Arc<Timer<String>>,
    /// Local users last sent as something other than offline (for a full refresh).
    present: Mutex<HashSet<String>>,
    /// When each server last sent us a transaction.
    last_heard: DashMap<String, i64>,
    extra: RwLock<Option<ExtraDestinations>>,
    /// Called with a server that speaks to us after a silence (see [`Self::on_silence_ended`]).
    silence_hooks: RwLock<Vec<PeerHook>>,
    metrics: Arc<Metrics>,
}

/// A hook called with a server's name.
pub type PeerHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Servers remembered in `last_heard` at most; past it the table starts over (every server
/// then counts as silent once, i.e. gets one refresh).
const MAX_HEARD: usize = 100_000;

impl PresenceFederation {
    pub fn new(
        engine: Arc<PresenceEngine>,
        rooms: Arc<Rooms>,
        federation: Arc<Federation>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let cfg = &federation.config;
        engine.set_remote_timeout_ms(cfg.presence_remote_timeout_ms);
        let outbox = Arc::new(FederationOutbox::default());
        let this = Arc::new(Self {
            access: engine.access.clone(),
            server_name: federation.server_name.to_string(),
            flush: Duration::from_millis(cfg.presence_flush_ms.max(1)),
            reannounce_ms: cfg.presence_reannounce_ms.max(1),
            reannounce: Timer::new(Clock::system()),
            present: Mutex::default(),
            last_heard: DashMap::new(),
            extra: RwLock::new(None),
            silence_hooks: RwLock::default(),
            engine,
            rooms,
            federation,
            outbox,
            metrics,
        });
        // `untracked` and `disabled` send nobody anyone's presence, other servers included.
        if this.federation.enabled() && this.engine.mode() == super::policy::PresenceMode::Enabled {
            this.engine.attach_federation_outbox(this.outbox.clone());
            let outbox = this.outbox.clone();
            this.federation.on_peer_back(Arc::new(move |server| outbox.refresh(server)));
        }
        this
    }

    /// The hook the peek module fills: servers that must get `user`'s presence besides those
    /// sharing a room or holding a grant.
    pub fn set_extra_destinations(&self, f: ExtraDestinations) {
        *self.extra.write() = Some(f);
    }

    /// A remote server was newly allowed to see local `user` (a presence-list grant): the
    /// user's presence goes with the next flush, as after a change (nothing when presence or
    /// federation is off).
    pub fn grant_added(&self, user: &str) {
        if self.federation.enabled() && self.engine.mode() == super::policy::PresenceMode::Enabled {
            self.outbox.changed(user);
        }
    }

    /// `hook` is called with every server that sends us a transaction after a silence of more
    /// than `presence_reannounce_ms` (or for the first time since we started): it may have
    /// restarted and lost what we queued for it, or we may have.
    pub fn on_silence_ended(&self, hook: PeerHook) {
        self.silence_hooks.write().push(hook);
    }

    /// Where room joins are reported (`Rooms` calls it after a membership event).
    pub fn outbox(&self) -> Arc<FederationOutbox> {
        self.outbox.clone()
    }

    /// Run the flush loop and the re-announcement timer (nothing with federation off).
    pub fn start(self: &Arc<Self>, workers: &Workers) {
        if !self.federation.enabled() {
            return;
        }
        let this = self.clone();
        let timer = self.reannounce.spawn(workers.signal(), move |due, _now| {
            let this = this.clone();
            async move {
                let mut p = this.outbox.pending.lock();
                p.users.extend(due);
                drop(p);
                this.outbox.wake.notify_one();
            }
        });
        workers.track("presence re-announcement", timer);
        let this = self.clone();
        let mut shutdown = workers.signal();
        workers.spawn("presence federation flush", async move {
            loop {
                tokio::select! {
                    _ = this.outbox.wake.notified() => {}
                    _ = shutdown.changed() => break,
                }
                // The window: whatever else changes meanwhile goes out together.
                tokio::select! {
                    _ = tokio::time::sleep(this.flush) => {}
                    _ = shutdown.changed() => break,
                }
                this.flush_window().await;
            }
        });
    }

    /// Send one window: one `m.presence` EDU per destination.
    pub async fn flush_window(&self) {
        let pending = self.outbox.take();
        let mut out: HashMap<String, HashSet<String>> = HashMap::new();
        for user in &pending.users {
            for d in self.destinations_of(user).await {
                out.entry(d).or_default().insert(user.clone());
            }
        }
        for (room, user) in &pending.joins {
            self.add_join(room, user, &mut out).await;
        }
        if !pending.refresh.is_empty() {
            self.metrics.federation.presence_refreshes.inc_by(pending.refresh.len() as u64);
            let present: Vec<String> = self.present.lock().iter().cloned().collect();
            for user in present {
                for d in self.destinations_of(&user).await {
                    if pending.refresh.contains(&d) {
                        out.entry(d).or_default().insert(user.clone());
                    }
                }
            }
        }
        let now = self.engine.now_ms();
        let mut entries: HashMap<String, Value> = HashMap::new();
        for users in out.values() {
            for u in users {
                if !entries.contains_key(u) {
                    entries.insert(u.clone(), self.push_entry(u, now));
                }
            }
        }
        for user in pending.users.iter().chain(entries.keys()) {
            self.note_sent(user);
        }
        for (dest, users) in out {
            let mut users: Vec<&String> = users.iter().collect();
            users.sort();
            for chunk in users.chunks(MAX_PUSH_PER_EDU) {
                let push: Vec<Value> = chunk.iter().filter_map(|u| entries.get(*u).cloned()).collect();
                let content = json!({ "push": push });
                let m = &self.metrics.federation;
                m.presence_edus.inc();
                m.presence_updates_sent.inc_by(push.len() as u64);
                m.presence_bytes_sent.inc_by(content.to_string().len() as u64);
                self.federation.send_edu(&dest, "m.presence", content);
            }
        }
    }

    /// Remember whether `user` is to be re-announced (not offline) or not.
    fn note_sent(&self, user: &str) {
        if self.engine.publicly_present(user) {
            let due = self.engine.now_ms().saturating_add(self.reannounce_ms);
            self.reannounce.schedule(user.to_owned(), due);
            self.present.lock().insert(user.to_owned());
        } else {
            self.reannounce.cancel(&user.to_owned());
            self.present.lock().remove(user);
        }
    }

    /// The `push` entry of a local user as others see them now.
    fn push_entry(&self, user: &str, now: i64) -> Value {
        let snapshot = self.engine.snapshot(user, "");
        let mut c = presence_content(&snapshot, now, LegacyBusy::Msc3026);
        c["user_id"] = json!(user);
        c
    }

    /// The other servers that may see `user`: the servers of their viewers, and the extra
    /// destinations hook. Only local users are sent.
    async fn destinations_of(&self, user: &str) -> Vec<String> {
        if server_of(user) != Some(self.server_name.as_str()) {
            return Vec::new();
        }
        let mut servers: HashSet<String> = match self.access.viewers_of(user).await {
            Ok(viewers) => viewers.iter().filter_map(|v| server_of(v)).map(str::to_owned).collect(),
            Err(e) => {
                tracing::warn!(error = %e, user, "could not find who sees a user; presence not sent");
                HashSet::new()
            }
        };
        if let Some(extra) = self.extra.read().clone() {
            servers.extend(extra(user));
        }
        servers.remove(&self.server_name);
        servers.into_iter().collect()
    }

    /// A join: a remote user's server gets the room's local members; a local user goes to the
    /// room's other servers.
    async fn add_join(&self, room: &str, user: &str, out: &mut HashMap<String, HashSet<String>>) {
        let Some(server) = server_of(user) else { return };
        if server == self.server_name {
            for d in self.rooms.servers_in_room(room).await {
                if self.may_see(&d, user).await {
                    out.entry(d).or_default().insert(user.to_owned());
                }
            }
            return;
        }
        let Ok(state) = self.rooms.state(room).await else { return };
        let local: Vec<String> = state
            .members_with(&["join"])
            .filter(|m| server_of(m) == Some(self.server_name.as_str()))
            .map(str::to_owned)
            .collect();
        for m in local {
            if self.engine.publicly_present(&m) && self.access.can_see(user, &m).await.unwrap_or(false) {
                out.entry(server.to_owned()).or_default().insert(m);
            }
        }
    }

    /// Whether some user of `server` may see `user` (a room over `presence_max_room_members`
    /// grants nothing).
    async fn may_see(&self, server: &str, user: &str) -> bool {
        match self.access.viewers_of(user).await {
            Ok(v) => v.iter().any(|u| server_of(u) == Some(server)),
            Err(_) => false,
        }
    }

    /// A transaction from `origin` arrived: after a silence it gets a full refresh (it may have
    /// restarted and forgotten our users).
    pub fn heard_from(&self, origin: &str) {
        if !self.federation.enabled() {
            return;
        }
        let now = self.engine.now_ms();
        if self.last_heard.len() >= MAX_HEARD {
            self.last_heard.clear();
        }
        let before = self.last_heard.insert(origin.to_owned(), now);
        if before.is_none_or(|t| now - t > self.reannounce_ms) {
            self.outbox.refresh(origin);
            for hook in self.silence_hooks.read().iter() {
                hook(origin);
            }
        }
    }

    /// An `m.presence` EDU from `origin`. Returns why it was ignored as a whole, if it was.
    pub async fn receive(&self, origin: &str, content: &Value) -> std::result::Result<(), String> {
        let push = content.get("push").and_then(Value::as_array).ok_or("no push list")?;
        let m = &self.metrics.federation;
        if push.len() > MAX_PUSH_ENTRIES {
            m.presence_updates_ignored.inc_by((push.len() - MAX_PUSH_ENTRIES) as u64);
            tracing::info!(
                origin,
                entries = push.len(),
                "m.presence EDU over {MAX_PUSH_ENTRIES} entries; rest ignored"
            );
        }
        // The last entry for a user wins.
        let mut updates: BTreeMap<String, RemotePresenceUpdate> = BTreeMap::new();
        let now = self.engine.now_ms();
        for entry in push.iter().take(MAX_PUSH_ENTRIES) {
            match parse_push(origin, entry, now) {
                Ok(u) => {
                    updates.insert(u.user_id.clone(), u);
                }
                Err(why) => {
                    m.presence_updates_ignored.inc();
                    tracing::debug!(origin, %why, "presence update ignored");
                }
            }
        }
        for (user, update) in updates {
            let viewers: HashSet<String> = match self.access.viewers_of(&user).await {
                Ok(v) => {
                    v.iter().filter(|v| server_of(v) == Some(self.server_name.as_str())).map(str::to_owned).collect()
                }
                Err(e) => {
                    tracing::warn!(error = %e, user, "could not find who sees a remote user");
                    continue;
                }
            };
            if viewers.is_empty() {
                m.presence_updates_ignored.inc();
                tracing::debug!(origin, user, "presence of a user nobody here may see ignored");
                continue;
            }
            m.presence_updates_received.inc();
            self.engine.apply_remote(update, &viewers);
        }
        Ok(())
    }
}

/// One `push` entry, checked: a user of `origin`, a known presence value, bounded fields.
fn parse_push(origin: &str, entry: &Value, now: i64) -> std::result::Result<RemotePresenceUpdate, String> {
    let user_id = entry.get("user_id").and_then(Value::as_str).ok_or("no user_id")?;
    let user = ruma::UserId::parse(user_id).map_err(|e| format!("bad user id: {e}"))?;
    if user.server_name().as_str() != origin {
        return Err(format!("{origin} may not speak for {user_id}"));
    }
    let presence = entry.get("presence").and_then(Value::as_str).ok_or("no presence")?;
    let presence: Presence = presence.parse().map_err(|e| format!("{e}"))?;
    let last_active_ts = match entry.get("last_active_ago") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let ago = v.as_i64().filter(|a| *a >= 0).ok_or("bad last_active_ago")?;
            Some(now - ago.min(MAX_LAST_ACTIVE_AGO_MS))
        }
    };
    let currently_active = entry.get("currently_active").and_then(Value::as_bool).unwrap_or(false);
    let status_msg = match entry.get("status_msg") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_STATUS_MSG_BYTES && !s.contains('\0') => Some(s.clone()),
        Some(_) => return Err("bad status_msg".into()),
    };
    let mut active_kinds: Vec<DeviceKind> = entry
        .get("org.matrix.msc3032.device_kinds")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .take(4)
                .filter_map(|k| match k.as_str() {
                    Some("desktop") => Some(DeviceKind::Desktop),
                    Some("mobile") => Some(DeviceKind::Mobile),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    active_kinds.sort();
    active_kinds.dedup();
    Ok(RemotePresenceUpdate {
        user_id: user_id.to_owned(),
        presence,
        last_active_ts,
        currently_active,
        status_msg,
        active_kinds,
    })
}

fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_entries_are_checked() {
        let now = 1_000_000;
        let ok = json!({"user_id": "@bob:b.example", "presence": "org.matrix.msc3026.busy",
            "last_active_ago": 5_000, "currently_active": false, "status_msg": "call",
            "org.matrix.msc3032.device_kinds": ["mobile", "mobile", "toaster"]});
        let u = parse_push("b.example", &ok, now).unwrap();
        assert_eq!(u.presence, Presence::Busy);
        assert_eq!(u.last_active_ts, Some(now - 5_000));
        assert_eq!(u.status_msg.as_deref(), Some("call"));
        assert_eq!(u.active_kinds, vec![DeviceKind::Mobile]);
        // Another server's user, an unknown value, a negative age, an oversized text.
        assert!(parse_push("evil.example", &ok, now).is_err());
        assert!(parse_push("b.example", &json!({"user_id": "@bob:b.example", "presence": "dancing"}), now).is_err());
        assert!(parse_push(
            "b.example",
            &json!({"user_id": "@bob:b.example", "presence": "online", "last_active_ago": -1}),
            now
        )
        .is_err());
        let long = "x".repeat(MAX_STATUS_MSG_BYTES + 1);
        assert!(parse_push(
            "b.example",
            &json!({"user_id": "@bob:b.example", "presence": "online", "status_msg": long}),
            now
        )
        .is_err());
        assert!(parse_push("b.example", &json!({"user_id": "not a user", "presence": "online"}), now).is_err());
    }
}
