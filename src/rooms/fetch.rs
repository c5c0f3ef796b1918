//! What an incoming PDU needs from the server that sent it (spec "Retrieving events"): its
//! unknown auth events (`/event_auth`), the events between our extremities and it
//! (`get_missing_events`), and the state at prev events still missing (`/state_ids`, then
//! `/event`). Everything fetched is bounded, checked (signatures, hash) and authorised
//! against its own auth events, oldest first, before anything uses it
//! ([`Rooms::take_in_fetched`]).
use std::collections::HashMap;
use std::sync::Arc;

use ruma::{OwnedEventId, RoomVersionId, ServerName};
use serde_json::{json, Value};

use super::event::Pdu;
use super::inbound::{reason, Prepared, Reason};
use super::resolve::{self, AuthEvent};
use super::send::with_event;
use super::service::Rooms;
use super::state::RoomState;
use super::state_groups::GroupHead;
use crate::federation::client::enc;
use crate::federation::pdu;
use crate::store::state_groups::StateIds;

/// Most events asked for with one `get_missing_events`.
const MISSING_EVENTS_LIMIT: usize = 10;
/// Most events fetched from the origin to take in one PDU (its auth chain with
/// `/event_auth`; the state at a missing prev event with `/event`).
const MAX_FETCHED_EVENTS: usize = 200;
/// Most missing prev events whose state is asked for with `/state_ids`.
const MAX_STATE_IDS_PREVS: usize = 5;

impl Rooms {
    /// The auth events of `pdu`. Unknown ones are asked of `origin` with `/event_auth`
    /// (bounded), and each fetched event must pass its own checks first
    /// ([`Rooms::take_in_fetched`]). A rejected or still unknown auth event rejects the event.
    pub(super) async fn auth_events_of(
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
    pub(super) async fn fetch_missing_prevs(&self, origin: &str, pdu: &Pdu) {
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
    pub(super) async fn fetch_prev_states(&self, origin: &str, pdu: &Pdu, version: &RoomVersionId) {
        let mut missing = Vec::new();
        for id in &pdu.prev_events {
            let known = match self.store.any_event(id).await {
                // In the timeline, or refused (nothing to fetch: its state would not be used).
                Ok(Some((Some(_), _, _)) | Some((_, _, Some(_)))) => true,
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
}
