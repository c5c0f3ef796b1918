//! Orchestration between domains: what happens when a user is created, a session ends, an
//! event is sent. Handlers call these so the cross-domain rules live in one place.
use std::sync::Arc;

use serde_json::Value;

use crate::accounts::Session;
use crate::api::client::presence::MAX_STATUS_MSG_BYTES;
use crate::app::Services;
use crate::error::{MatrixError, Result};
use crate::profile::privacy::{validate_presence_visibility, PRESENCE_VISIBILITY_EVENT};
use crate::profile::{member_join_content, ProfileChange, PRESENCE_EVENT, PROFILE_ROOM_ID_FIELD, STATUS_EVENT};
use crate::rooms::create::{initial_events, CreateRoomSpec};
use crate::rooms::{NewEvent, Pdu, ROOM_VERSION};

/// Which profile field a request changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    DisplayName,
    AvatarUrl,
}

impl Services {
    pub async fn create_room(&self, creator: &str, spec: &CreateRoomSpec) -> Result<String> {
        let mut events = initial_events(creator, spec, ROOM_VERSION)?;
        // The creator's join carries their display name and avatar like every other join.
        if let Some(user) = self.store.get_user(creator).await? {
            for ev in events.iter_mut().filter(|e| e.kind == "m.room.member" && e.state_key.as_deref() == Some(creator))
            {
                ev.content = member_join_content(&user.displayname, &user.avatar_url);
            }
        }
        self.rooms.create_with_events(creator, spec.room_type(), events).await
    }

    /// A user-initiated event (message or state); sending is a pro-active event (seed 000).
    ///
    /// In a profile room `m.presence` is server-owned: a user may not send it (MSC3032's open
    /// question, answered "no"). The owner may set `m.status` directly; the status message
    /// of the presence engine follows it.
    pub async fn send_event(&self, session: &Session, room_id: &str, ev: NewEvent) -> Result<Arc<Pdu>> {
        let profile_owner = self.profiles.owner_of(room_id);
        if profile_owner.is_some() && ev.kind == PRESENCE_EVENT {
            return Err(MatrixError::forbidden("m.presence in a profile room is published by the server"));
        }
        if profile_owner.is_some() && ev.kind == PRESENCE_VISIBILITY_EVENT {
            validate_presence_visibility(ev.state_key.as_deref(), &ev.content)?;
        }
        let is_status = profile_owner.as_deref() == Some(session.user_id.as_str())
            && ev.kind == STATUS_EVENT
            && ev.state_key.as_deref() == Some("");
        let status = ev.content.get("status").and_then(Value::as_str).map(str::to_owned);
        if is_status && status.as_ref().is_some_and(|m| m.len() > MAX_STATUS_MSG_BYTES) {
            return Err(MatrixError::invalid_param("status is too long"));
        }
        let mut ev = ev;
        if is_status && self.presence.snapshot(&session.user_id, "").presence.hidden {
            // Hidden: the text goes to the engine (the owner's own view) but never into the
            // room, which holds what others may see; unhiding publishes it then.
            ev.content = serde_json::json!({});
        }
        let pdu = self.rooms.send(room_id, &session.user_id, ev).await?;
        self.relations.record(&pdu).await?;
        if is_status {
            // Durable before the answer; if we crash between the room event and this write,
            // the engine wins at startup and the room is set back (msc/README.md §2).
            self.presence.set_status_msg(session, status).await?;
        }
        self.presence.activity(session).await;
        Ok(pdu)
    }

    /// Members, peekers allowed by the room's rules, and anyone for world-readable rooms may
    /// read a room's current state.
    pub async fn check_can_read_state(&self, room_id: &str, user_id: &str) -> Result<()> {
        if self.peeks.can_peek(user_id, room_id).await? {
            return Ok(());
        }
        Err(MatrixError::forbidden("You are not a member of this room"))
    }

    /// Up to which stream position `user_id` may read a room's history: members (and former
    /// members up to their leave), and anyone allowed to peek the room.
    pub async fn readable_upto(&self, room_id: &str, user_id: &str) -> Result<i64> {
        match self.rooms.visible_upto(room_id, user_id).await {
            Err(MatrixError::Forbidden(_)) if self.peeks.can_peek(user_id, room_id).await? => Ok(i64::MAX),
            other => other,
        }
    }

    /// A new account gets its profile room at once (MSC1769).
    pub async fn on_user_created(&self, user_id: &str) -> Result<()> {
        self.ensure_profile_room(user_id).await.map(|_| ())
    }

    /// The user's profile room, created on first use for accounts older than profile rooms.
    pub async fn ensure_profile_room(&self, user_id: &str) -> Result<String> {
        if let Some(room) = self.profiles.room_of(user_id) {
            return Ok(room);
        }
        let snapshot = self.presence.snapshot(user_id, "");
        self.profiles.ensure(user_id, &snapshot, snapshot.status_msg.as_deref()).await
    }

    /// Logout of one device: its tokens go, and so do its presence and peeks.
    pub async fn end_session(&self, session: &Session) -> Result<()> {
        self.accounts.delete_device(session).await?;
        self.presence.remove_device(session).await;
        self.peeks.end_device(session).await?;
        self.e2ee.device_removed(session).await?;
        Ok(())
    }

    /// `GET /profile/{userId}` names the profile room (MSC1769, unstable field).
    pub async fn decorate_profile(&self, user_id: &str, body: &mut Value) -> Result<()> {
        let room = self.ensure_profile_room(user_id).await?;
        body[PROFILE_ROOM_ID_FIELD] = Value::String(room);
        Ok(())
    }

    /// Display name or avatar changed: update the member events in every joined room, and the
    /// one field that changed in the profile room.
    pub async fn on_profile_changed(&self, user_id: &str, field: ProfileField) -> Result<()> {
        self.accounts.forget_profile(user_id);
        let user = self.store.get_user(user_id).await?.ok_or_else(|| MatrixError::not_found("no such user"))?;
        for (room_id, membership, _) in self.store.rooms_for_user(user_id).await? {
            if membership != "join" {
                continue;
            }
            let state = self.rooms.state(&room_id).await?;
            let Some(current) = state.get("m.room.member", user_id) else {
                continue;
            };
            let mut content = current.content.clone();
            content["displayname"] = user.displayname.clone().map(Value::String).unwrap_or(Value::Null);
            content["avatar_url"] = user.avatar_url.clone().map(Value::String).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut content {
                m.retain(|_, v| !v.is_null());
            }
            if content != current.content {
                self.rooms.send(&room_id, user_id, NewEvent::state("m.room.member", user_id, content)).await?;
            }
        }
        let change = match field {
            ProfileField::DisplayName => ProfileChange::DisplayName(user.displayname.as_deref()),
            ProfileField::AvatarUrl => ProfileChange::Avatar(user.avatar_url.as_deref()),
        };
        self.profiles.update_profile(user_id, change).await?;
        // Legacy `m.presence` events carry the display name and avatar (seed 000).
        self.presence.republish(user_id).await;
        Ok(())
    }
}
