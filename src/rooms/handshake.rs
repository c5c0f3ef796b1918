//! The server side of membership handshakes (spec "Joining Rooms", "Leaving Rooms",
//! "Inviting to a room"): `make_join`/`make_leave` templates, `send_join`/`send_leave`,
//! and invites of our users by other servers (`invite` v2: counter-signed and kept, shown
//! in `/sync` with the inviter's `invite_room_state`).
use std::collections::HashSet;
use std::sync::Arc;

use ruma::RoomVersionId;
use serde_json::{json, Value};

use super::event::{now_ms, Pdu};
use super::outbound::server_of;
use super::send::with_event;
use super::service::Rooms;
use super::{auth, dag};
use crate::error::{MatrixError, Result};
use crate::federation::pdu;

/// Most stripped state events kept with an invite from another server.
const MAX_INVITE_STATE: usize = 50;

fn forbidden(e: impl std::fmt::Display) -> MatrixError {
    MatrixError::forbidden(e.to_string())
}

impl Rooms {
    /// The version of a room this server takes part in (404 otherwise).
    pub(crate) async fn joined_room_version(&self, room_id: &str) -> Result<RoomVersionId> {
        let state = self.state(room_id).await?;
        if state.get("m.room.create", "").is_none() {
            return Err(MatrixError::not_found("This server is not in the room"));
        }
        Ok(dag::room_version(&state, None))
    }

    /// `make_join` / `make_leave`: an unsigned membership event for `user_id` (of `origin`)
    /// built on our extremities, if the auth rules allow it now.
    pub(crate) async fn make_membership(
        &self,
        origin: &str,
        room_id: &str,
        user_id: &str,
        membership: &str,
    ) -> Result<Value> {
        if server_of(user_id) != Some(origin) {
            return Err(forbidden("The user is not of the requesting server"));
        }
        let version = self.joined_room_version(room_id).await?;
        let state = self.state(room_id).await?;
        let content = json!({"membership": membership});
        auth::check(&state, user_id, "m.room.member", Some(user_id), &content).map_err(MatrixError::Forbidden)?;
        let extremities = self.extremities(room_id).await?;
        let (prev_events, depth) = dag::prev_and_depth(&extremities);
        let auth_events = dag::auth_events_for(&state, user_id, "m.room.member", Some(user_id), &content);
        let event = json!({
            "room_id": room_id, "sender": user_id, "type": "m.room.member", "state_key": user_id,
            "content": content, "origin": origin, "origin_server_ts": now_ms(), "depth": depth,
            "prev_events": prev_events, "auth_events": auth_events,
        });
        Ok(json!({"event": event, "room_version": version.as_str()}))
    }

    /// `send_join` / `send_leave`: take in the signed membership event of `origin`'s user.
    /// For a join, answers the room state before it and its auth chain (spec v2 response).
    pub(crate) async fn send_membership(
        &self,
        origin: &str,
        room_id: &str,
        event_id: &str,
        event: Value,
        membership: &str,
    ) -> Result<Value> {
        let version = self.joined_room_version(room_id).await?;
        let field = |k: &str| event.get(k).and_then(Value::as_str);
        let ok = field("type") == Some("m.room.member")
            && field("room_id") == Some(room_id)
            && event.pointer("/content/membership").and_then(Value::as_str) == Some(membership)
            && field("sender").is_some()
            && field("state_key") == field("sender")
            && field("sender").and_then(server_of) == Some(origin);
        if !ok {
            return Err(MatrixError::bad_json(format!("not a {membership} of a user of {origin} in this room")));
        }
        let obj = pdu::to_canonical(event.clone()).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        if pdu::event_id(&obj, &version).map_err(|e| MatrixError::bad_json(e.to_string()))? != event_id {
            return Err(MatrixError::bad_json("the event id does not match the event"));
        }
        let accepted = self.ingest(origin, event, false).await.map_err(forbidden)?;
        if accepted.soft_failed {
            return Err(forbidden(format!("the {membership} fails auth against the current state of the room")));
        }
        // We are the resident server: the room's other servers hear of it from us.
        let now = self.state(room_id).await?;
        self.fan_out_except(&accepted.pdu, &now, Some(origin));
        if membership != "join" {
            return Ok(json!({}));
        }
        let state_events = self.state_events_of(&accepted.state_before).await?;
        let state: Vec<&Pdu> = state_events.iter().map(|e| e.as_ref()).collect();
        let auth_chain = self.auth_chain(state.iter().copied().chain([accepted.pdu.as_ref()])).await?;
        Ok(json!({
            "origin": self.server_name,
            "state": self.signed_all(&version, state.into_iter())?,
            "auth_chain": self.signed_all(&version, auth_chain.iter())?,
            "event": self.signed_all(&version, [accepted.pdu.as_ref()].into_iter())?.pop(),
            "members_omitted": false,
            "servers_in_room": super::outbound::servers_of(&*self.state(room_id).await?, ""),
        }))
    }

    /// Every event in the auth chains of `events` (not the events themselves), as known here.
    pub(crate) async fn auth_chain<'a>(&self, events: impl Iterator<Item = &'a Pdu>) -> Result<Vec<Pdu>> {
        let mut todo: Vec<String> = events.flat_map(|e| e.auth_events.iter().cloned()).collect();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone()) || seen.len() > 100_000 {
                continue;
            }
            if let Some((_, pdu, None)) = self.store.any_event(&id).await? {
                todo.extend(pdu.auth_events.iter().cloned());
                out.push(pdu);
            }
        }
        out.sort_by_key(|p| p.depth);
        Ok(out)
    }

    /// Events as signed PDU JSON.
    pub(crate) fn signed_all<'a>(
        &self,
        version: &RoomVersionId,
        events: impl Iterator<Item = &'a Pdu>,
    ) -> Result<Vec<Value>> {
        events
            .map(|e| {
                let obj = self.signed_pdu(e, version)?;
                serde_json::to_value(obj).map_err(|e| MatrixError::Internal(e.into()))
            })
            .collect()
    }

    /// `invite` v2 from `origin`: check the invite of one of our users, counter-sign it and
    /// keep it. Returns the event with our signature.
    pub(crate) async fn receive_invite(
        &self,
        origin: &str,
        room_id: &str,
        event_id: &str,
        version: &RoomVersionId,
        event: Value,
        invite_room_state: Vec<Value>,
    ) -> Result<Value> {
        let field = |k: &str| event.get(k).and_then(Value::as_str);
        let target = field("state_key").unwrap_or_default().to_owned();
        let ok = field("type") == Some("m.room.member")
            && field("room_id") == Some(room_id)
            && event.pointer("/content/membership").and_then(Value::as_str) == Some("invite")
            && field("sender").and_then(server_of) == Some(origin)
            && server_of(&target) == Some(self.server_name.as_str());
        if !ok {
            return Err(MatrixError::bad_json(format!("not an invite of a user of this server by {origin}")));
        }
        if !self.accounts.exists(&target).await? {
            return Err(MatrixError::not_found("No such user"));
        }
        let mut pdu = self.check_pdu(event.clone(), version).await.map_err(forbidden)?;
        if pdu.event_id != event_id {
            return Err(MatrixError::bad_json("the event id does not match the event"));
        }
        let mut obj = pdu::to_canonical(event).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let rules = pdu::rules(version).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        ruma::signatures::sign_event(&self.server_name, self.federation.event_key(), &mut obj, &rules.redaction)
            .map_err(|e| MatrixError::Internal(e.into()))?;
        let signed = serde_json::to_value(&obj).map_err(|e| MatrixError::Internal(e.into()))?;
        pdu.signatures = signed.get("signatures").cloned();

        let state = self.state(room_id).await.ok();
        if state.as_ref().is_some_and(|s| s.get("m.room.create", "").is_some()) {
            // A room we are in: the invite is an ordinary event of its DAG.
            self.ingest(origin, signed.clone(), true).await.map_err(forbidden)?;
            return Ok(signed);
        }
        let stripped: Vec<Value> =
            invite_room_state.into_iter().filter(|e| e.is_object()).take(MAX_INVITE_STATE).collect();
        pdu.unsigned.insert("invite_room_state".into(), Value::Array(stripped));
        self.store_out_of_room(pdu, version).await?;
        Ok(signed)
    }

    /// Keep a membership event of a room this server is not in (an invite from another
    /// server, or the leave that rejects it) so `/sync` shows it.
    pub(super) async fn store_out_of_room(&self, pdu: Pdu, version: &RoomVersionId) -> Result<()> {
        self.store.ensure_room(&pdu.room_id, &pdu.sender, version.as_str(), now_ms()).await?;
        let _guard = self.write_lock.lock().await;
        if self.store.get_event(&pdu.event_id).await?.is_some() {
            return Ok(());
        }
        let state = self.state(&pdu.room_id).await?;
        self.extremities(&pdu.room_id).await?;
        let pdu = Arc::new(pdu);
        let (head, new) = self.current_group(&pdu.room_id, &state).await?;
        let new_state = with_event(state, &pdu);
        let (groups, next) = self.groups_on(head, new, &pdu, &new_state);
        let pos = self.stream.allocate();
        self.store.persist_event_with_groups(&pdu, pos.pos, None, Some(&groups)).await?;
        self.set_current_group(&pdu.room_id, next);
        self.advance_extremities(&pdu).await?;
        self.after_persist(&pdu, new_state, pos);
        Ok(())
    }
}
