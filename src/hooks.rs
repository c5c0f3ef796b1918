//! Orchestration between domains: what happens when a user is created, a session ends, an
//! event is sent. Handlers call these so the cross-domain rules live in one place.
use serde_json::Value;

use crate::accounts::Session;
use crate::app::Services;
use crate::error::{MatrixError, Result};
use crate::presence::{DeviceKind, Presence};
use crate::rooms::create::{initial_events, CreateRoomSpec};
use crate::rooms::{NewEvent, Pdu, ROOM_VERSION};
use crate::sync::{SyncFilter, SyncRequest};

impl Services {
    pub async fn create_room(&self, creator: &str, spec: &CreateRoomSpec) -> Result<String> {
        let events = initial_events(creator, spec, ROOM_VERSION)?;
        self.rooms.create_with_events(creator, spec.room_type(), events).await
    }

    /// A user-initiated event (message or state).
    pub async fn send_event(&self, session: &Session, room_id: &str, ev: NewEvent) -> Result<std::sync::Arc<Pdu>> {
        let pdu = self.rooms.send(room_id, &session.user_id, ev).await?;
        self.presence.activity(session).await;
        Ok(pdu)
    }

    /// Members (and, for world-readable rooms, anyone) may read a room's current state.
    pub async fn check_can_read_state(&self, room_id: &str, user_id: &str) -> Result<()> {
        let state = self.rooms.state(room_id).await?;
        if state.membership(user_id) == Some("join") || state.history_visibility() == "world_readable" {
            return Ok(());
        }
        Err(MatrixError::forbidden("You are not a member of this room"))
    }

    pub async fn on_user_created(&self, _user_id: &str) -> Result<()> {
        Ok(())
    }

    /// Logout of one device: its tokens go, and so do its presence and peeks.
    pub async fn end_session(&self, session: &Session) -> Result<()> {
        self.accounts.delete_device(session).await?;
        self.presence.remove_device(session).await;
        Ok(())
    }

    pub async fn load_filter(&self, user_id: &str, filter_id: &str) -> Result<SyncFilter> {
        let id: i64 = filter_id.parse().map_err(|_| MatrixError::invalid_param("unknown filter id"))?;
        let json =
            self.store.get_filter(user_id, id).await?.ok_or_else(|| MatrixError::invalid_param("unknown filter id"))?;
        serde_json::from_str(&json).map_err(|e| MatrixError::bad_json(e.to_string()))
    }

    /// `/sync` with the device's automatic presence report around it.
    pub async fn sync_with_presence(
        &self,
        session: &Session,
        report: Presence,
        kind: Option<DeviceKind>,
        req: SyncRequest,
    ) -> Result<Value> {
        let in_flight = self.presence.sync_in_flight(session);
        self.presence.sync_started(session, report, kind).await;
        let result = self.sync.sync(session, req).await;
        in_flight.finish().await;
        result
    }

    /// The manual status (MSC3032): the engine's input; the profile room follows the engine.
    pub async fn set_manual_presence(
        &self,
        session: &Session,
        presence: Presence,
        status_msg: Option<String>,
    ) -> Result<()> {
        self.presence.set_manual(session, presence, status_msg).await;
        Ok(())
    }

    /// Extra fields for `GET /profile/{userId}` (the profile room, MSC1769).
    pub async fn decorate_profile(&self, _user_id: &str, _body: &mut Value) -> Result<()> {
        Ok(())
    }

    /// Display name or avatar changed: update the member events in every joined room.
    pub async fn on_profile_changed(&self, user_id: &str) -> Result<()> {
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
        Ok(())
    }
}
