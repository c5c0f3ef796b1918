//! PDUs from other servers (spec "Checks performed on receipt of a PDU"): format and size,
//! signatures and content hash (a bad hash: the event is kept redacted), auth against the
//! event's own auth events, against the state before it (the resolution of the states after
//! its prev events, kept as state groups: `state_groups.rs`), and a soft-fail check against
//! the current state. What is fetched from the sending server for that (auth chain, missing
//! prev events, the state at a gap) is in `fetch.rs`. A fork is merged with state resolution
//! v2 (`resolve.rs`). Rejected events are kept outside the timeline (`room_outliers`) and
//! never reach clients; soft-failed ones are kept there too, with their state, and answered
//! as accepted (spec "Soft failure"); accepted ones take a stream position and wake local
//! members like local events (`after_persist`).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ruma::signatures::{PublicKeyMap, Verified};
use ruma::{CanonicalJsonObject, OwnedEventId, RoomVersionId};
use serde_json::{json, Value};

use super::dag;
use super::event::Pdu;
use super::resolve::{self, AuthEvent};
use super::send::with_event;
use super::service::Rooms;
use super::state::RoomState;
use super::state_groups::GroupHead;
use crate::federation::pdu;
use crate::store::state_groups::{NewGroup, StateIds};

/// Largest PDU accepted (spec "Size limits"), in bytes of its JSON.
pub const MAX_PDU_BYTES: usize = 65_536;

/// Why a PDU was refused (reported back to the sending server).
pub type Reason = String;

/// A PDU that passed the checks needing no room state.
pub(super) struct Checked {
    pub(super) pdu: Pdu,
    ev: AuthEvent,
    rules: ruma::room_version_rules::RoomVersionRules,
    pub(super) version: RoomVersionId,
}

pub(super) enum Prepared {
    /// Already in the timeline.
    Known(Accepted),
    New(Box<Checked>),
}

/// An accepted PDU, with the room state before it.
pub(crate) struct Accepted {
    pub pdu: Arc<Pdu>,
    pub state_before: Arc<RoomState>,
    /// It passed auth against the state before it but not against the current state: kept
    /// outside the timeline, never shown to clients nor built upon (spec "Soft failure").
    pub soft_failed: bool,
}

/// The state before an incoming event.
enum Before {
    /// The room's current state (the event follows exactly our forward extremities).
    Current,
    /// Another state, whole, with its group (and the groups to write for it).
    Other { state: Arc<RoomState>, group: GroupHead, new: Vec<NewGroup> },
}

pub(super) fn reason(e: impl std::fmt::Display) -> Reason {
    e.to_string()
}

impl Rooms {
    /// Take in one PDU of a transaction from `origin` (the entry point of `PUT /send`):
    /// the event id if accepted (or soft-failed, which the spec answers like an accepted
    /// event), else why not. A known event is accepted again (idempotent).
    pub async fn receive_pdu(&self, origin: &str, pdu: Value) -> Result<String, String> {
        let room_id = pdu.get("room_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        if self.refuses_peeked_events(&room_id).await {
            tracing::info!(origin, room_id, "PDU of a room whose peek ended refused");
            return Err(format!("this server does not peek {room_id} any more"));
        }
        let accepted = self.ingest(origin, pdu, true).await;
        match &accepted {
            Err(e) => tracing::info!(origin, error = %e, "PDU refused"),
            // A soft-failed event is kept but not passed on (spec "Soft failure").
            Ok(a) if !a.soft_failed => self.relay_to_peekers(&a.pdu, &a.state_before, origin),
            Ok(_) => {}
        }
        accepted.map(|a| a.pdu.event_id.clone())
    }

    /// The checks and the write behind [`Rooms::receive_pdu`] (also used by `send_join`,
    /// `send_leave` and invites). `fetch_missing`: ask `origin` for unknown prev events.
    pub(crate) async fn ingest(&self, origin: &str, value: Value, fetch_missing: bool) -> Result<Accepted, Reason> {
        match self.prepare(origin, value).await? {
            Prepared::Known(accepted) => Ok(accepted),
            Prepared::New(p) => {
                if fetch_missing {
                    self.fetch_missing_prevs(origin, &p.pdu).await;
                    self.fetch_prev_states(origin, &p.pdu, &p.version).await;
                }
                let accepted = self.commit(p).await?;
                if accepted.pdu.kind == "m.room.redaction" && !accepted.soft_failed {
                    if let Err(e) = self.apply_redaction(&accepted.pdu).await {
                        tracing::warn!(event_id = %accepted.pdu.event_id, error = %e, "a redaction was not applied");
                    }
                }
                Ok(accepted)
            }
        }
    }

    /// The checks that need no lock: format, signatures, hash, auth events (fetched if
    /// unknown) and auth against them.
    pub(super) async fn prepare(&self, origin: &str, value: Value) -> Result<Prepared, Reason> {
        let room_id = value.get("room_id").and_then(Value::as_str).ok_or("PDU without room_id")?.to_owned();
        let state = self.state(&room_id).await.map_err(|_| format!("unknown room {room_id}"))?;
        if state.get("m.room.create", "").is_none() {
            return Err(format!("this server is not in {room_id}"));
        }
        let version = dag::room_version(&state, None);
        let pdu = self.check_pdu(value, &version).await?;
        if let Some((pos, _, rejected)) = self.store.any_event(&pdu.event_id).await.map_err(reason)? {
            match (pos, rejected) {
                (Some(_), _) => {
                    let state_before = self.known_state_before(&pdu.event_id, &room_id).await?;
                    return Ok(Prepared::Known(Accepted { state_before, pdu: Arc::new(pdu), soft_failed: false }));
                }
                (None, Some(r)) => return Err(format!("{} was refused before: {r}", pdu.event_id)),
                (None, None) => {} // an outlier until now: it may join the timeline
            }
        }
        let auth = self.auth_events_of(origin, &pdu, &version).await?;
        let rules = pdu::rules(&version).map_err(reason)?;
        let ev = AuthEvent::new(&pdu)?;
        if let Err(e) = resolve::check_against_auth_events(&rules, &ev, &auth) {
            return Err(self.refuse(&pdu, format!("fails auth against its auth events: {e}")).await);
        }
        Ok(Prepared::New(Box::new(Checked { pdu, ev, rules, version })))
    }

    /// The state before an event we have: from its state group, else the current state.
    async fn known_state_before(&self, event_id: &str, room_id: &str) -> Result<Arc<RoomState>, Reason> {
        match self.store.event_groups(event_id).await.map_err(reason)? {
            Some((before, _)) => {
                self.whole_state(&*self.group_ids(before).await.map_err(reason)?).await.map_err(reason)
            }
            None => self.state(room_id).await.map_err(reason),
        }
    }

    /// The checks against room state and the write, under the write lock.
    pub(super) async fn commit(&self, checked: Box<Checked>) -> Result<Accepted, Reason> {
        let Checked { pdu, ev, rules, .. } = *checked;
        let room_id = pdu.room_id.clone();
        let _guard = self.write_lock.lock().await;
        if self.store.get_event(&pdu.event_id).await.map_err(reason)?.is_some() {
            let state_before = self.known_state_before(&pdu.event_id, &room_id).await?;
            return Ok(Accepted { state_before, pdu: Arc::new(pdu), soft_failed: false });
        }
        let current = self.state(&room_id).await.map_err(reason)?;
        let (head, head_new) = self.current_group(&room_id, &current).await.map_err(reason)?;
        let (state_before, before_group, new_groups) = match self.state_before(&pdu, &rules).await? {
            Before::Current => {
                let auth = self.auth_events_in(&current, &pdu).await.map_err(reason)?;
                if let Err(e) = resolve::check_against_events(&rules, &ev, &auth) {
                    return Err(self.refuse(&pdu, format!("fails auth against the state before it: {e}")).await);
                }
                (current.clone(), head, head_new)
            }
            Before::Other { state, group, new } => {
                if let Err(e) = resolve::check_against_state(&rules, &ev, &state) {
                    return Err(self.refuse(&pdu, format!("fails auth against the state before it: {e}")).await);
                }
                let mut all = head_new;
                all.extend(new);
                let auth = self.auth_events_in(&current, &pdu).await.map_err(reason)?;
                if let Err(e) = resolve::check_against_events(&rules, &ev, &auth) {
                    return self.soft_fail(pdu, state, group, all, e).await;
                }
                (state, group, all)
            }
        };
        let mut pdu = pdu;
        let replaced = match pdu.state_key.as_deref() {
            Some(sk) => self.state_event_of(&state_before, &pdu.kind, sk).await.map_err(reason)?,
            None => None,
        };
        if let Some(prev) = replaced {
            pdu.unsigned.insert("replaces_state".into(), json!(prev.event_id));
            pdu.unsigned.insert("prev_content".into(), prev.content.clone());
            pdu.unsigned.insert("prev_sender".into(), json!(prev.sender));
        }
        let pdu = Arc::new(pdu);
        let extremities = self.extremities(&room_id).await.map_err(reason)?;
        let follows_all = extremities.iter().all(|(id, _)| pdu.prev_events.contains(id));
        let after_event = with_event(state_before.clone(), &pdu);
        let (mut groups, after_head) = self.groups_on(before_group, new_groups, &pdu, &after_event);
        // State keys the resolution of a fork dropped (e.g. a member event that fails auth
        // against the resolved power levels): removed from the current state below.
        let mut dropped: Vec<(String, String)> = Vec::new();
        let (new_state, new_head) = if follows_all {
            (after_event, after_head)
        } else {
            let whole_current = self.whole(&current).await?;
            let whole_after = self.whole(&after_event).await?;
            let resolved = self.resolve_states(&rules, &[whole_current, whole_after]).await?;
            let resolved_ids = resolved.ids();
            let mut expected_ids = current.ids();
            if let Some(sk) = &pdu.state_key {
                expected_ids.insert((pdu.kind.clone(), sk.clone()), pdu.event_id.clone());
            }
            dropped = expected_ids.into_keys().filter(|k| !resolved_ids.contains_key(k)).collect();
            let g = self.group_for(&room_id, after_head, &after_event.ids(), &resolved_ids);
            let h = GroupHead { id: g.id, chain_len: g.chain_len };
            groups.new.push(g);
            (resolved, h)
        };
        let pos = self.stream.allocate();
        self.store.persist_event_with_groups(&pdu, pos.pos, None, Some(&groups)).await.map_err(reason)?;
        self.set_current_group(&room_id, new_head);
        // What resolution decided beyond "the event's own state key now names it".
        let expected = with_event(current.clone(), &pdu);
        let overrides: Vec<&Pdu> = new_state
            .iter()
            .filter(|e| {
                let sk = e.state_key.as_deref().unwrap_or_default();
                !expected.is_current(&e.kind, sk, &e.event_id)
            })
            .map(|e| e.as_ref())
            .collect();
        if !overrides.is_empty() {
            self.store.overwrite_current_state(&room_id, &overrides, pos.pos).await.map_err(reason)?;
            for e in &overrides {
                if let (Some(target), Some(m)) = (&e.state_key, e.membership()) {
                    self.note_membership(&room_id, target, m, pos.pos);
                }
            }
        }
        if !dropped.is_empty() {
            self.store.drop_current_state(&room_id, &dropped).await.map_err(reason)?;
            for (kind, target) in &dropped {
                if kind == "m.room.member" {
                    self.note_membership(&room_id, target, "leave", pos.pos);
                }
            }
        }
        self.advance_extremities(&pdu).await.map_err(reason)?;
        self.after_persist(&pdu, new_state, pos);
        Ok(Accepted { pdu, state_before, soft_failed: false })
    }

    /// Spec "Soft failure": an event that passes auth against the state before it but not
    /// against the current state is kept (with its state, so later events may build on it)
    /// outside the timeline: no client sees it and our new events do not point to it.
    async fn soft_fail(
        &self,
        pdu: Pdu,
        state_before: Arc<RoomState>,
        group: GroupHead,
        new: Vec<NewGroup>,
        why: String,
    ) -> Result<Accepted, Reason> {
        tracing::info!(event_id = %pdu.event_id, room_id = %pdu.room_id, why = %why, "PDU soft-failed");
        let pdu = Arc::new(pdu);
        let after = with_event(state_before.clone(), &pdu);
        let (groups, _) = self.groups_on(group, new, &pdu, &after);
        self.store.put_outlier_with_groups(&pdu, &groups).await.map_err(reason)?;
        Ok(Accepted { pdu, state_before, soft_failed: true })
    }

    /// A redaction from another server, applied to its target (spec "Redactions": servers
    /// apply it when its sender is of the target sender's server, or may redact others'
    /// events). The target is kept redacted by the room version's rules.
    async fn apply_redaction(&self, redaction: &Pdu) -> crate::error::Result<()> {
        let Some(target_id) = redaction.redacts() else { return Ok(()) };
        let Some((_, target)) = self.store.get_event(target_id).await? else { return Ok(()) };
        if target.room_id != redaction.room_id || target.unsigned.contains_key("redacted_because") {
            return Ok(());
        }
        let state = self.state(&redaction.room_id).await?;
        let same_server = super::outbound::server_of(&target.sender) == super::outbound::server_of(&redaction.sender);
        let pl = super::auth::PowerLevels::of(&state);
        if !same_server && pl.user(&redaction.sender, &state) < pl.redact() {
            return Ok(());
        }
        let mut because = redaction.to_client(super::event::now_ms(), None);
        if let Some(u) = because.get_mut("unsigned").and_then(Value::as_object_mut) {
            u.remove("age");
        }
        let version = dag::room_version(&state, None);
        self.rewrite_event(super::redaction::redacted(&target, because, &version)).await
    }

    /// `state` with its member events whole (for state resolution).
    async fn whole(&self, state: &Arc<RoomState>) -> Result<Arc<RoomState>, Reason> {
        if state.keeps_whole() {
            return Ok(state.clone());
        }
        self.whole_state(&state.ids()).await.map_err(reason)
    }

    /// Format, size, signatures and content hash: the stored form of a PDU of a room of
    /// `version` (redacted if its content does not match its hash).
    pub(crate) async fn check_pdu(&self, value: Value, version: &RoomVersionId) -> Result<Pdu, Reason> {
        let size = serde_json::to_vec(&value).map_err(reason)?.len();
        if size > MAX_PDU_BYTES {
            return Err(format!("PDU of {size} bytes, the limit is {MAX_PDU_BYTES}"));
        }
        let rules = pdu::rules(version).map_err(reason)?;
        let obj = pdu::to_canonical(value).map_err(reason)?;
        ruma::state_res::check_pdu_format(&obj, &rules.event_format)?;
        let keys = self.keys_for(&obj).await?;
        let obj = match pdu::verify(&obj, &keys, version).map_err(reason)? {
            Verified::All => obj,
            Verified::Signatures => {
                tracing::info!("PDU content does not match its hash: kept redacted");
                pdu::redacted(obj, version).map_err(reason)?
            }
        };
        let (pdu, _) = pdu::from_federation(&obj, version).map_err(reason)?;
        AuthEvent::new(&pdu)?; // ids and sender well-formed
        Ok(pdu)
    }

    /// The keys of the servers whose signatures a PDU needs: the sender's, and for a
    /// restricted join the authorising server's.
    async fn keys_for(&self, obj: &CanonicalJsonObject) -> Result<PublicKeyMap, Reason> {
        let v = |k: &str| obj.get(k).and_then(|v| v.as_str().map(str::to_owned));
        let mut servers = Vec::new();
        let sender = v("sender").ok_or("PDU without sender")?;
        servers.push(ruma::UserId::parse(&sender).map_err(reason)?.server_name().to_owned());
        let via = obj
            .get("content")
            .and_then(|c| c.as_object())
            .and_then(|c| c.get("join_authorised_via_users_server"))
            .and_then(|v| v.as_str());
        if let Some(u) = via.and_then(|u| ruma::UserId::parse(u).ok()) {
            servers.push(u.server_name().to_owned());
        }
        let mut map = BTreeMap::new();
        for server in servers {
            let keys = self
                .federation
                .server_keys(&server)
                .await
                .map_err(|e| format!("no keys of {server} to check the signature: {e:#}"))?;
            map.insert(server.to_string(), keys.keys);
        }
        Ok(map)
    }

    /// Keep a refused event out of the timeline, with the reason; returns the reason.
    pub(super) async fn refuse(&self, pdu: &Pdu, why: String) -> Reason {
        tracing::info!(event_id = %pdu.event_id, room_id = %pdu.room_id, why = %why, "PDU refused");
        if let Err(e) = self.store.put_outlier(pdu, Some(&why)).await {
            tracing::warn!(error = %e, "could not record a refused PDU");
        }
        why
    }

    /// The room state before `pdu` (spec: the resolution of the states after its prev
    /// events): the current state when it follows exactly our extremities; else from the
    /// state groups of its prev events (an event from before state groups: the timeline
    /// replayed up to it). Prev events we know nothing of are left out; the current state
    /// if none is known.
    async fn state_before(
        &self,
        pdu: &Pdu,
        rules: &ruma::room_version_rules::RoomVersionRules,
    ) -> Result<Before, Reason> {
        let room_id = pdu.room_id.as_str();
        let extremities = self.extremities(room_id).await.map_err(reason)?;
        let ext: HashSet<&str> = extremities.iter().map(|(id, _)| id.as_str()).collect();
        let prevs: HashSet<&str> = pdu.prev_events.iter().map(String::as_str).collect();
        if ext == prevs {
            return Ok(Before::Current);
        }
        let mut states = Vec::new();
        let mut first: Option<(i64, Arc<StateIds>)> = None;
        let mut all_grouped = true;
        for id in &pdu.prev_events {
            if let Some((_, after)) = self.store.event_groups(id).await.map_err(reason)? {
                let ids = self.group_ids(after).await.map_err(reason)?;
                states.push(self.whole_state(&ids).await.map_err(reason)?);
                first.get_or_insert((after, ids));
            } else if let Some((Some(pos), _, None)) = self.store.any_event(id).await.map_err(reason)? {
                let events = self.store.room_state_events_between(room_id, 0, pos).await.map_err(reason)?;
                states.push(Arc::new(RoomState::from_events(events.into_iter().map(|(_, e)| e))));
                all_grouped = false;
            }
        }
        if states.is_empty() {
            return Ok(Before::Current);
        }
        if let (1, true, Some((group, _))) = (states.len(), all_grouped, &first) {
            let group = self.group_head(*group).await.map_err(reason)?;
            return Ok(Before::Other { state: states.remove(0), group, new: Vec::new() });
        }
        let state = if states.len() == 1 { states.remove(0) } else { self.resolve_states(rules, &states).await? };
        let ids = state.ids();
        let g = match &first {
            Some((group, base)) => {
                let head = self.group_head(*group).await.map_err(reason)?;
                self.group_for(room_id, head, base, &ids)
            }
            None => self.snapshot(room_id, &ids),
        };
        let group = GroupHead { id: g.id, chain_len: g.chain_len };
        Ok(Before::Other { state, group, new: vec![g] })
    }

    /// State resolution v2 over whole room states (see `resolve.rs`); loads the auth chains.
    pub(crate) async fn resolve_states(
        &self,
        rules: &ruma::room_version_rules::RoomVersionRules,
        states: &[Arc<RoomState>],
    ) -> Result<Arc<RoomState>, Reason> {
        let mut pdus: HashMap<String, Pdu> = HashMap::new();
        let mut maps = Vec::with_capacity(states.len());
        let mut chains = Vec::with_capacity(states.len());
        for state in states {
            let mut map = ruma::state_res::StateMap::new();
            let mut chain = ruma::state_res::utils::event_id_set::EventIdSet::new();
            let mut todo: Vec<String> = Vec::new();
            for e in state.iter() {
                let id = OwnedEventId::try_from(e.event_id.as_str()).map_err(reason)?;
                map.insert(resolve::key(&e.kind, e.state_key.as_deref().unwrap_or_default()), id);
                pdus.entry(e.event_id.clone()).or_insert_with(|| (**e).clone());
                todo.extend(e.auth_events.iter().cloned());
            }
            let mut seen = HashSet::new();
            while let Some(id) = todo.pop() {
                if !seen.insert(id.clone()) {
                    continue;
                }
                if !pdus.contains_key(&id) {
                    match self.store.any_event(&id).await.map_err(reason)? {
                        Some((_, p, _)) => {
                            pdus.insert(id.clone(), p);
                        }
                        None => continue,
                    }
                }
                todo.extend(pdus[&id].auth_events.iter().cloned());
                chain.insert(OwnedEventId::try_from(id.as_str()).map_err(reason)?);
            }
            maps.push(map);
            chains.push(chain);
        }
        let events: HashMap<OwnedEventId, AuthEvent> =
            pdus.values().filter_map(|p| AuthEvent::new(p).ok()).map(|a| (a.id().to_owned(), a)).collect();
        let resolved = resolve::resolve(rules, &maps, chains, &events)?;
        let state = resolved.values().filter_map(|id| pdus.get(id.as_str()).cloned());
        Ok(Arc::new(RoomState::from_events(state)))
    }
}
