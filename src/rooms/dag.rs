//! The room DAG (spec "Room Versions" 10 and 11, server-server API "Auth events selection"):
//! which events a new event follows (`prev_events`: the room's forward extremities), which
//! authorise it (`auth_events`), its depth, and its seal (content hash, our signature, the
//! reference hash as its id).
use std::sync::Arc;

use ruma::{CanonicalJsonObject, RoomVersionId};
use serde_json::Value;

use super::event::Pdu;
use super::service::Rooms;
use super::state::RoomState;
use crate::error::{MatrixError, Result};
use crate::federation::pdu;

/// (event id, depth) of each forward extremity of a room.
pub(crate) type Extremities = Arc<Vec<(String, i64)>>;

/// The version of a room, from its create event (or the create event being built). Rooms
/// without a readable version are treated as version 10, the one Seed always created.
pub(crate) fn room_version(state: &RoomState, create_content: Option<&Value>) -> RoomVersionId {
    let version = match create_content {
        Some(c) => c.get("room_version").and_then(Value::as_str),
        None => state.room_version(),
    };
    version.and_then(|v| RoomVersionId::try_from(v).ok()).unwrap_or(RoomVersionId::V10)
}

/// Spec "Auth events selection": the create event, the power levels, the sender's member
/// event; for a membership event also the target's, the join rules (join, invite, knock),
/// the third-party invite it uses and the member event of a restricted join's authoriser.
pub(crate) fn auth_events_for(
    state: &RoomState,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: &Value,
) -> Vec<String> {
    if kind == "m.room.create" {
        return Vec::new();
    }
    let mut ids: Vec<String> = Vec::with_capacity(5);
    let mut add = |kind: &str, state_key: &str| {
        // Ids only: the cached state keeps member events as ids (`state.rs`).
        if let Some(id) = state.event_id(kind, state_key) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    };
    add("m.room.create", "");
    add("m.room.power_levels", "");
    add("m.room.member", sender);
    if kind == "m.room.member" {
        add("m.room.member", state_key.unwrap_or_default());
        let membership = content.get("membership").and_then(Value::as_str);
        if matches!(membership, Some("join" | "invite" | "knock")) {
            add("m.room.join_rules", "");
        }
        let token = content.pointer("/third_party_invite/signed/token").and_then(Value::as_str);
        if let (Some("invite"), Some(token)) = (membership, token) {
            add("m.room.third_party_invite", token);
        }
        let via = content.get("join_authorised_via_users_server").and_then(Value::as_str);
        if let (Some("join"), Some(via)) = (membership, via) {
            add("m.room.member", via);
        }
    }
    ids
}

/// `prev_events` (the deepest 20 extremities) and depth (one more than the deepest) of an
/// event written on top of `extremities`.
pub(crate) fn prev_and_depth(extremities: &[(String, i64)]) -> (Vec<String>, i64) {
    let mut prevs = extremities.to_vec();
    prevs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    prevs.truncate(pdu::MAX_PREV_EVENTS);
    let depth = prevs.first().map_or(1, |p| p.1.saturating_add(1));
    (prevs.into_iter().map(|p| p.0).collect(), depth)
}

/// The extremities once `pdu` is in the room: what it follows no longer is one, it is.
pub(crate) fn extremities_after(old: &[(String, i64)], pdu: &Pdu) -> Vec<(String, i64)> {
    let mut next: Vec<(String, i64)> =
        old.iter().filter(|(id, _)| !pdu.prev_events.contains(id) && *id != pdu.event_id).cloned().collect();
    next.push((pdu.event_id.clone(), pdu.depth));
    next
}

impl Rooms {
    /// Add the content hash and set the id (the reference hash). Content that is not
    /// canonical JSON (floats, integers beyond 2^53) is `M_BAD_JSON`.
    ///
    /// Our signature is not added here: it is added when the event leaves the server
    /// ([`Rooms::signed_pdu`]). The id does not cover signatures, clients never see them, and
    /// most of our events never leave (a profile room's presence: signing each change was 5–6 %
    /// of the server's CPU under the 10,000-user load, issue #13).
    pub(super) fn seal(&self, pdu: &mut Pdu, version: &RoomVersionId) -> Result<()> {
        let mut obj = pdu::to_federation(pdu, &pdu.auth_events, version).map_err(|e| match e {
            pdu::PduError::Malformed(m) => MatrixError::bad_json(format!("event is not canonical JSON: {m}")),
            other => MatrixError::Internal(other.into()),
        })?;
        pdu::add_content_hash(&mut obj, version).map_err(|e| {
            // Hashing refuses only an event over the spec's 65,535 bytes of canonical JSON.
            MatrixError::TooLarge(format!("event too large to hash: {e}"))
        })?;
        pdu.event_id = pdu::event_id(&obj, version).map_err(|e| MatrixError::Internal(e.into()))?;
        pdu.hashes = obj.remove("hashes").and_then(|v| serde_json::to_value(v).ok());
        pdu.signatures = None;
        Ok(())
    }

    /// A stored event as the signed PDU another server receives. Our own events are stored
    /// without our signature ([`Rooms::seal`]); it is added here, the same bytes every time
    /// (Ed25519 is deterministic), so every way out of the server (fan-out, relays to peeking
    /// servers, `/event`, `/state`, `/backfill`, `send_join`, invites) carries it. It is signed
    /// with the key in use when it leaves (there is one key: README "Not there yet", key
    /// rotation). An event of ours stored before events had hashes is left as it was.
    pub(crate) fn signed_pdu(&self, pdu: &Pdu, version: &RoomVersionId) -> Result<CanonicalJsonObject> {
        let mut obj = pdu::signed_json(pdu, version).map_err(|e| MatrixError::Internal(e.into()))?;
        let ours = super::outbound::server_of(&pdu.sender) == Some(self.server_name.as_str());
        if ours && pdu.signatures.is_none() && pdu.hashes.is_some() {
            pdu::sign(&mut obj, &self.server_name, self.federation.event_key(), version)
                .map_err(|e| MatrixError::Internal(e.into()))?;
        }
        Ok(obj)
    }

    /// The forward extremities of a room (cached; from the database on first use: the rows
    /// kept for a forked room, else its newest event).
    pub(crate) async fn extremities(&self, room_id: &str) -> Result<Extremities> {
        if let Some(x) = self.extremities.get(room_id) {
            return Ok(x.clone());
        }
        let mut list = self.store.forward_extremities(room_id).await?;
        if list.is_empty() {
            list.extend(self.store.latest_event(room_id).await?);
        }
        Ok(self.extremities.entry(room_id.to_owned()).or_insert(Arc::new(list)).clone())
    }

    /// Move the extremities past a persisted `pdu` (caller holds the write lock). Only a
    /// room that is or was forked has rows; a linear room costs no write here.
    pub(super) async fn advance_extremities(&self, pdu: &Pdu) -> Result<()> {
        let old = self.extremities(&pdu.room_id).await?;
        let next = extremities_after(&old, pdu);
        if old.len() > 1 || next.len() > 1 {
            let ids: Vec<&str> = if next.len() > 1 { next.iter().map(|(id, _)| id.as_str()).collect() } else { vec![] };
            self.store.set_forward_extremities(&pdu.room_id, &ids).await?;
        }
        self.extremities.insert(pdu.room_id.clone(), Arc::new(next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str, kind: &str, sk: &str, content: Value) -> Pdu {
        Pdu {
            event_id: id.into(),
            kind: kind.into(),
            state_key: Some(sk.into()),
            content,
            sender: "@a:x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn auth_events_follow_the_spec_selection() {
        let state = RoomState::from_events([
            ev("$c", "m.room.create", "", json!({"room_version": "10"})),
            ev("$pl", "m.room.power_levels", "", json!({})),
            ev("$jr", "m.room.join_rules", "", json!({"join_rule": "invite"})),
            ev("$a", "m.room.member", "@a:x", json!({"membership": "join"})),
            ev("$b", "m.room.member", "@b:y", json!({"membership": "invite"})),
        ]);
        assert!(auth_events_for(&state, "@a:x", "m.room.create", Some(""), &json!({})).is_empty());
        assert_eq!(auth_events_for(&state, "@a:x", "m.room.message", None, &json!({})), ["$c", "$pl", "$a"]);
        let join = auth_events_for(&state, "@b:y", "m.room.member", Some("@b:y"), &json!({"membership": "join"}));
        assert_eq!(join, ["$c", "$pl", "$b", "$jr"]);
        let kick = auth_events_for(&state, "@a:x", "m.room.member", Some("@b:y"), &json!({"membership": "leave"}));
        assert_eq!(kick, ["$c", "$pl", "$a", "$b"]);
        assert_eq!(room_version(&state, None), RoomVersionId::V10);
    }

    /// The version is kept when the state is built, read back from the store or changed by
    /// an event, and a create event being built names its own.
    #[test]
    fn the_room_version_follows_the_create_event_however_the_state_was_made() {
        let create = |v: &str| ev("$c", "m.room.create", "", json!({"room_version": v}));
        let mut state = RoomState::default();
        assert_eq!(room_version(&state, None), RoomVersionId::V10, "no create event");
        state.apply(Arc::new(create("11")));
        assert_eq!(room_version(&state, None), RoomVersionId::V11);
        let json = serde_json::to_string(&create("9")).unwrap();
        let stored = RoomState::from_parts(vec![(create("9"), json)], vec![]);
        assert_eq!(room_version(&stored, None), RoomVersionId::V9);
        assert_eq!(room_version(&stored, Some(&json!({"room_version": "11"}))), RoomVersionId::V11);
        let unversioned = RoomState::from_events([ev("$c", "m.room.create", "", json!({}))]);
        assert_eq!(room_version(&unversioned, None), RoomVersionId::V10, "as before: no version read is 10");
    }

    /// Room version 11 create events have no `creator`: the sender is the creator.
    #[test]
    fn a_version_11_create_event_without_creator_is_read_from_its_sender() {
        let mut create = ev("$c", "m.room.create", "", json!({"room_version": "11"}));
        create.sender = "@founder:x".into();
        let state = RoomState::from_events([create]);
        assert_eq!(room_version(&state, None), RoomVersionId::V11);
        let pl = super::super::auth::PowerLevels::of(&state);
        assert_eq!((pl.user("@founder:x", &state), pl.user("@a:x", &state)), (100, 0));
    }

    #[test]
    fn prev_events_are_the_deepest_twenty_extremities() {
        let ext: Vec<(String, i64)> = (0..25).map(|i| (format!("$e{i:02}"), i)).collect();
        let (prevs, depth) = prev_and_depth(&ext);
        assert_eq!((prevs.len(), prevs[0].as_str(), depth), (20, "$e24", 25));
        assert_eq!(prev_and_depth(&[]), (vec![], 1));
        let pdu = Pdu { event_id: "$new".into(), depth: 25, prev_events: prevs, ..Default::default() };
        let after = extremities_after(&ext, &pdu);
        assert_eq!(after.len(), 6, "five left behind and the new one");
    }
}
