//! The client side of membership handshakes with rooms on other servers: joining
//! (`make_join` -> sign -> `send_join` -> the room state and auth chain kept), inviting a
//! user of another server (`invite` v2), and rejecting an invite to a room this server is
//! not in (`make_leave` -> `send_leave`).
use std::sync::Arc;

use ruma::{RoomVersionId, ServerName};
use serde_json::{json, Value};

use super::event::{now_ms, Pdu};
use super::membership::member_join_content;
use super::outbound::server_of;
use super::resolve::{self, AuthEvent};
use super::send::with_event;
use super::service::{NewEvent, Rooms};
use super::state::RoomState;
use super::{auth, dag};
use crate::error::{MatrixError, Result};
use crate::federation::client::enc;
use crate::federation::pdu;

/// Room versions we can join (`ver=` of `make_join`).
const VERSIONS: &str = "ver=10&ver=11";
/// Most servers tried for one join.
const MAX_JOIN_SERVERS: usize = 5;

fn unreachable(e: impl std::fmt::Display) -> MatrixError {
    MatrixError::not_found(format!("Could not reach the room's servers: {e}"))
}

impl Rooms {
    /// `POST /join`: through another server when the room lives elsewhere (`via`: servers
    /// to try first), else locally.
    pub(crate) async fn join(
        &self,
        room_id: &str,
        user_id: &str,
        via: &[String],
        reason: Option<String>,
    ) -> Result<()> {
        if self.needs_remote_join(room_id).await? {
            self.join_remote(room_id, user_id, via).await?;
        } else {
            self.set_membership(room_id, user_id, user_id, "join", reason).await?;
        }
        Ok(())
    }

    /// A membership change that another server must take part in: an invite of its user, a
    /// join of a room it hosts, the rejection of its invite. `None`: an ordinary local event.
    pub(super) async fn membership_elsewhere(
        &self,
        room_id: &str,
        sender: &str,
        ev: &NewEvent,
    ) -> Result<Option<Arc<Pdu>>> {
        let target = ev.state_key.as_deref().unwrap_or_default();
        let ours = self.server_name.as_str();
        match ev.content.get("membership").and_then(Value::as_str) {
            Some("invite") if server_of(target).is_some_and(|s| s != ours) => {
                Ok(Some(self.invite_remote(room_id, sender, ev.clone()).await?))
            }
            Some("join") if sender == target && self.needs_remote_join(room_id).await? => {
                Ok(Some(self.join_remote(room_id, sender, &[]).await?))
            }
            Some("leave") if sender == target => {
                let state = self.state(room_id).await?;
                if state.get("m.room.create", "").is_none() && state.membership(sender) == Some("invite") {
                    return Ok(Some(self.reject_remote_invite(room_id, sender).await?));
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Whether a join of `room_id` must go through another server: we do not know the room,
    /// or it lives elsewhere and none of our users is in it (our copy may be stale).
    pub(crate) async fn needs_remote_join(&self, room_id: &str) -> Result<bool> {
        if !self.federation.enabled() {
            return Ok(false);
        }
        let state = match self.state(room_id).await {
            Ok(s) => s,
            Err(MatrixError::NotFound(_)) => return Ok(server_of(room_id) != Some(self.server_name.as_str())),
            Err(e) => return Err(e),
        };
        let ours = |u: &str| server_of(u) == Some(self.server_name.as_str());
        let created_here = state.get("m.room.create", "").is_some_and(|c| ours(&c.sender));
        Ok(!created_here && !state.members_with(&["join"]).any(ours))
    }

    /// `POST /join` of a room on other servers: try `via` (then the room id's and the
    /// inviter's servers) until one lets us in.
    pub(crate) async fn join_remote(&self, room_id: &str, user_id: &str, via: &[String]) -> Result<Arc<Pdu>> {
        let mut servers: Vec<String> = via.to_vec();
        if let Ok(state) = self.state(room_id).await {
            if let Some(inviter) =
                self.state_event_of(&state, "m.room.member", user_id).await?.map(|e| e.sender.clone())
            {
                servers.extend(server_of(&inviter).map(str::to_owned));
            }
        }
        servers.extend(server_of(room_id).map(str::to_owned));
        servers.retain(|s| s != &self.server_name);
        servers.dedup();
        let mut last = MatrixError::not_found("No server to join the room through");
        for server in servers.iter().take(MAX_JOIN_SERVERS) {
            match self.join_via(server, room_id, user_id).await {
                Ok(pdu) => return Ok(pdu),
                Err(e) => {
                    tracing::info!(%server, room_id, error = %e, "remote join failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn join_via(&self, server: &str, room_id: &str, user_id: &str) -> Result<Arc<Pdu>> {
        let dest = <&ServerName>::try_from(server).map_err(|e| MatrixError::invalid_param(e.to_string()))?;
        let path = format!("/_matrix/federation/v1/make_join/{}/{}?{VERSIONS}", enc(room_id), enc(user_id));
        let resp = self.federation.get(dest, &path).await.map_err(unreachable)?;
        if !resp.status.is_success() {
            let msg = resp.body.get("error").and_then(Value::as_str).unwrap_or("refused").to_owned();
            return Err(match resp.status.as_u16() {
                403 => MatrixError::Forbidden(msg),
                _ => MatrixError::not_found(msg),
            });
        }
        let version = resp.body.get("room_version").and_then(Value::as_str).unwrap_or("1");
        let version = RoomVersionId::try_from(version).map_err(unreachable)?;
        pdu::rules(&version).map_err(|e| MatrixError::invalid_param(e.to_string()))?;
        let Some(Value::Object(mut template)) = resp.body.get("event").cloned() else {
            return Err(unreachable("make_join answered no event"));
        };
        let (displayname, avatar_url) = self.accounts.profile(user_id).await?;
        let mut content = member_join_content(&displayname, &avatar_url);
        if let Some(via) = template.get("content").and_then(|c| c.get("join_authorised_via_users_server")) {
            content["join_authorised_via_users_server"] = via.clone();
        }
        for k in ["event_id", "hashes", "signatures", "unsigned"] {
            template.remove(k);
        }
        template.insert("content".into(), content);
        template.insert("origin_server_ts".into(), json!(now_ms()));
        template.insert("origin".into(), json!(self.server_name));
        let ok = template.get("room_id") == Some(&json!(room_id))
            && template.get("sender") == Some(&json!(user_id))
            && template.get("state_key") == Some(&json!(user_id))
            && template.get("type") == Some(&json!("m.room.member"));
        if !ok {
            return Err(unreachable("make_join answered a template for another join"));
        }
        let mut obj = pdu::to_canonical(Value::Object(template)).map_err(unreachable)?;
        pdu::hash_and_sign(&mut obj, &self.server_name, self.federation.event_key(), &version)
            .map_err(|e| MatrixError::Internal(e.into()))?;
        let event_id = pdu::event_id(&obj, &version).map_err(unreachable)?;
        let ours = serde_json::to_value(&obj).map_err(|e| MatrixError::Internal(e.into()))?;
        let path = format!("/_matrix/federation/v2/send_join/{}/{}", enc(room_id), enc(&event_id));
        let resp =
            self.federation.send(dest, http::Method::PUT, &path, Some(&ours), true).await.map_err(unreachable)?;
        if !resp.status.is_success() {
            let msg = resp.body.get("error").and_then(Value::as_str).unwrap_or("refused").to_owned();
            return Err(MatrixError::Forbidden(format!("{server} refused the join: {msg}")));
        }
        let list = |k: &str| resp.body.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
        // The resident server may add its signature (restricted joins): prefer its copy.
        let event = resp.body.get("event").filter(|e| e.is_object()).cloned().unwrap_or(ours);
        self.persist_join(room_id, &version, event, list("state"), list("auth_chain")).await
    }

    /// Keep what `send_join` answered: the auth chain as outliers, the state in the
    /// timeline (each event checked against its auth events; failures dropped), then our
    /// join on top of that state; the room's extremities become our join.
    async fn persist_join(
        &self,
        room_id: &str,
        version: &RoomVersionId,
        join: Value,
        state: Vec<Value>,
        auth_chain: Vec<Value>,
    ) -> Result<Arc<Pdu>> {
        let rules = pdu::rules(version).map_err(|e| MatrixError::Internal(e.into()))?;
        let join = self.check_pdu(join, version).await.map_err(unreachable)?;
        // Every event of the answer, state and auth chain, once (a state event wins).
        let mut received: std::collections::HashMap<String, (bool, Pdu)> = std::collections::HashMap::new();
        for (is_state, raw) in state.into_iter().map(|e| (true, e)).chain(auth_chain.into_iter().map(|e| (false, e))) {
            if raw.get("room_id").and_then(Value::as_str) != Some(room_id) {
                continue;
            }
            match self.check_pdu(raw, version).await {
                Ok(p) => {
                    let is_state = is_state && p.state_key.is_some();
                    let entry = received.entry(p.event_id.clone()).or_insert((is_state, p));
                    entry.0 |= is_state;
                }
                Err(e) => tracing::info!(room_id, error = %e, "an event of a join answer was dropped"),
            }
        }
        let mut events: Vec<(bool, Pdu)> = received.into_values().collect();
        events.sort_by_key(|(_, p)| p.depth);
        let create = events
            .iter()
            .find(|(s, p)| *s && p.kind == "m.room.create")
            .ok_or_else(|| unreachable("no create event"))?;
        self.store.ensure_room(room_id, &create.1.sender, version.as_str(), now_ms()).await?;
        // Oldest first, each authorised against its own auth events, which must have passed
        // before it (spec "Joining Rooms": the auth chain and the state are checked).
        let mut known: std::collections::HashMap<String, AuthEvent> = std::collections::HashMap::new();
        let mut state_events = Vec::new();
        for (is_state, p) in events {
            let ev = AuthEvent::new(&p).map_err(unreachable)?;
            let auth: std::collections::HashMap<_, _> =
                p.auth_events.iter().filter_map(|id| known.get(id).map(|a| (a.id().to_owned(), a.clone()))).collect();
            if let Err(e) = resolve::check_against_auth_events(&rules, &ev, &auth) {
                tracing::info!(room_id, event_id = %p.event_id, error = %e, "an event of a join answer fails auth");
                if !is_state {
                    self.store.put_outlier(&p, Some(&format!("fails auth against its auth events: {e}"))).await?;
                }
                continue;
            }
            known.insert(p.event_id.clone(), ev);
            if is_state {
                state_events.push(p);
            } else {
                self.store.put_outlier(&p, None).await?;
            }
        }
        let _guard = self.write_lock.lock().await;
        let mut room_state = Arc::new(RoomState::whole());
        let mut written = Vec::new();
        for p in state_events {
            let pdu = Arc::new(p);
            room_state = with_event(room_state, &pdu);
            written.push(pdu);
        }
        resolve::check_against_state(&rules, &AuthEvent::new(&join).map_err(unreachable)?, &room_state)
            .map_err(|e| MatrixError::Forbidden(format!("our join fails auth against the room state: {e}")))?;
        // The room's state before our join is state, not history: stored below every stream
        // position (negative), so `/sync` shows it in `state` and the timeline starts at the
        // join (and `/messages` never pages into it).
        let mut below = self.store.min_stream_ordering().await?.min(0);
        for pdu in &written {
            if self.store.get_event(&pdu.event_id).await?.is_some() {
                self.store.overwrite_current_state(room_id, &[pdu.as_ref()], below).await?;
            } else {
                below -= 1;
                self.store.persist_event(pdu, below, None).await?;
            }
        }
        let join = Arc::new(join);
        let snapshot = self.snapshot(room_id, &room_state.ids());
        let head = super::state_groups::GroupHead { id: snapshot.id, chain_len: 0 };
        let new_state = with_event(room_state, &join);
        let (groups, next) = self.groups_on(head, vec![snapshot], &join, &new_state);
        let pos = self.stream.allocate();
        if self.store.get_event(&join.event_id).await?.is_none() {
            self.store.persist_event_with_groups(&join, pos.pos, None, Some(&groups)).await?;
        } else {
            self.store.overwrite_current_state(room_id, &[join.as_ref()], pos.pos).await?;
        }
        self.set_current_group(room_id, next);
        self.store.set_forward_extremities(room_id, &[]).await?;
        self.extremities.insert(room_id.to_owned(), Arc::new(vec![(join.event_id.clone(), join.depth)]));
        for pdu in &written {
            if let (Some(target), Some(m)) = (&pdu.state_key, pdu.membership()) {
                self.note_membership(room_id, target, m, pos.pos);
            }
        }
        self.after_persist(&join, new_state, pos);
        Ok(join)
    }

    /// Invite a user of another server (spec "Inviting to a room"): our signed invite goes
    /// to their server, which counter-signs it; then it joins our DAG like any event and
    /// goes to the room's other servers.
    pub(super) async fn invite_remote(&self, room_id: &str, sender: &str, ev: NewEvent) -> Result<Arc<Pdu>> {
        let target = ev.state_key.clone().unwrap_or_default();
        let dest_name = server_of(&target).unwrap_or_default().to_owned();
        let dest =
            <&ServerName>::try_from(dest_name.as_str()).map_err(|e| MatrixError::invalid_param(e.to_string()))?;
        let (pdu, state) = {
            let _guard = self.write_lock.lock().await;
            let state = self.state(room_id).await?;
            auth::check(&state, sender, &ev.kind, ev.state_key.as_deref(), &ev.content)
                .map_err(MatrixError::Forbidden)?;
            let extremities = self.extremities(room_id).await?;
            {
                let replaced = self
                    .replaced_state(&state, None, &std::collections::HashMap::new(), &ev.kind, ev.state_key.as_deref())
                    .await?;
                (self.build_pdu(room_id, &state, replaced.as_deref(), &extremities, sender, ev)?, state)
            }
        };
        let version = dag::room_version(&state, None);
        let event = self.signed_all(&version, [&pdu].into_iter())?.pop().unwrap_or_default();
        let mut stripped = state.stripped();
        if let Some(me) = self.state_event_of(&state, "m.room.member", sender).await? {
            stripped.push(me.to_stripped());
        }
        let body = json!({"room_version": version.as_str(), "event": event, "invite_room_state": stripped});
        let path = format!("/_matrix/federation/v2/invite/{}/{}", enc(room_id), enc(&pdu.event_id));
        let resp = self
            .federation
            .send(dest, http::Method::PUT, &path, Some(&body), true)
            .await
            .map_err(|e| MatrixError::forbidden(format!("{dest_name} could not be reached: {e:#}")))?;
        let signed = resp.body.get("event").filter(|_| resp.status.is_success()).cloned().ok_or_else(|| {
            let msg = resp.body.get("error").and_then(Value::as_str).unwrap_or("refused");
            MatrixError::forbidden(format!("{dest_name} refused the invite: {msg}"))
        })?;
        let accepted = self.ingest(&dest_name, signed, false).await.map_err(MatrixError::Forbidden)?;
        if accepted.pdu.event_id != pdu.event_id {
            return Err(MatrixError::forbidden("the invited server changed the invite"));
        }
        let now = self.state(room_id).await?;
        self.fan_out(&accepted.pdu, &now);
        Ok(accepted.pdu)
    }

    /// Reject an invite to a room this server is not in: `make_leave`/`send_leave` through
    /// the inviter's server, then the leave is kept like the invite was.
    pub(super) async fn reject_remote_invite(&self, room_id: &str, user_id: &str) -> Result<Arc<Pdu>> {
        let state = self.state(room_id).await?;
        let invite = self
            .state_event_of(&state, "m.room.member", user_id)
            .await?
            .ok_or_else(|| MatrixError::forbidden("not invited"))?;
        let server = server_of(&invite.sender).unwrap_or_default().to_owned();
        let dest = <&ServerName>::try_from(server.as_str()).map_err(|e| MatrixError::invalid_param(e.to_string()))?;
        let path = format!("/_matrix/federation/v1/make_leave/{}/{}", enc(room_id), enc(user_id));
        let resp = self.federation.get(dest, &path).await.map_err(unreachable)?;
        let version = resp.body.get("room_version").and_then(Value::as_str).unwrap_or("1");
        let version = RoomVersionId::try_from(version).map_err(unreachable)?;
        let Some(Value::Object(mut template)) = resp.body.get("event").cloned().filter(|_| resp.status.is_success())
        else {
            return Err(MatrixError::forbidden(format!("{server} refused make_leave: {}", resp.body)));
        };
        template.insert("origin_server_ts".into(), json!(now_ms()));
        template.insert("origin".into(), json!(self.server_name));
        let mut obj = pdu::to_canonical(Value::Object(template)).map_err(unreachable)?;
        pdu::hash_and_sign(&mut obj, &self.server_name, self.federation.event_key(), &version)
            .map_err(|e| MatrixError::Internal(e.into()))?;
        let event_id = pdu::event_id(&obj, &version).map_err(unreachable)?;
        let value = serde_json::to_value(&obj).map_err(|e| MatrixError::Internal(e.into()))?;
        let path = format!("/_matrix/federation/v2/send_leave/{}/{}", enc(room_id), enc(&event_id));
        let resp =
            self.federation.send(dest, http::Method::PUT, &path, Some(&value), true).await.map_err(unreachable)?;
        if !resp.status.is_success() {
            return Err(MatrixError::forbidden(format!("{server} refused the leave: {}", resp.body)));
        }
        let (mut pdu, _) = pdu::from_federation(&obj, &version).map_err(unreachable)?;
        pdu.unsigned.insert("prev_content".into(), invite.content.clone());
        self.store_out_of_room(pdu.clone(), &version).await?;
        Ok(Arc::new(pdu))
    }
}
