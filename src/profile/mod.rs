//! Profile rooms (MSC1769) that carry presence (MSC3032).
//!
//! Every local user has one: an ordinary room with a type, owned by the user (the only member
//! with power to change state), holding `m.room.name`/`m.room.avatar` and `m.profile` (display
//! name and avatar), `m.status` (the status text that replaces `status_msg`) and the
//! server-owned `m.presence` (the effective presence as others see it). The server writes
//! `m.presence` as the owner, coalescing changes within a short window.
pub mod privacy;
pub mod retention;
mod user;

pub use user::{UserProfile, VettedEvent};

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use serde_json::{json, Value};

use crate::accounts::Accounts;
use crate::error::{MatrixError, Result};
use crate::metrics::Metrics;
use crate::presence::access::PresenceAccess;
use crate::presence::outbox::PublicChanges;
use crate::presence::{PresenceEngine, PresenceSnapshot};
use crate::rooms::{member_join_content, NewEvent, RoomClaims, Rooms, ROOM_VERSION};
use crate::store::Store;

mod reconcile;

/// MSC1769 room type, unstable prefix.
pub(crate) const PROFILE_ROOM_TYPE: &str = "org.matrix.msc1769.profile";
/// Field of `GET /profile/{userId}` naming the profile room (unstable prefix).
pub(crate) const PROFILE_ROOM_ID_FIELD: &str = "org.matrix.msc1769.profile_room_id";
/// MSC3032 state events (state key `""`).
pub(crate) const PRESENCE_EVENT: &str = "m.presence";
pub(crate) const STATUS_EVENT: &str = "m.status";
/// MSC1769 vCard-style profile event.
pub(crate) const PROFILE_EVENT: &str = "m.profile";
/// Our unstable field carrying which kinds of device are active (seed 004).
pub(crate) const DEVICE_KINDS_FIELD: &str = "org.matrix.msc3032.device_kinds";

/// The owner of a profile room as its state says: the creator of a room whose
/// `m.room.create` has the profile room type (MSC1769). This is how a profile room of another
/// server is recognised (ours are also in `ProfileRooms::owner_of`).
pub(crate) fn owner_in_state(state: &crate::rooms::RoomState) -> Option<&str> {
    let create = state.get("m.room.create", "")?;
    (create.content.get("type").and_then(Value::as_str) == Some(PROFILE_ROOM_TYPE)).then_some(create.sender.as_str())
}

/// MSC1769's default alias for a user's profile room: `#@alice:server`.
pub(crate) fn profile_alias(user_id: &str) -> String {
    let (local, server) = user_id.trim_start_matches('@').split_once(':').unwrap_or((user_id, ""));
    format!("#@{local}:{server}")
}

/// MSC1769's fallback alias where `@` is not allowed in aliases.
pub(crate) fn profile_fallback_alias(user_id: &str) -> String {
    let (local, server) = user_id.trim_start_matches('@').split_once(':').unwrap_or((user_id, ""));
    format!("#_profile_{local}:{server}")
}

/// The alias namespaces MSC1769 gives profile rooms (`#@alice:server`, `#_profile_alice:server`)
/// belong to the server: users may not create or delete aliases there (issue 10, defect 4).
pub(crate) fn is_reserved_alias(alias: &str) -> bool {
    let local = alias.strip_prefix('#').unwrap_or(alias);
    local.starts_with('@') || local.starts_with("_profile_")
}

/// `m.presence` state content: absolute `last_active_ts`, since state is not relative.
pub(crate) fn presence_state_content(s: &PresenceSnapshot) -> Value {
    let mut c = json!({
        "presence": s.presence.presence.as_str(),
        "currently_active": s.presence.currently_active,
    });
    if let Some(ts) = s.presence.last_active_ts {
        c["last_active_ts"] = json!(ts);
    }
    if !s.presence.active_kinds.is_empty() {
        c[DEVICE_KINDS_FIELD] = json!(s.presence.active_kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>());
    }
    c
}

/// The server-owned fields of `m.profile` (vCard `FN` and `PHOTO`, MSC1769).
pub(crate) const PROFILE_NAME_FIELD: &str = "fn";
pub(crate) const PROFILE_PHOTO_FIELD: &str = "photo";

/// Which profile field a `PUT /profile/{userId}/…` changed, with its new value.
#[derive(Debug, Clone, Copy)]
pub enum ProfileChange<'a> {
    DisplayName(Option<&'a str>),
    Avatar(Option<&'a str>),
}

/// A new profile room's `m.profile` content.
pub(crate) fn profile_content(name: &str, avatar_url: Option<&str>) -> Value {
    let mut inner = json!({ PROFILE_NAME_FIELD: name });
    if let Some(a) = avatar_url {
        inner[PROFILE_PHOTO_FIELD] = json!(a);
    }
    json!({ PROFILE_EVENT: inner })
}

/// `content` with only `m.profile.<field>` set to `value` (removed for `None`); every other
/// key, inside `m.profile` or beside it, is kept as the client wrote it.
pub(crate) fn merge_profile_field(mut content: Value, field: &str, value: Option<&str>) -> Value {
    if !content.is_object() {
        content = json!({});
    }
    if !content.get(PROFILE_EVENT).is_some_and(Value::is_object) {
        content[PROFILE_EVENT] = json!({});
    }
    let inner = content[PROFILE_EVENT].as_object_mut().expect("made an object above");
    match value {
        Some(v) => {
            inner.insert(field.to_owned(), json!(v));
        }
        None => {
            inner.remove(field);
        }
    }
    content
}

/// `m.status` state content.
pub(crate) fn status_state_content(status_msg: Option<&str>) -> Value {
    match status_msg {
        Some(m) => json!({ "status": m }),
        None => json!({}),
    }
}

pub struct ProfileRooms {
    rooms: Arc<Rooms>,
    accounts: Arc<Accounts>,
    store: Store,
    by_user: DashMap<String, String>,
    by_room: DashMap<String, String>,
    creating: tokio::sync::Mutex<()>,
    /// Public presence changes from the engine, written into the rooms by [`Self::start`].
    changes: Arc<PublicChanges>,
    window: Duration,
    metrics: Arc<Metrics>,
    /// Who may see whose presence (`privacy`: restricted presence visibility).
    access: Arc<PresenceAccess>,
    /// The engine, attached once built (it is built after the profile rooms it publishes to);
    /// `privacy` asks it whether an owner is hidden.
    presence: OnceLock<Arc<PresenceEngine>>,
}

impl ProfileRooms {
    pub(crate) async fn new(
        rooms: Arc<Rooms>,
        accounts: Arc<Accounts>,
        store: Store,
        window: Duration,
        metrics: Arc<Metrics>,
        access: Arc<PresenceAccess>,
        changes: Arc<PublicChanges>,
    ) -> anyhow::Result<Arc<Self>> {
        let this = Self {
            rooms,
            accounts,
            store,
            by_user: DashMap::new(),
            by_room: DashMap::new(),
            creating: tokio::sync::Mutex::new(()),
            changes,
            window,
            metrics,
            access,
            presence: OnceLock::new(),
        };
        for (user, room) in this.store.all_profile_rooms().await? {
            this.by_room.insert(room.clone(), user.clone());
            this.by_user.insert(user, room);
        }
        Ok(Arc::new(this))
    }

    pub(crate) fn attach_presence(&self, engine: Arc<PresenceEngine>) {
        let _ = self.presence.set(engine);
    }

    fn engine(&self) -> Result<&Arc<PresenceEngine>> {
        self.presence.get().ok_or_else(|| MatrixError::Internal(anyhow::anyhow!("presence engine not attached yet")))
    }

    /// The owner of `room_id` if it is a profile room.
    pub(crate) fn owner_of(&self, room_id: &str) -> Option<String> {
        self.by_room.get(room_id).map(|u| u.clone())
    }

    pub(crate) fn room_of(&self, user_id: &str) -> Option<String> {
        self.by_user.get(user_id).map(|r| r.clone())
    }

    /// The user's profile room, created on first use for users who existed before.
    pub(crate) async fn ensure(
        &self,
        user_id: &str,
        initial: &PresenceSnapshot,
        status_msg: Option<&str>,
    ) -> Result<String> {
        if let Some(r) = self.room_of(user_id) {
            return Ok(r);
        }
        let _guard = self.creating.lock().await;
        if let Some(r) = self.room_of(user_id) {
            return Ok(r);
        }
        let user = self.accounts.user(user_id).await?.ok_or_else(|| MatrixError::not_found("Unknown user"))?;
        let name = user.displayname.clone().unwrap_or_else(|| user_id.to_owned());
        let mut events = vec![
            NewEvent::state(
                "m.room.create",
                "",
                json!({"creator": user_id, "room_version": ROOM_VERSION, "type": PROFILE_ROOM_TYPE}),
            ),
            NewEvent::state("m.room.member", user_id, member_join_content(&user.displayname, &user.avatar_url)),
            // Only the owner changes state; `m.presence` is written by the server as the owner.
            NewEvent::state(
                "m.room.power_levels",
                "",
                json!({
                    "users": {user_id: 100}, "users_default": 0, "events_default": 100, "state_default": 100,
                    "ban": 100, "kick": 100, "redact": 100, "invite": 100, "events": {}
                }),
            ),
            NewEvent::state("m.room.join_rules", "", json!({"join_rule": "invite"})),
            // Private by default: the owner makes the profile public by switching this to
            // `world_readable`; otherwise only the people allowed to see presence may peek.
            NewEvent::state("m.room.history_visibility", "", json!({"history_visibility": "shared"})),
            NewEvent::state("m.room.guest_access", "", json!({"guest_access": "forbidden"})),
            NewEvent::state("m.room.name", "", json!({"name": name})),
            NewEvent::state(PROFILE_EVENT, "", profile_content(&name, user.avatar_url.as_deref())),
        ];
        if let Some(a) = &user.avatar_url {
            events.push(NewEvent::state("m.room.avatar", "", json!({"url": a})));
        }
        events.push(NewEvent::state(PRESENCE_EVENT, "", presence_state_content(initial)));
        events.push(NewEvent::state(STATUS_EVENT, "", status_state_content(status_msg)));
        // The room, its row and its aliases in one transaction. An alias taken before the
        // namespace was reserved (a squatter) is reclaimed: the server's claim wins.
        let claims = RoomClaims {
            aliases: vec![profile_alias(user_id), profile_fallback_alias(user_id)],
            reclaim_aliases: true,
            published: false,
            profile_owner: Some(user_id.to_owned()),
        };
        let room_id = self.rooms.create_with_events(user_id, Some(PROFILE_ROOM_TYPE), events, claims).await?;
        self.by_room.insert(room_id.clone(), user_id.to_owned());
        self.by_user.insert(user_id.to_owned(), room_id.clone());
        Ok(room_id)
    }

    /// Display name or avatar changed: mirror the one field that changed into the profile
    /// room (`m.room.name` + `m.profile.fn`, or `m.room.avatar` + `m.profile.photo`). Every
    /// other field of `m.profile` (anything a client wrote there) is kept (MSC1769).
    pub(crate) async fn update_profile(&self, user_id: &str, change: ProfileChange<'_>) -> Result<()> {
        let Some(room) = self.room_of(user_id) else { return Ok(()) };
        let state = self.rooms.state(&room).await?;
        let current_profile = state.get(PROFILE_EVENT, "").map(|e| e.content.clone());
        let (room_event, field, value) = match change {
            ProfileChange::DisplayName(name) => {
                let name = name.unwrap_or(user_id);
                ("m.room.name", PROFILE_NAME_FIELD, Some(name))
            }
            ProfileChange::Avatar(url) => ("m.room.avatar", PROFILE_PHOTO_FIELD, url),
        };
        let room_content = match (room_event, value) {
            ("m.room.name", Some(n)) => json!({"name": n}),
            (_, Some(url)) => json!({"url": url}),
            (_, None) => json!({}),
        };
        let wanted = [
            (room_event, room_content),
            (PROFILE_EVENT, merge_profile_field(current_profile.clone().unwrap_or(json!({})), field, value)),
        ];
        for (kind, content) in wanted {
            let current = state.get(kind, "").map(|e| e.content.clone());
            if current.as_ref() != Some(&content) && !(current.is_none() && content == json!({})) {
                self.rooms.send_as_server(&room, user_id, NewEvent::state(kind, "", content)).await?;
            }
        }
        Ok(())
    }

    /// Run the publisher: changes are coalesced within `window`, and only what differs from
    /// the room's current state is written, so a flapping device cannot write hundreds of
    /// events and the last change is always published.
    pub(crate) fn start(self: &Arc<Self>, workers: &crate::ground::Workers) {
        let this = self.clone();
        let mut shutdown = workers.signal();
        workers.spawn("profile-room publisher", async move {
            loop {
                tokio::select! {
                    _ = this.changes.notified() => {}
                    _ = shutdown.changed() => { this.publish_pending().await; break; }
                }
                tokio::time::sleep(this.window).await;
                this.publish_pending().await;
            }
        });
    }

    /// Users whose profile-room write waits for the publish window (a queue-lag gauge).
    pub(crate) fn pending_len(&self) -> usize {
        self.changes.len()
    }

    pub(crate) async fn publish_pending(&self) {
        let batch: Vec<PresenceSnapshot> = self.changes.take();
        if batch.is_empty() {
            return;
        }
        let mut items = Vec::with_capacity(batch.len() * 2);
        for snap in &batch {
            match self.changes_for(snap).await {
                Ok(mut events) => items.append(&mut events),
                Err(e) => {
                    tracing::warn!(user = %snap.user_id, error = %e, "could not prepare presence for the profile room")
                }
            }
        }
        let n = items.len() as u64;
        // One transaction for the whole batch: the write cost does not grow with the number
        // of users who changed in the window.
        match self.rooms.send_batch_as_server(items).await {
            Ok(()) => Metrics::add(&self.metrics.profile_events_written, n),
            Err(e) => tracing::warn!(error = %e, "could not publish presence to profile rooms"),
        }
    }

    /// The state events a snapshot needs in its profile room: only what differs from the
    /// room's current state. `m.status` comes first, so a client that sees the new
    /// `m.presence` also finds the new status.
    async fn changes_for(&self, snap: &PresenceSnapshot) -> Result<Vec<(String, String, NewEvent)>> {
        let room = self.ensure(&snap.user_id, snap, snap.status_msg.as_deref()).await?;
        let state = self.rooms.state(&room).await?;
        state.preload(&[(STATUS_EVENT, ""), (PRESENCE_EVENT, "")]);
        let mut out = Vec::new();
        let status = status_state_content(snap.status_msg.as_deref());
        if state.get(STATUS_EVENT, "").map(|e| &e.content) != Some(&status) {
            out.push((room.clone(), snap.user_id.clone(), NewEvent::state(STATUS_EVENT, "", status)));
        }
        let presence = presence_state_content(snap);
        if state.get(PRESENCE_EVENT, "").map(|e| &e.content) != Some(&presence) {
            out.push((room, snap.user_id.clone(), NewEvent::state(PRESENCE_EVENT, "", presence)));
        }
        Ok(out)
    }
}
