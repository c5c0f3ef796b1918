//! Rooms peeked over federation (MSC2444), the room side of both ends: what a peeked server
//! answers a `PUT /peek` with (the room's current state, its auth chain and the latest event),
//! and how a peeking server keeps that answer — a room this server knows with no member of
//! its own, whose new events then arrive through `/send` like a joined room's.
use std::collections::HashMap;
use std::sync::Arc;

use ruma::RoomVersionId;
use serde_json::{json, Value};

use super::event::{now_ms, Pdu};
use super::outbound::server_of;
use super::resolve::{self, AuthEvent};
use super::send::with_event;
use super::service::Rooms;
use crate::error::{MatrixError, Result};
use crate::federation::{pdu, Federation};

fn bad_answer(e: impl std::fmt::Display) -> MatrixError {
    MatrixError::not_found(format!("The peeked server's answer is not usable: {e}"))
}

impl Rooms {
    /// The federation service rooms send through (peeks over federation use it too).
    pub(crate) fn federation(&self) -> &Arc<Federation> {
        &self.federation
    }

    /// Does this server take part in `room_id` (it created it, or a local user is joined)?
    /// Only such rooms are served to peeking servers (we do not relay rooms we peek).
    pub(crate) async fn is_resident(&self, room_id: &str) -> Result<bool> {
        let state = match self.state(room_id).await {
            Ok(s) => s,
            Err(MatrixError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let ours = |u: &str| server_of(u) == Some(self.server_name.as_str());
        let created_here = state.get("m.room.create", "").is_some_and(|c| ours(&c.sender));
        Ok(created_here || state.members_with(&["join"]).any(ours))
    }

    /// Events of a room we peek over federation wait while the peek is being started (see
    /// `Peeks::settle_remote_peek`). Events of a room whose peek ended, with no local user
    /// joined, are refused: the peeked server stops sending them after our `DELETE` or the
    /// peek's expiry, and what still arrives is not for us.
    pub(crate) async fn refuses_peeked_events(&self, room_id: &str) -> bool {
        let Some(links) = self.links.get() else { return false };
        links.peeks.settle_remote_peek(room_id).await;
        links.peeks.remote_peek_ended(room_id) && !self.is_resident(room_id).await.unwrap_or(false)
    }

    /// The body of a new peek's `200` (MSC2444): the current state, its auth chain, the room
    /// version, and the latest event (`latest_event_id`, and the event itself as
    /// `latest_event`, so the peeker can continue the DAG from it without another request).
    pub(crate) async fn fed_peek_snapshot(&self, room_id: &str) -> Result<Value> {
        let version = self.joined_room_version(room_id).await?;
        let state = self.state(room_id).await?;
        let state_events = self.state_events_of(&state).await?;
        let state_pdus: Vec<&Pdu> = state_events.iter().map(|e| e.as_ref()).collect();
        let chain = self.auth_chain(state_pdus.iter().copied()).await?;
        let latest = match self.extremities(room_id).await?.iter().max_by_key(|(_, d)| *d) {
            Some((id, _)) => self.store.get_event(id).await?.map(|(_, p)| p),
            None => None,
        };
        let latest_json = match &latest {
            Some(p) => self.signed_all(&version, [p].into_iter())?.pop(),
            None => None,
        };
        Ok(json!({
            "room_version": version.as_str(),
            "state": self.signed_all(&version, state_pdus.into_iter())?,
            "auth_chain": self.signed_all(&version, chain.iter())?,
            "latest_event_id": latest.as_ref().map(|p| p.event_id.clone()),
            "latest_event": latest_json,
        }))
    }

    /// Keep a peek answer: like a `send_join` answer (`persist_join`), each event checked
    /// (format, signatures, auth against its auth events; failures dropped), the auth chain as
    /// outliers, the state into the timeline, then the latest event if it is not a state event;
    /// the room's extremity becomes the latest event, so the events the peeked server sends next
    /// follow on. A room known already (a peek renewed after it lapsed) gets the new state on
    /// top of what it had.
    pub(crate) async fn persist_peeked_state(
        &self,
        room_id: &str,
        version: &RoomVersionId,
        state: Vec<Value>,
        auth_chain: Vec<Value>,
        latest: Option<Value>,
    ) -> Result<()> {
        let rules = pdu::rules(version).map_err(bad_answer)?;
        let mut state_events = Vec::new();
        let mut auth_events = Vec::new();
        for (is_state, raw) in state.into_iter().map(|e| (true, e)).chain(auth_chain.into_iter().map(|e| (false, e))) {
            if raw.get("room_id").and_then(Value::as_str) != Some(room_id) {
                continue;
            }
            match self.check_pdu(raw, version).await {
                Ok(p) if is_state && p.state_key.is_some() => state_events.push(p),
                Ok(p) => auth_events.push(p),
                Err(e) => tracing::info!(room_id, error = %e, "an event of a peek answer was dropped"),
            }
        }
        let latest = match latest.filter(|l| l.get("room_id").and_then(Value::as_str) == Some(room_id)) {
            Some(raw) => match self.check_pdu(raw, version).await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::info!(room_id, error = %e, "the latest event of a peek answer was dropped");
                    None
                }
            },
            None => None,
        };
        let mut known: HashMap<String, AuthEvent> = HashMap::new();
        for p in state_events.iter().chain(auth_events.iter()) {
            if let Ok(a) = AuthEvent::new(p) {
                known.insert(p.event_id.clone(), a);
            }
        }
        state_events.sort_by_key(|p| p.depth);
        let create =
            state_events.iter().find(|p| p.kind == "m.room.create").ok_or_else(|| bad_answer("no create event"))?;
        self.store.ensure_room(room_id, &create.sender, version.as_str(), now_ms()).await?;
        for p in &auth_events {
            self.store.put_outlier(p, None).await?;
        }
        let _guard = self.write_lock.lock().await;
        let mut room_state = self.state(room_id).await?;
        let mut newest: Option<(String, i64)> = None;
        let passes = |p: &Pdu| -> bool {
            let Ok(ev) = AuthEvent::new(p) else { return false };
            let auth: HashMap<_, _> =
                p.auth_events.iter().filter_map(|id| known.get(id).map(|a| (a.id().to_owned(), a.clone()))).collect();
            match resolve::check_against_auth_events(&rules, &ev, &auth) {
                Ok(()) => true,
                Err(e) => {
                    tracing::info!(room_id, event_id = %p.event_id, error = %e, "an event of a peek answer fails auth");
                    false
                }
            }
        };
        let mut in_order: Vec<Pdu> = state_events;
        in_order.extend(latest.filter(|l| l.state_key.is_none()));
        for p in in_order {
            if !passes(&p) {
                continue;
            }
            if newest.as_ref().is_none_or(|(_, d)| p.depth >= *d) {
                newest = Some((p.event_id.clone(), p.depth));
            }
            let known_here = self.store.get_event(&p.event_id).await?.is_some();
            if known_here && !p.is_state() {
                continue;
            }
            let pdu = Arc::new(p);
            room_state = with_event(room_state, &pdu);
            let pos = self.stream.allocate();
            if known_here {
                self.store.overwrite_current_state(room_id, &[pdu.as_ref()], pos.pos).await?;
            } else {
                self.store.persist_event(&pdu, pos.pos, None).await?;
            }
            self.after_persist(&pdu, room_state.clone(), pos);
        }
        let newest = newest.ok_or_else(|| bad_answer("no event passed the checks"))?;
        self.store.set_forward_extremities(room_id, &[]).await?;
        self.extremities.insert(room_id.to_owned(), Arc::new(vec![newest]));
        Ok(())
    }
}
