//! The profile rules around a user: the profile room every account gets, `PUT /profile`
//! changes reaching every room, and what users may send into profile rooms.
use serde_json::Value;

use super::privacy::{validate_presence_visibility, PRESENCE_VISIBILITY_EVENT};
use super::{ProfileChange, ProfileRooms, PRESENCE_EVENT, STATUS_EVENT};
use crate::accounts::ProfileField;
use crate::api::client::presence::MAX_STATUS_MSG_BYTES;
use crate::error::{MatrixError, Result};
use crate::rooms::NewEvent;

/// Longest display name (bytes).
pub(crate) const MAX_DISPLAYNAME_BYTES: usize = 256;
/// Longest avatar URL (bytes).
pub(crate) const MAX_AVATAR_URL_BYTES: usize = 1024;

/// A user's global profile (`GET /profile/{userId}`).
pub struct UserProfile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    /// MSC1769: the user's profile room.
    pub profile_room: String,
}

/// A user-sent event vetted by the profile-room rules (see [`ProfileRooms::vet_user_event`]).
pub struct VettedEvent {
    pub event: NewEvent,
    /// `Some(status message)`: the owner set `m.status`; the presence engine follows it.
    pub status: Option<Option<String>>,
}

impl ProfileRooms {
    /// The user's profile room, created on first use for accounts older than profile rooms
    /// (and at once for new accounts, MSC1769).
    pub(crate) async fn ensure_for(&self, user_id: &str) -> Result<String> {
        if let Some(room) = self.room_of(user_id) {
            return Ok(room);
        }
        let snapshot = self.engine()?.snapshot(user_id, "");
        self.ensure(user_id, &snapshot, snapshot.status_msg.as_deref()).await
    }

    /// `GET /profile/{userId}`: display name, avatar and the profile room (404 if no user).
    pub(crate) async fn profile(&self, user_id: &str) -> Result<UserProfile> {
        let user = self.accounts.user(user_id).await?.ok_or_else(|| MatrixError::not_found("Profile not found"))?;
        let profile_room = self.ensure_for(user_id).await?;
        Ok(UserProfile { displayname: user.displayname, avatar_url: user.avatar_url, profile_room })
    }

    /// `PUT /profile/{userId}/{field}`: store it, then update the member events in every
    /// joined room, the one field that changed in the profile room, and legacy `m.presence`
    /// (which carries the display name and avatar, seed 000).
    pub(crate) async fn set_profile(&self, user_id: &str, field: ProfileField, value: Option<&str>) -> Result<()> {
        let (limit, name) = match field {
            ProfileField::DisplayName => (MAX_DISPLAYNAME_BYTES, "displayname"),
            ProfileField::AvatarUrl => (MAX_AVATAR_URL_BYTES, "avatar_url"),
        };
        if value.is_some_and(|v| v.len() > limit) {
            return Err(MatrixError::invalid_param(format!("{name} is too long")));
        }
        crate::api::guard::no_nul(name, value.unwrap_or_default())?;
        let user = self.accounts.set_profile_field(user_id, field, value).await?;
        for room_id in self.rooms.joined_rooms(user_id).await?.iter() {
            let Some(current) = self.rooms.member_event(room_id, user_id).await? else {
                continue;
            };
            let mut content = current.content.clone();
            content["displayname"] = user.displayname.clone().map(Value::String).unwrap_or(Value::Null);
            content["avatar_url"] = user.avatar_url.clone().map(Value::String).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut content {
                m.retain(|_, v| !v.is_null());
            }
            if content != current.content {
                self.rooms.send(room_id, user_id, NewEvent::state("m.room.member", user_id, content)).await?;
            }
        }
        let change = match field {
            ProfileField::DisplayName => ProfileChange::DisplayName(user.displayname.as_deref()),
            ProfileField::AvatarUrl => ProfileChange::Avatar(user.avatar_url.as_deref()),
        };
        self.update_profile(user_id, change).await?;
        self.engine()?.republish(user_id).await;
        Ok(())
    }

    /// The profile-room rules for an event a user sends (seed 000, MSC3032).
    ///
    /// In a profile room `m.presence` is server-owned: a user may not send it (MSC3032's open
    /// question, answered "no"). The owner may set `m.status` directly; the status message
    /// of the presence engine follows it.
    pub(crate) fn vet_user_event(&self, user_id: &str, room_id: &str, mut ev: NewEvent) -> Result<VettedEvent> {
        let Some(owner) = self.owner_of(room_id) else { return Ok(VettedEvent { event: ev, status: None }) };
        if ev.kind == PRESENCE_EVENT {
            return Err(MatrixError::forbidden("m.presence in a profile room is published by the server"));
        }
        if ev.kind == PRESENCE_VISIBILITY_EVENT {
            validate_presence_visibility(ev.state_key.as_deref(), &ev.content)?;
        }
        let is_status = owner == user_id && ev.kind == STATUS_EVENT && ev.state_key.as_deref() == Some("");
        if !is_status {
            return Ok(VettedEvent { event: ev, status: None });
        }
        let status = ev.content.get("status").and_then(Value::as_str).map(str::to_owned);
        if status.as_ref().is_some_and(|m| m.len() > MAX_STATUS_MSG_BYTES) {
            return Err(MatrixError::invalid_param("status is too long"));
        }
        if self.engine()?.snapshot(user_id, "").presence.hidden {
            // Hidden: the text goes to the engine (the owner's own view) but never into the
            // room, which holds what others may see; unhiding publishes it then.
            ev.content = serde_json::json!({});
        }
        Ok(VettedEvent { event: ev, status: Some(status) })
    }
}
