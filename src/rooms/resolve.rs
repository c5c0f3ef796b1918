//! Our events as ruma `state_res` sees them, and the three uses we make of it: the spec
//! authorization rules (state-independent and state-dependent), and state resolution v2
//! for forks (`ruma::state_res::resolve`).
use std::collections::HashMap;
use std::sync::Arc;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::{self, StateMap};
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::value::RawValue;

use super::event::Pdu;
use super::state::RoomState;

/// A stored event in the shape `state_res` reads (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct AuthEvent(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    id: OwnedEventId,
    room_id: OwnedRoomId,
    sender: OwnedUserId,
    ts: MilliSecondsSinceUnixEpoch,
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    prev: Vec<OwnedEventId>,
    auth: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
}

impl AuthEvent {
    pub(crate) fn new(pdu: &Pdu) -> Result<Self, String> {
        let id = |s: &str| OwnedEventId::try_from(s).map_err(|e| format!("bad event id {s}: {e}"));
        let ids = |v: &[String]| v.iter().map(|s| id(s)).collect::<Result<Vec<_>, _>>();
        Ok(Self(Arc::new(Inner {
            id: id(&pdu.event_id)?,
            room_id: OwnedRoomId::try_from(pdu.room_id.as_str()).map_err(|e| format!("bad room id: {e}"))?,
            sender: OwnedUserId::try_from(pdu.sender.as_str()).map_err(|e| format!("bad sender: {e}"))?,
            ts: MilliSecondsSinceUnixEpoch(ruma::UInt::try_from(pdu.origin_server_ts.max(0)).unwrap_or_default()),
            kind: TimelineEventType::from(pdu.kind.as_str()),
            content: serde_json::value::to_raw_value(&pdu.content).map_err(|e| e.to_string())?,
            state_key: pdu.state_key.clone(),
            prev: ids(&pdu.prev_events)?,
            auth: ids(&pdu.auth_events)?,
            redacts: pdu.redacts().map(id).transpose()?,
        })))
    }

    pub(crate) fn id(&self) -> &EventId {
        &self.0.id
    }
}

impl state_res::Event for AuthEvent {
    type Id = OwnedEventId;
    fn event_id(&self) -> &OwnedEventId {
        &self.0.id
    }
    fn room_id(&self) -> Option<&RoomId> {
        Some(&self.0.room_id)
    }
    fn sender(&self) -> &UserId {
        &self.0.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.0.ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.0.kind
    }
    fn content(&self) -> &RawValue {
        &self.0.content
    }
    fn state_key(&self) -> Option<&str> {
        self.0.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.0.prev.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.0.auth.iter())
    }
    fn redacts(&self) -> Option<&OwnedEventId> {
        self.0.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        false
    }
}

/// The state key `state_res` uses.
pub(crate) fn key(kind: &str, state_key: &str) -> (StateEventType, String) {
    (StateEventType::from(kind), state_key.to_owned())
}

/// Spec authorization rules 1–2 (the create event; `auth_events` complete and of the right
/// types), against the event's own `auth_events`.
pub(crate) fn check_against_auth_events(
    rules: &RoomVersionRules,
    ev: &AuthEvent,
    auth_events: &HashMap<OwnedEventId, AuthEvent>,
) -> Result<(), String> {
    state_res::check_state_independent_auth_rules(&rules.authorization, ev, |id| auth_events.get(id).cloned())?;
    // The remaining rules against the state the auth events make up.
    let by_key: HashMap<(StateEventType, String), AuthEvent> = auth_events
        .values()
        .filter_map(|e| Some((key(e.0.kind.to_string().as_str(), e.0.state_key.as_deref()?), e.clone())))
        .collect();
    state_res::check_state_dependent_auth_rules(&rules.authorization, ev, |t, sk| {
        by_key.get(&(t.clone(), sk.to_owned())).cloned()
    })
}

/// Spec authorization rules 3 and on, against a room state.
pub(crate) fn check_against_state(rules: &RoomVersionRules, ev: &AuthEvent, state: &RoomState) -> Result<(), String> {
    state_res::check_state_dependent_auth_rules(&rules.authorization, ev, |t, sk| {
        state.get(&t.to_string(), sk).and_then(|p| AuthEvent::new(p).ok())
    })
}

/// Spec authorization rules 3 and on, against the state events a check reads, given by
/// (type, state key) (see `Rooms::auth_events_in`).
pub(crate) fn check_against_events(
    rules: &RoomVersionRules,
    ev: &AuthEvent,
    events: &HashMap<(String, String), AuthEvent>,
) -> Result<(), String> {
    state_res::check_state_dependent_auth_rules(&rules.authorization, ev, |t, sk| {
        events.get(&(t.to_string(), sk.to_owned())).cloned()
    })
}

/// State resolution v2 over `states` (each a map of state key to event id). `events` must
/// hold every event of the states and of their auth chains; `auth_chains` the full auth
/// chain of each state.
pub(crate) fn resolve(
    rules: &RoomVersionRules,
    states: &[StateMap<OwnedEventId>],
    auth_chains: Vec<state_res::utils::event_id_set::EventIdSet<OwnedEventId>>,
    events: &HashMap<OwnedEventId, AuthEvent>,
) -> Result<StateMap<OwnedEventId>, String> {
    let v2 = rules.state_res.v2_rules().ok_or("room version without state resolution v2")?;
    state_res::resolve(&rules.authorization, v2, states, auth_chains, |id| events.get(id).cloned(), |_| None)
        .map_err(|e| e.to_string())
}
