//! The room state at each event (spec server-server "Checks performed on receipt of a
//! PDU": the state before an event is the resolution of the states after its prev events).
//! Kept as state groups (`store/state_groups.rs`): the current state of a room has a group
//! (its head); a message takes the head as its state before and after, a state event adds a
//! one-entry delta; a fork's resolved state is a delta against one side. Groups are
//! immutable, so loaded ones are cached.
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hashlink::LruCache;
use parking_lot::Mutex;

use super::event::Pdu;
use super::service::Rooms;
use super::state::RoomState;
use crate::error::Result;
use crate::store::state_groups::{EventGroups, NewGroup, StateIds, EMPTY_GROUP};

/// Longest delta chain before a snapshot is written instead (bounds a group's load).
const MAX_DELTA_CHAIN: i64 = 100;
/// Groups kept loaded.
const GROUP_CACHE: usize = 256;

/// The group of a room's current state, and its delta chain length.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupHead {
    pub id: i64,
    pub chain_len: i64,
}

impl GroupHead {
    pub(crate) const EMPTY: Self = Self { id: EMPTY_GROUP, chain_len: 0 };
}

/// Loaded groups, least recently used dropped first.
pub(crate) struct GroupCache(Mutex<LruCache<i64, Arc<StateIds>>>);

impl GroupCache {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(LruCache::new(GROUP_CACHE)))
    }
}

/// The entries that turn `base` into `target` (an empty id removes a key).
pub(crate) fn diff(base: &StateIds, target: &StateIds) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = target
        .iter()
        .filter(|(k, id)| base.get(*k) != Some(*id))
        .map(|((t, sk), id)| (t.clone(), sk.clone(), id.clone()))
        .collect();
    out.extend(base.keys().filter(|k| !target.contains_key(*k)).map(|(t, sk)| (t.clone(), sk.clone(), String::new())));
    out
}

impl Rooms {
    /// Whether local events of a room with state `state` keep state groups. Only a room
    /// shared with other servers needs the state at each event (auth of their events,
    /// `/state_ids`); a room of our users only (profile rooms, local chats) writes none, and
    /// gets a snapshot of its state once another server takes part ([`Rooms::current_group`]).
    /// With federation off, never.
    pub(crate) fn keeps_groups(&self, state: &RoomState) -> bool {
        if !self.federation.enabled() {
            return false;
        }
        let ours = Some(self.server_name.as_str());
        let elsewhere = |u: &str| super::outbound::server_of(u) != ours;
        state.get("m.room.create", "").is_some_and(|c| elsewhere(&c.sender))
            || state.members_with(&["join", "invite", "leave", "ban", "knock"]).any(elsewhere)
    }

    /// The groups of a local event (`state`: the room state before it, `after`: after it),
    /// or `None` for a room that keeps none (its cached group is dropped: it no longer
    /// stands for the current state).
    pub(crate) async fn local_groups(
        &self,
        room_id: &str,
        state: &RoomState,
        pdu: &Pdu,
        after: &RoomState,
    ) -> Result<Option<(EventGroups, GroupHead)>> {
        if !self.keeps_groups(after) {
            self.group_heads.remove(room_id);
            return Ok(None);
        }
        let (head, new) = self.current_group(room_id, state).await?;
        Ok(Some(self.groups_on(head, new, pdu, after)))
    }

    fn new_group_id(&self) -> i64 {
        self.next_group.fetch_add(1, Ordering::Relaxed)
    }

    /// The group of a room's current state `current` (caller holds the write lock), and
    /// the groups to write first if it has none yet (a snapshot: a room from before state
    /// groups, or a forked room after a restart).
    pub(crate) async fn current_group(&self, room_id: &str, current: &RoomState) -> Result<(GroupHead, Vec<NewGroup>)> {
        if let Some(h) = self.group_heads.get(room_id) {
            return Ok((*h, Vec::new()));
        }
        if self.extremities(room_id).await?.len() <= 1 {
            if let Some((latest, _)) = self.store.latest_event(room_id).await? {
                if let Some((_, after)) = self.store.event_groups(&latest).await? {
                    let chain_len = self.store.state_group_chain_len(after).await?;
                    return Ok((GroupHead { id: after, chain_len }, Vec::new()));
                }
            }
        }
        let ids = current.ids();
        if ids.is_empty() {
            return Ok((GroupHead::EMPTY, Vec::new()));
        }
        let g = self.snapshot(room_id, &ids);
        Ok((GroupHead { id: g.id, chain_len: 0 }, vec![g]))
    }

    pub(crate) fn snapshot(&self, room_id: &str, ids: &StateIds) -> NewGroup {
        NewGroup {
            id: self.new_group_id(),
            room_id: room_id.to_owned(),
            parent: None,
            chain_len: 0,
            entries: ids.iter().map(|((t, sk), id)| (t.clone(), sk.clone(), id.clone())).collect(),
        }
    }

    /// A group for `target`, as a delta against `base` (whose state is `base_ids`) or a
    /// snapshot when the chain is long.
    pub(crate) fn group_for(&self, room_id: &str, base: GroupHead, base_ids: &StateIds, target: &StateIds) -> NewGroup {
        if base.id == EMPTY_GROUP || base.chain_len >= MAX_DELTA_CHAIN {
            return self.snapshot(room_id, target);
        }
        NewGroup {
            id: self.new_group_id(),
            room_id: room_id.to_owned(),
            parent: Some(base.id),
            chain_len: base.chain_len + 1,
            entries: diff(base_ids, target),
        }
    }

    /// The groups of `pdu` on top of the state `before` (group `head`), `after` being the
    /// state after it; `new` are groups still to be written. Returns the event's groups and
    /// the group of the state after it.
    pub(crate) fn groups_on(
        &self,
        head: GroupHead,
        mut new: Vec<NewGroup>,
        pdu: &Pdu,
        after: &RoomState,
    ) -> (EventGroups, GroupHead) {
        let Some(sk) = &pdu.state_key else {
            return (EventGroups { before: head.id, after: head.id, new }, head);
        };
        let g = if head.id == EMPTY_GROUP || head.chain_len >= MAX_DELTA_CHAIN {
            self.snapshot(&pdu.room_id, &after.ids())
        } else {
            NewGroup {
                id: self.new_group_id(),
                room_id: pdu.room_id.clone(),
                parent: Some(head.id),
                chain_len: head.chain_len + 1,
                entries: vec![(pdu.kind.clone(), sk.clone(), pdu.event_id.clone())],
            }
        };
        let next = GroupHead { id: g.id, chain_len: g.chain_len };
        new.push(g);
        (EventGroups { before: head.id, after: next.id, new }, next)
    }

    /// A room's current state is now `head` (after a successful write).
    pub(crate) fn set_current_group(&self, room_id: &str, head: GroupHead) {
        self.group_heads.insert(room_id.to_owned(), head);
    }

    /// The state a group stands for, as ids.
    pub(crate) async fn group_ids(&self, group: i64) -> Result<Arc<StateIds>> {
        if group == EMPTY_GROUP {
            return Ok(Arc::new(StateIds::new()));
        }
        if let Some(ids) = self.group_cache.0.lock().get(&group).cloned() {
            return Ok(ids);
        }
        let ids = Arc::new(self.store.load_state_group(group).await?);
        self.group_cache.0.lock().insert(group, ids.clone());
        Ok(ids)
    }

    /// The chain length of a group (for deltas against it).
    pub(crate) async fn group_head(&self, group: i64) -> Result<GroupHead> {
        Ok(GroupHead { id: group, chain_len: self.store.state_group_chain_len(group).await? })
    }

    /// Events by id from the timeline or the outliers (not rejected ones).
    pub(crate) async fn any_events_by_id(&self, ids: Vec<String>) -> Result<Vec<Arc<Pdu>>> {
        let mut found = self.events_by_id(ids.iter().cloned()).await?;
        if found.len() < ids.len() {
            let have: std::collections::HashSet<&str> = found.iter().map(|e| e.event_id.as_str()).collect();
            let missing: Vec<String> = ids.iter().filter(|id| !have.contains(id.as_str())).cloned().collect();
            found.extend(self.store.outlier_events(&missing).await?.into_iter().map(Arc::new));
        }
        Ok(found)
    }

    /// A state given as ids, whole (members too), for auth checks, resolution and `/state`.
    pub(crate) async fn whole_state(&self, ids: &StateIds) -> Result<Arc<RoomState>> {
        let events = self.any_events_by_id(ids.values().cloned().collect()).await?;
        Ok(Arc::new(RoomState::from_events(events.into_iter().map(Arc::unwrap_or_clone))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_turns_the_base_into_the_target() {
        let k = |t: &str, sk: &str| (t.to_owned(), sk.to_owned());
        let base: StateIds = [(k("a", ""), "$1".into()), (k("b", ""), "$2".into()), (k("c", ""), "$3".into())].into();
        let target: StateIds =
            [(k("a", ""), "$1".into()), (k("b", ""), "$9".into()), (k("d", "x"), "$4".into())].into();
        let mut d = diff(&base, &target);
        d.sort();
        assert_eq!(
            d,
            vec![
                ("b".into(), "".into(), "$9".into()),
                ("c".into(), "".into(), "".into()),
                ("d".into(), "x".into(), "$4".into())
            ]
        );
    }
}
