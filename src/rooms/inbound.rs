//! PDUs from other servers (spec "Checks performed on receipt of a PDU"): format and size,
//! signatures and content hash (a bad hash: the event is kept redacted), auth against the
//! event's own auth events (fetched with `/event_auth` when unknown, each checked against
//! its own), against the state before it (the resolution of the states after its prev
//! events, kept as state groups: `state_groups.rs`), and a soft-fail check against the
//! current state. Missing prev events are asked for with `get_missing_events` (bounded);
//! when that leaves a gap, the state at each missing prev event is asked for with
//! `/state_ids` and the events we lack with `/event`. A fork is merged with state resolution
//! v2 (`resolve.rs`). Rejected events are kept outside the timeline (`room_outliers`) and
//! never reach clients; soft-failed ones are kept there too, with their state, and answered
//! as accepted (spec "Soft failure"); accepted ones take a stream position and wake local
//! members like local events (`after_persist`).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ruma::signatures::{PublicKeyMap, Verified};
use ruma::{CanonicalJsonObject, OwnedEventId, RoomVersionId, ServerName};
use serde_json::{json, Value};

use super::dag;
use super::event::Pdu;
use super::resolve::{self, AuthEvent};
use super::send::with_event;
use super::service::Rooms;
use super::state::RoomState;
use super::state_groups::GroupHead;
use crate::federation::client::enc;
use crate::federation::pdu;
use crate::store::state_groups::{NewGroup, StateIds};

/// Largest PDU accepted (spec "Size limits"), in bytes of its JSON.
pub const MAX_PDU_BYTES: usize = 65_536;
/// Most events asked for with one `get_missing_events`.
const MISSING_EVENTS_LIMIT: usize = 10;
/// Most events fetched from the origin to take in one PDU (its auth chain with
/// `/event_auth`; the state at a missing prev event with `/event`).
const MAX_FETCHED_EVENTS: usize = 200;
/// Most missing prev events whose state is asked for with `/state_ids`.
const MAX_STATE_IDS_PREVS: usize = 5;

/// Why a PDU was refused (reported back to the sending server).
pub type Reason = String;

/// A PDU that passed the checks needing no room state.
struct Checked {
    pdu: Pdu,
    ev: AuthEvent,
    rules: ruma::room_version_rules::RoomVersionRules,
    version: RoomVersionId,
}

enum Prepared {
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

fn reason(e: impl std::fmt::Display) -> Reason {
    e.to_string()
}

impl Rooms {
    /// Take in one PDU of a transaction from `origin` (the entry point of `PUT /send`):
    /// the event id if accepted (or soft-failed, which the spec answers like an accepted
    /// event), else why not. A known event is accepted again (idempotent).
    pub async fn receive_pdu(&self, origin: &str, pdu: Value) -> Result<String, String> {
        let accepted = self.ingest(origin, pdu, true).await;
        if let Err(e) = &accepted {
            tracing::info!(origin, error = %e, "PDU refused");
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
    async fn prepare(&self, origin: &str, value: Value) -> Result<Prepared, Reason> {
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
    async fn commit(&self, checked: Box<Checked>) -> Result<Accepted, Reason> {
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
        let (new_state, new_head) = if follows_all {
            (after_event, after_head)
        } else {
            let whole_current = self.whole(&current).await?;
            let whole_after = self.whole(&after_event).await?;
            let resolved = self.resolve_states(&rules, &[whole_current, whole_after]).await?;
            let g = self.group_for(&room_id, after_head, &after_event.ids(), &resolved.ids());
            let h = GroupHead { id: g.id, chain_len: g.chain_len };
            groups.new.push(g);
            (resolved, h)
        };
        let pos = self.stream.allocate();
        self.store.persist_event(&pdu, pos.pos, None, Some(&groups)).await.map_err(reason)?;
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
    async fn refuse(&self, pdu: &Pdu, why: String) -> Reason {
        tracing::info!(event_id = %pdu.event_id, room_id = %pdu.room_id, why = %why, "PDU refused");
        if let Err(e) = self.store.put_outlier(pdu, Some(&why)).await {
            tracing::warn!(error = %e, "could not record a refused PDU");
        }
        why
    }

    /// The auth events of `pdu`. Unknown ones are asked of `origin` with `/event_auth`
    /// (bounded), and each fetched event must pass its own checks first
    /// ([`Rooms::take_in_fetched`]). A rejected or still unknown auth event rejects the event.
    async fn auth_events_of(
        &self,
        origin: &str,
        pdu: &Pdu,
        version: &RoomVersionId,
    ) -> Result<HashMap<OwnedEventId, AuthEvent>, Reason> {
        let mut unknown = false;
        for id in &pdu.auth_events {
            unknown |= self.store.any_event(id).await.map_err(reason)?.is_none();
        }
        if unknown {
            let path = format!("/_matrix/federation/v1/event_auth/{}/{}", enc(&pdu.room_id), enc(&pdu.event_id));
            let chain = self.fetch_json(origin, &path).await?;
            let chain = chain.get("auth_chain").and_then(Value::as_array).cloned().unwrap_or_default();
            if chain.len() > MAX_FETCHED_EVENTS {
                return Err(format!(
                    "an auth chain of {} events to fetch, the limit is {MAX_FETCHED_EVENTS}",
                    chain.len()
                ));
            }
            self.take_in_fetched(&pdu.room_id, version, chain).await;
        }
        let mut out = HashMap::new();
        for id in &pdu.auth_events {
            let ev = match self.store.any_event(id).await.map_err(reason)? {
                Some((_, p, None)) => p,
                Some((_, _, Some(r))) => return Err(format!("auth event {id} was refused: {r}")),
                None => return Err(format!("auth event {id} is unknown (not in the auth chain {origin} sent)")),
            };
            if ev.room_id != pdu.room_id {
                return Err(format!("auth event {id} is from another room"));
            }
            let a = AuthEvent::new(&ev)?;
            out.insert(a.id().to_owned(), a);
        }
        Ok(out)
    }

    /// A signed `GET` to `server`, its JSON answer (an error unless 2xx).
    async fn fetch_json(&self, server: &str, path: &str) -> Result<Value, Reason> {
        let dest = <&ServerName>::try_from(server).map_err(reason)?;
        let resp = self.federation.get(dest, path).await.map_err(|e| format!("asking {server}: {e:#}"))?;
        if !resp.status.is_success() {
            return Err(format!("{server} answered {} to {path}", resp.status));
        }
        Ok(resp.body)
    }

    /// Take in events fetched from another server (an auth chain, the state at an event):
    /// each is checked (format, signatures, hash) and, oldest first, authorised against its
    /// own auth events (known here or earlier in the batch); those that pass are kept as
    /// outliers, the others as rejected. Events of other rooms are ignored.
    async fn take_in_fetched(&self, room_id: &str, version: &RoomVersionId, raws: Vec<Value>) {
        let Ok(rules) = pdu::rules(version) else { return };
        let mut pdus = Vec::new();
        for raw in raws.into_iter().take(MAX_FETCHED_EVENTS) {
            if raw.get("room_id").and_then(Value::as_str) != Some(room_id) {
                continue;
            }
            match self.check_pdu(raw, version).await {
                Ok(p) => pdus.push(p),
                Err(e) => tracing::info!(room_id, error = %e, "a fetched event was dropped"),
            }
        }
        pdus.sort_by_key(|p| p.depth);
        let mut batch: HashMap<String, AuthEvent> = HashMap::new();
        for p in pdus {
            match self.store.any_event(&p.event_id).await {
                Ok(Some((_, known, None))) => {
                    if let Ok(a) = AuthEvent::new(&known) {
                        batch.insert(p.event_id.clone(), a);
                    }
                    continue;
                }
                Ok(Some((_, _, Some(_)))) => continue,
                Ok(None) => {}
                Err(e) => return tracing::warn!(error = %e, "taking in fetched events"),
            }
            let mut auth = HashMap::new();
            let mut missing = None;
            for id in &p.auth_events {
                if let Some(a) = batch.get(id) {
                    auth.insert(a.id().to_owned(), a.clone());
                    continue;
                }
                match self.store.any_event(id).await {
                    Ok(Some((_, e, None))) if e.room_id == room_id => {
                        if let Ok(a) = AuthEvent::new(&e) {
                            auth.insert(a.id().to_owned(), a);
                        }
                    }
                    _ => missing = Some(id.clone()),
                }
            }
            let checked = match (missing, AuthEvent::new(&p)) {
                (Some(id), _) => Err(format!("its auth event {id} is unknown or refused")),
                (None, Err(e)) => Err(e),
                (None, Ok(ev)) => resolve::check_against_auth_events(&rules, &ev, &auth).map(|_| ev),
            };
            match checked {
                Ok(ev) => {
                    if let Err(e) = self.store.put_outlier(&p, None).await {
                        return tracing::warn!(error = %e, "could not keep a fetched event");
                    }
                    batch.insert(p.event_id.clone(), ev);
                }
                Err(e) => {
                    self.refuse(&p, format!("a fetched event fails auth against its auth events: {e}")).await;
                }
            }
        }
    }

    /// Ask `origin` for the events between our extremities and `pdu` when some of its prev
    /// events are unknown, and take them in oldest first (at most `MISSING_EVENTS_LIMIT`;
    /// they do not ask for more missing events, but the state at a gap before them is
    /// fetched with `/state_ids`).
    async fn fetch_missing_prevs(&self, origin: &str, pdu: &Pdu) {
        let mut missing = false;
        for id in &pdu.prev_events {
            if !matches!(self.store.any_event(id).await, Ok(Some((Some(_), _, _)))) {
                missing = true;
            }
        }
        let Ok(dest) = <&ServerName>::try_from(origin) else { return };
        if !missing {
            return;
        }
        let earliest: Vec<String> = match self.extremities(&pdu.room_id).await {
            Ok(x) => x.iter().map(|(id, _)| id.clone()).collect(),
            Err(_) => return,
        };
        let body = json!({
            "earliest_events": earliest, "latest_events": [pdu.event_id],
            "limit": MISSING_EVENTS_LIMIT, "min_depth": 0,
        });
        let path = format!("/_matrix/federation/v1/get_missing_events/{}", enc(&pdu.room_id));
        let events = match self.federation.send(dest, http::Method::POST, &path, Some(&body), true).await {
            Ok(r) if r.status.is_success() => {
                r.body.get("events").and_then(Value::as_array).cloned().unwrap_or_default()
            }
            Ok(r) => return tracing::info!(origin, status = %r.status, "get_missing_events refused"),
            Err(e) => return tracing::info!(origin, error = %format!("{e:#}"), "get_missing_events failed"),
        };
        let mut events: Vec<Value> = events.into_iter().take(MISSING_EVENTS_LIMIT).collect();
        events.sort_by_key(|e| e.get("depth").and_then(Value::as_i64).unwrap_or(i64::MAX));
        for e in events {
            let done = match self.prepare(origin, e).await {
                Ok(Prepared::New(p)) => {
                    // The oldest of them may still follow a gap: its state from `/state_ids`.
                    self.fetch_prev_states(origin, &p.pdu, &p.version).await;
                    self.commit(p).await.map(|_| ())
                }
                Ok(Prepared::Known(_)) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = done {
                tracing::info!(origin, error = %e, "a missing event was refused");
            }
        }
    }

    /// When prev events of `pdu` are still unknown after `get_missing_events` (the gap was
    /// too long, or `origin` failed), ask `origin` for the state at each (`/state_ids`,
    /// spec "Retrieving events"), fetch the events we lack (`/event`, bounded, each checked
    /// and authorised like an auth chain), and keep the prev event as an outlier with that
    /// state: [`Rooms::state_before`] then resolves the PDU's prev states as usual.
    async fn fetch_prev_states(&self, origin: &str, pdu: &Pdu, version: &RoomVersionId) {
        let mut missing = Vec::new();
        for id in &pdu.prev_events {
            let known = match self.store.any_event(id).await {
                Ok(Some((Some(_), _, _))) => true,
                Ok(_) => matches!(self.store.event_groups(id).await, Ok(Some(_))),
                Err(_) => return,
            };
            if !known {
                missing.push(id.clone());
            }
        }
        for prev in missing.into_iter().take(MAX_STATE_IDS_PREVS) {
            if let Err(e) = self.fetch_state_at(origin, &pdu.room_id, &prev, version).await {
                tracing::info!(origin, prev = %prev, error = %e, "no state for a missing prev event");
            }
        }
    }

    async fn fetch_state_at(
        &self,
        origin: &str,
        room_id: &str,
        prev: &str,
        version: &RoomVersionId,
    ) -> Result<(), Reason> {
        let path = format!("/_matrix/federation/v1/state_ids/{}?event_id={}", enc(room_id), enc(prev));
        let body = self.fetch_json(origin, &path).await?;
        let list = |k: &str| -> Vec<String> {
            body.get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        let (state_ids, chain_ids) = (list("pdu_ids"), list("auth_chain_ids"));
        let mut wanted = Vec::new();
        for id in chain_ids.iter().chain(&state_ids).chain([&prev.to_owned()]) {
            if !wanted.contains(id) && self.store.any_event(id).await.map_err(reason)?.is_none() {
                wanted.push(id.clone());
            }
        }
        if wanted.len() > MAX_FETCHED_EVENTS {
            return Err(format!("{} events to fetch, the limit is {MAX_FETCHED_EVENTS}", wanted.len()));
        }
        let mut raws = Vec::with_capacity(wanted.len());
        for id in &wanted {
            let ev = self.fetch_json(origin, &format!("/_matrix/federation/v1/event/{}", enc(id))).await?;
            let raw = ev.get("pdus").and_then(|p| p.get(0)).cloned().ok_or_else(|| format!("{origin} has no {id}"))?;
            raws.push(raw);
        }
        self.take_in_fetched(room_id, version, raws).await;
        // The state before `prev` as the origin sees it; every event of it must be usable.
        let events = self.any_events_by_id(state_ids.clone()).await.map_err(reason)?;
        if events.len() != state_ids.len() {
            return Err("some events of the state were refused or not sent".into());
        }
        let mut ids = StateIds::new();
        for e in &events {
            let sk = e.state_key.clone().ok_or_else(|| format!("{} in the state is not a state event", e.event_id))?;
            ids.insert((e.kind.clone(), sk), e.event_id.clone());
        }
        let prev_pdu = match self.store.any_event(prev).await.map_err(reason)? {
            Some((_, p, None)) if p.room_id == room_id => Arc::new(p),
            _ => return Err(format!("{prev} was not sent or was refused")),
        };
        let _guard = self.write_lock.lock().await;
        let snapshot = self.snapshot(room_id, &ids);
        let head = GroupHead { id: snapshot.id, chain_len: 0 };
        let before = Arc::new(RoomState::from_events(events.iter().map(|e| (**e).clone())));
        let after = with_event(before, &prev_pdu);
        let (groups, _) = self.groups_on(head, vec![snapshot], &prev_pdu, &after);
        self.store.put_outlier_with_groups(&prev_pdu, &groups).await.map_err(reason)
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
