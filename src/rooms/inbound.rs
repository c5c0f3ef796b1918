//! PDUs from other servers (spec "Checks performed on receipt of a PDU"): format and size,
//! signatures and content hash (a bad hash: the event is kept redacted), auth against the
//! event's own auth events, against the state before it, and a soft-fail check against the
//! current state; missing prev events are asked for with `get_missing_events` (bounded);
//! a fork is merged with state resolution v2 (`resolve.rs`). Rejected and soft-failed
//! events are kept outside the timeline (`room_outliers`) and never reach clients; accepted
//! ones take a stream position and wake local members like local events (`after_persist`).
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
use crate::federation::client::enc;
use crate::federation::pdu;

/// Largest PDU accepted (spec "Size limits"), in bytes of its JSON.
pub const MAX_PDU_BYTES: usize = 65_536;
/// Most events asked for with one `get_missing_events`.
const MISSING_EVENTS_LIMIT: usize = 10;

/// Why a PDU was refused (reported back to the sending server).
pub type Reason = String;

/// A PDU that passed the checks needing no room state.
struct Checked {
    pdu: Pdu,
    ev: AuthEvent,
    rules: ruma::room_version_rules::RoomVersionRules,
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
}

fn reason(e: impl std::fmt::Display) -> Reason {
    e.to_string()
}

impl Rooms {
    /// Take in one PDU of a transaction from `origin` (the entry point of `PUT /send`):
    /// the event id if accepted, else why not. A known event is accepted again (idempotent).
    pub async fn receive_pdu(&self, origin: &str, pdu: Value) -> Result<String, String> {
        let room_id = pdu.get("room_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        if self.refuses_peeked_events(&room_id).await {
            tracing::info!(origin, room_id, "PDU of a room whose peek ended refused");
            return Err(format!("this server does not peek {room_id} any more"));
        }
        let accepted = self.ingest(origin, pdu, true).await;
        match &accepted {
            Err(e) => tracing::info!(origin, error = %e, "PDU refused"),
            Ok(a) => self.relay_to_peekers(&a.pdu, &a.state_before, origin),
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
                }
                self.commit(p).await
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
                (Some(_), _) => return Ok(Prepared::Known(Accepted { state_before: state, pdu: Arc::new(pdu) })),
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
        Ok(Prepared::New(Box::new(Checked { pdu, ev, rules })))
    }

    /// The checks against room state and the write, under the write lock.
    async fn commit(&self, checked: Box<Checked>) -> Result<Accepted, Reason> {
        let Checked { pdu, ev, rules } = *checked;
        let room_id = pdu.room_id.clone();
        let _guard = self.write_lock.lock().await;
        if self.store.get_event(&pdu.event_id).await.map_err(reason)?.is_some() {
            return Ok(Accepted { state_before: self.state(&room_id).await.map_err(reason)?, pdu: Arc::new(pdu) });
        }
        let state_before = self.state_before(&pdu, &rules).await?;
        let before_view = self.auth_view(&state_before, &pdu).await.map_err(reason)?;
        if let Err(e) = resolve::check_against_state(&rules, &ev, &before_view) {
            return Err(self.refuse(&pdu, format!("fails auth against the state before it: {e}")).await);
        }
        let current = self.state(&room_id).await.map_err(reason)?;
        if !Arc::ptr_eq(&current, &state_before) {
            let current_view = self.auth_view(&current, &pdu).await.map_err(reason)?;
            if let Err(e) = resolve::check_against_state(&rules, &ev, &current_view) {
                return Err(self.refuse(&pdu, format!("soft-failed against the current state: {e}")).await);
            }
        }
        let mut pdu = pdu;
        let replaced = match pdu.state_key.as_deref() {
            Some(sk) => self.state_event_of(&current, &pdu.kind, sk).await.map_err(reason)?,
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
        let new_state = if follows_all {
            after_event
        } else {
            self.resolve_states(&rules, &[current.clone(), after_event]).await?
        };
        let pos = self.stream.allocate();
        self.store.persist_event(&pdu, pos.pos, None).await.map_err(reason)?;
        // What resolution decided beyond "the event's own state key now names it".
        let expected = with_event(current.clone(), &pdu);
        let overrides: Vec<&Pdu> = new_state
            .iter()
            .filter(|e| {
                let sk = e.state_key.as_deref().unwrap_or_default();
                expected.get(&e.kind, sk).is_none_or(|x| x.event_id != e.event_id)
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
        Ok(Accepted { pdu, state_before })
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

    /// The auth events of `pdu`, asking `origin` for those we do not have (kept as outliers
    /// after their signatures are checked). A rejected auth event rejects the event.
    async fn auth_events_of(
        &self,
        origin: &str,
        pdu: &Pdu,
        version: &RoomVersionId,
    ) -> Result<HashMap<OwnedEventId, AuthEvent>, Reason> {
        let mut out = HashMap::new();
        for id in &pdu.auth_events {
            let ev = match self.store.any_event(id).await.map_err(reason)? {
                Some((_, p, None)) => p,
                Some((_, _, Some(r))) => return Err(format!("auth event {id} was refused: {r}")),
                None => self.fetch_event(origin, id, version).await?,
            };
            if ev.room_id != pdu.room_id {
                return Err(format!("auth event {id} is from another room"));
            }
            let a = AuthEvent::new(&ev)?;
            out.insert(a.id().to_owned(), a);
        }
        Ok(out)
    }

    /// `GET /event/{id}` from `server`: checked (format, signatures) and kept as an outlier.
    pub(crate) async fn fetch_event(&self, server: &str, id: &str, version: &RoomVersionId) -> Result<Pdu, Reason> {
        let dest = <&ServerName>::try_from(server).map_err(reason)?;
        let resp = self
            .federation
            .get(dest, &format!("/_matrix/federation/v1/event/{}", enc(id)))
            .await
            .map_err(|e| format!("fetching {id} from {server}: {e:#}"))?;
        let raw =
            resp.body.get("pdus").and_then(|p| p.get(0)).cloned().ok_or_else(|| format!("{server} has no {id}"))?;
        let pdu = self.check_pdu(raw, version).await?;
        if pdu.event_id != id {
            return Err(format!("{server} answered another event for {id}"));
        }
        self.store.put_outlier(&pdu, None).await.map_err(reason)?;
        Ok(pdu)
    }

    /// Ask `origin` for the events between our extremities and `pdu` when some of its prev
    /// events are unknown, and take them in oldest first (at most `MISSING_EVENTS_LIMIT`;
    /// they do not fetch further themselves).
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
                Ok(Prepared::New(p)) => self.commit(p).await.map(|_| ()),
                Ok(Prepared::Known(_)) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = done {
                tracing::info!(origin, error = %e, "a missing event was refused");
            }
        }
    }

    /// The room state before `pdu`: the current state when it follows our extremities,
    /// else the state after each known prev event (the timeline replayed up to it),
    /// resolved when they differ. Unknown prev events are left out (the current state if
    /// none is known): the simplification documented in docs/architecture.md.
    async fn state_before(
        &self,
        pdu: &Pdu,
        rules: &ruma::room_version_rules::RoomVersionRules,
    ) -> Result<Arc<RoomState>, Reason> {
        let room_id = pdu.room_id.as_str();
        let current = self.state(room_id).await.map_err(reason)?;
        let extremities = self.extremities(room_id).await.map_err(reason)?;
        let mut known = Vec::new();
        for id in &pdu.prev_events {
            if let Some((Some(pos), _, _)) = self.store.any_event(id).await.map_err(reason)? {
                known.push((id.clone(), pos));
            }
        }
        let ext: HashSet<&str> = extremities.iter().map(|(id, _)| id.as_str()).collect();
        let prevs: HashSet<&str> = known.iter().map(|(id, _)| id.as_str()).collect();
        if known.is_empty() || ext == prevs {
            return Ok(current);
        }
        let mut states = Vec::with_capacity(known.len());
        for (_, pos) in &known {
            let events = self.store.room_state_events_between(room_id, 0, *pos).await.map_err(reason)?;
            states.push(Arc::new(RoomState::from_events(events.into_iter().map(|(_, e)| e))));
        }
        if states.len() == 1 {
            return Ok(states.remove(0));
        }
        self.resolve_states(rules, &states).await
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
