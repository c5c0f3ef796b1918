//! Events users send (`PUT /send`, `PUT /state`, `PUT /redact`): the profile-room rules,
//! relations, redaction permission and the sender's activity around [`Rooms::send`].
use std::sync::Arc;

use serde_json::{json, Value};

use super::auth::PowerLevels;
use super::event::{now_ms, Pdu};
use super::redaction::redacted;
use super::service::{NewEvent, Rooms};
use crate::accounts::Session;
use crate::error::{MatrixError, Result};

impl Rooms {
    /// A user-initiated event (message or state); sending is a pro-active event (seed 000).
    /// Profile rooms have their own rules (see `ProfileRooms::vet_user_event`); the owner's
    /// `m.status` is durable in the presence engine before the answer: if we crash between
    /// the room event and that write, the engine wins at startup and the room is set back
    /// (msc/README.md §2).
    pub(crate) async fn send_user_event(&self, session: &Session, room_id: &str, ev: NewEvent) -> Result<Arc<Pdu>> {
        let links = self.links()?;
        let vetted = links.profiles.vet_user_event(&session.user_id, room_id, ev)?;
        let pdu = self.send(room_id, &session.user_id, vetted.event).await?;
        links.relations.record(&pdu).await?;
        if let Some(status) = vetted.status {
            links.presence.set_status_msg(session, status).await?;
        }
        links.presence.activity(session).await;
        Ok(pdu)
    }

    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`: anyone may redact their own events;
    /// other users' events need the `redact` power level (spec "Redactions").
    pub(crate) async fn redact(
        &self,
        session: &Session,
        room_id: &str,
        event_id: &str,
        reason: Option<String>,
        txn_id: &str,
    ) -> Result<Arc<Pdu>> {
        let user_id = session.user_id.as_str();
        let state = self.state(room_id).await?;
        if state.membership(user_id) != Some("join") {
            return Err(MatrixError::forbidden("You are not in this room"));
        }
        let target = match self.store.get_event(event_id).await? {
            Some((_, pdu)) if pdu.room_id == room_id => pdu,
            _ => return Err(MatrixError::not_found("Event not found")),
        };
        if target.sender != user_id {
            let pl = PowerLevels::of(&state);
            if pl.user(user_id, &state) < pl.redact() {
                return Err(MatrixError::forbidden("You may not redact other users' events"));
            }
        }
        let mut content = json!({"redacts": target.event_id});
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        let mut ev = NewEvent::message("m.room.redaction", content);
        ev.txn = Some((session.device_id.clone(), txn_id.to_owned()));
        let pdu = self.send_user_event(session, room_id, ev).await?;
        let mut because = pdu.to_client(now_ms(), None);
        if let Some(u) = because.get_mut("unsigned").and_then(Value::as_object_mut) {
            u.remove("age");
        }
        let version = super::dag::room_version(&state, None);
        self.rewrite_event(redacted(&target, because, &version)).await?;
        Ok(pdu)
    }
}
