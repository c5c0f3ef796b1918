//! Reading the room DAG for other servers (spec "Retrieving events", "Backfilling",
//! `get_missing_events`): only servers with a joined member may read a room, never a
//! refused event, every list bounded.
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};

use super::dag;
use super::event::{now_ms, Pdu};
use super::service::Rooms;
use super::state::RoomState;
use crate::error::{MatrixError, Result};

/// Most events one `backfill` or `get_missing_events` answers.
pub const MAX_DAG_PAGE: usize = 100;

impl Rooms {
    /// 403 unless `origin` has a joined member in the room (404 for a room we are not in).
    pub(crate) async fn check_server_may_read(&self, origin: &str, room_id: &str) -> Result<()> {
        self.joined_room_version(room_id).await?;
        if !self.server_in_room(origin, room_id).await {
            return Err(MatrixError::forbidden("Your server has no member in this room"));
        }
        Ok(())
    }

    /// An accepted event of a room `origin` may read (404 if unknown or refused).
    async fn readable_pdu(&self, origin: &str, event_id: &str) -> Result<Pdu> {
        let pdu = match self.store.any_event(event_id).await? {
            Some((_, pdu, None)) => pdu,
            _ => return Err(MatrixError::not_found("Event not found")),
        };
        self.check_server_may_read(origin, &pdu.room_id).await?;
        Ok(pdu)
    }

    /// `GET /event/{eventId}`.
    pub(crate) async fn fed_event(&self, origin: &str, event_id: &str) -> Result<Value> {
        let pdu = self.readable_pdu(origin, event_id).await?;
        let version = self.joined_room_version(&pdu.room_id).await?;
        let pdus = self.signed_all(&version, [&pdu].into_iter())?;
        Ok(json!({"origin": self.server_name, "origin_server_ts": now_ms(), "pdus": pdus}))
    }

    /// The room state at (before) an event (spec: the state before it, which is what
    /// `/state_ids` answers in Synapse too): from its state group; for an event from
    /// before state groups, the timeline's state events before it.
    async fn state_at(&self, room_id: &str, event_id: &str) -> Result<Arc<RoomState>> {
        let pos = match self.store.any_event(event_id).await? {
            Some((pos, pdu, None)) if pdu.room_id == room_id => pos,
            _ => return Err(MatrixError::not_found("Event not found in this room")),
        };
        if let Some((before, _)) = self.store.event_groups(event_id).await? {
            return self.whole_state(&*self.group_ids(before).await?).await;
        }
        let Some(pos) = pos else { return Err(MatrixError::not_found("The state at this event is not known")) };
        let events = self.store.room_state_events_between(room_id, 0, pos - 1).await?;
        Ok(Arc::new(RoomState::from_events(events.into_iter().map(|(_, e)| e))))
    }

    /// `GET /state/{roomId}?event_id=` (`ids_only`: `/state_ids`).
    pub(crate) async fn fed_state(&self, origin: &str, room_id: &str, event_id: &str, ids_only: bool) -> Result<Value> {
        self.check_server_may_read(origin, room_id).await?;
        let version = self.joined_room_version(room_id).await?;
        let state = self.state_at(room_id, event_id).await?;
        let pdus: Vec<&Pdu> = state.iter().map(|e| e.as_ref()).collect();
        let chain = self.auth_chain(pdus.iter().copied()).await?;
        if ids_only {
            let pdu_ids: Vec<&str> = pdus.iter().map(|e| e.event_id.as_str()).collect();
            let chain_ids: Vec<&str> = chain.iter().map(|e| e.event_id.as_str()).collect();
            return Ok(json!({"pdu_ids": pdu_ids, "auth_chain_ids": chain_ids}));
        }
        Ok(json!({
            "pdus": self.signed_all(&version, pdus.into_iter())?,
            "auth_chain": self.signed_all(&version, chain.iter())?,
        }))
    }

    /// `GET /event_auth/{roomId}/{eventId}`: the event's full auth chain.
    pub(crate) async fn fed_event_auth(&self, origin: &str, room_id: &str, event_id: &str) -> Result<Value> {
        let pdu = self.readable_pdu(origin, event_id).await?;
        if pdu.room_id != room_id {
            return Err(MatrixError::not_found("Event not found in this room"));
        }
        let version = dag::room_version(&*self.state(room_id).await?, None);
        let chain = self.auth_chain([&pdu].into_iter()).await?;
        Ok(json!({"auth_chain": self.signed_all(&version, chain.iter())?}))
    }

    /// `GET /backfill/{roomId}?v=…&limit=`: the events from the given ones back, newest
    /// first along the timeline, at most `limit` (≤ `MAX_DAG_PAGE`).
    pub(crate) async fn fed_backfill(
        &self,
        origin: &str,
        room_id: &str,
        from: &[String],
        limit: usize,
    ) -> Result<Value> {
        self.check_server_may_read(origin, room_id).await?;
        let version = self.joined_room_version(room_id).await?;
        let mut upto = 0;
        for id in from.iter().take(20) {
            if let Some((Some(pos), pdu, None)) = self.store.any_event(id).await? {
                if pdu.room_id == room_id {
                    upto = upto.max(pos);
                }
            }
        }
        let limit = limit.clamp(1, MAX_DAG_PAGE) as i64;
        let events = self.store.room_events_desc(room_id, 0, upto, limit).await?;
        let pdus = self.signed_all(&version, events.iter().map(|(_, e)| e))?;
        Ok(json!({"origin": self.server_name, "origin_server_ts": now_ms(), "pdus": pdus}))
    }

    /// `POST /get_missing_events/{roomId}`: walk back from `latest` along prev events,
    /// stopping at `earliest` and below `min_depth`, at most `limit` events, oldest first.
    pub(crate) async fn fed_missing_events(
        &self,
        origin: &str,
        room_id: &str,
        earliest: &[String],
        latest: &[String],
        limit: usize,
        min_depth: i64,
    ) -> Result<Value> {
        self.check_server_may_read(origin, room_id).await?;
        let version = self.joined_room_version(room_id).await?;
        let limit = limit.clamp(1, MAX_DAG_PAGE);
        let stop: HashSet<&str> = earliest.iter().map(String::as_str).collect();
        let mut seen: HashSet<String> = latest.iter().cloned().collect();
        let mut todo: Vec<String> = Vec::new();
        for id in latest.iter().take(20) {
            if let Some((_, pdu, None)) = self.store.any_event(id).await? {
                todo.extend(pdu.prev_events);
            }
        }
        let mut out: Vec<Pdu> = Vec::new();
        while let Some(id) = todo.pop() {
            if out.len() >= limit {
                break;
            }
            if stop.contains(id.as_str()) || !seen.insert(id.clone()) {
                continue;
            }
            let Some((Some(_), pdu, None)) = self.store.any_event(&id).await? else { continue };
            if pdu.room_id != room_id || pdu.depth < min_depth {
                continue;
            }
            todo.extend(pdu.prev_events.iter().cloned());
            out.push(pdu);
        }
        out.sort_by_key(|p| p.depth);
        Ok(json!({"events": self.signed_all(&version, out.iter())?}))
    }
}
