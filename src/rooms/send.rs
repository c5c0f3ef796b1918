//! Writing events: authorize, build, persist (with derived state, in one transaction), then
//! caches, stream position and wake-ups.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;

use super::event::{now_ms, Pdu};
use super::service::{NewEvent, Rooms};
use super::state::RoomState;
use super::state_groups::GroupHead;
use super::{auth, dag};
use crate::error::{MatrixError, Result};
use crate::ground::StreamPos;
use crate::store::state_groups::EventGroups;
use crate::store::NewRoom;

/// What a new room claims beside its events, written in the same transaction.
#[derive(Debug, Default)]
pub struct RoomClaims {
    pub aliases: Vec<String>,
    /// Take the aliases over from whoever holds them (profile rooms' reserved names).
    pub reclaim_aliases: bool,
    pub published: bool,
    pub profile_owner: Option<String>,
}

impl Rooms {
    /// Authorize and append an event as `sender`. Idempotent per (sender, device, txn id).
    pub(crate) async fn send(&self, room_id: &str, sender: &str, ev: NewEvent) -> Result<Arc<Pdu>> {
        if ev.kind == "m.room.member" && self.federation.enabled() {
            if let Some(pdu) = self.membership_elsewhere(room_id, sender, &ev).await? {
                return Ok(pdu);
            }
        }
        let _guard = self.write_lock.lock().await;
        if let Some((device, txn)) = &ev.txn {
            if let Some(existing) = self.store.txn_event(sender, device, txn).await? {
                if let Some((_, pdu)) = self.store.get_event(&existing).await? {
                    return Ok(Arc::new(pdu));
                }
            }
        }
        let state = self.state(room_id).await?;
        auth::check(&state, sender, &ev.kind, ev.state_key.as_deref(), &ev.content).map_err(MatrixError::Forbidden)?;
        self.append_locked(room_id, state, sender, ev).await
    }

    /// Append without the auth rules (server-owned state). Caller holds no lock.
    pub(crate) async fn send_as_server(&self, room_id: &str, sender: &str, ev: NewEvent) -> Result<Arc<Pdu>> {
        let _guard = self.write_lock.lock().await;
        let state = self.state(room_id).await?;
        self.append_locked(room_id, state, sender, ev).await
    }

    /// Create a room from a list of events appended in order, without auth (the creator
    /// builds the initial state), together with what it `claims`, all in one transaction.
    /// `M_ROOM_IN_USE` if an alias is taken; then nothing is written.
    pub(crate) async fn create_with_events(
        &self,
        creator: &str,
        room_type: Option<&str>,
        events: Vec<NewEvent>,
        claims: RoomClaims,
    ) -> Result<String> {
        let room_id = format!("!{}:{}", super::event::random_string(18), self.server_name);
        let _guard = self.write_lock.lock().await;
        let mut state = Arc::new(RoomState::default());
        let mut head = Vec::new();
        let mut built = Vec::with_capacity(events.len());
        let mut pending = HashMap::new();
        let mut group = GroupHead::EMPTY;
        let mut groups = Vec::with_capacity(events.len());
        for ev in events {
            let replaced = self.replaced_state(&state, None, &pending, &ev.kind, ev.state_key.as_deref()).await?;
            let pdu = Arc::new(self.build_pdu(&room_id, &state, replaced.as_deref(), &head, creator, ev)?);
            pending.insert(pdu.event_id.clone(), pdu.clone());
            state = with_event(state, &pdu);
            let (g, next) = self.groups_on(group, Vec::new(), &pdu, &state);
            groups.push(g);
            group = next;
            head = vec![(pdu.event_id.clone(), pdu.depth)];
            built.push((pdu, state.clone(), self.stream.allocate()));
        }
        // A new room has only our users (invites of other servers' users come after it).
        let grouped = self.keeps_groups(&state);
        let rows: Vec<(&Pdu, i64, Option<&EventGroups>)> = built
            .iter()
            .zip(&groups)
            .map(|((p, _, pos), g)| (p.as_ref(), pos.pos, Some(g).filter(|_| grouped)))
            .collect();
        let room = NewRoom {
            room_id: &room_id,
            creator,
            version: super::ROOM_VERSION,
            room_type,
            now: now_ms(),
            aliases: claims.aliases,
            reclaim_aliases: claims.reclaim_aliases,
            published: claims.published,
            profile_owner: claims.profile_owner.as_deref(),
        };
        if !self.store.create_room(&room, &rows).await? {
            return Err(MatrixError::RoomInUse("Room alias already taken".into()));
        }
        if let Some((last, _, _)) = built.last() {
            self.extremities.insert(room_id.clone(), Arc::new(vec![(last.event_id.clone(), last.depth)]));
        }
        if grouped {
            self.set_current_group(&room_id, group);
        }
        for (pdu, state, pos) in built {
            self.after_persist(&pdu, state, pos);
        }
        Ok(room_id)
    }

    /// Build the next event of a room on top of `state` and its forward `extremities`
    /// (`dag.rs`): prev and auth events, depth, content hash, signature and id. `replaced` is
    /// the state event it replaces (`prev_content`).
    pub(super) fn build_pdu(
        &self,
        room_id: &str,
        state: &RoomState,
        replaced: Option<&Pdu>,
        extremities: &[(String, i64)],
        sender: &str,
        ev: NewEvent,
    ) -> Result<Pdu> {
        if super::event::json_depth(&ev.content) > super::event::MAX_JSON_DEPTH {
            return Err(MatrixError::bad_json(format!(
                "event content nests deeper than {} levels",
                super::event::MAX_JSON_DEPTH
            )));
        }
        let (prev_events, depth) = dag::prev_and_depth(extremities);
        let version = dag::room_version(state, (ev.kind == "m.room.create").then_some(&ev.content));
        let auth_events = dag::auth_events_for(state, sender, &ev.kind, ev.state_key.as_deref(), &ev.content);
        let mut unsigned = serde_json::Map::new();
        if ev.state_key.is_some() {
            if let Some(prev) = replaced {
                unsigned.insert("replaces_state".into(), json!(prev.event_id));
                unsigned.insert("prev_content".into(), prev.content.clone());
                unsigned.insert("prev_sender".into(), json!(prev.sender));
            }
        }
        let mut pdu = Pdu {
            event_id: String::new(),
            room_id: room_id.to_owned(),
            sender: sender.to_owned(),
            kind: ev.kind,
            state_key: ev.state_key,
            content: ev.content,
            origin_server_ts: now_ms(),
            depth,
            prev_events,
            auth_events,
            unsigned,
            txn: ev.txn,
            ..Default::default()
        };
        // Content over the limit is refused before it is hashed and signed (the whole event is
        // measured once, sealed, below; an event too large to hash is `M_TOO_LARGE` too).
        let content_size = serde_json::to_vec(&pdu.content).map(|v| v.len()).unwrap_or(0);
        if content_size > self.max_event_bytes {
            return Err(MatrixError::TooLarge(format!(
                "event content is {content_size} bytes, the limit is {}",
                self.max_event_bytes
            )));
        }
        self.seal(&mut pdu, &version)?;
        self.check_event_size(&pdu)?;
        Ok(pdu)
    }

    fn check_event_size(&self, pdu: &Pdu) -> Result<()> {
        let size = serde_json::to_vec(&pdu.to_client(pdu.origin_server_ts, None)).map(|v| v.len()).unwrap_or(0);
        if size > self.max_event_bytes {
            return Err(MatrixError::TooLarge(format!("event is {size} bytes, the limit is {}", self.max_event_bytes)));
        }
        Ok(())
    }

    async fn append_locked(
        &self,
        room_id: &str,
        state: Arc<RoomState>,
        sender: &str,
        ev: NewEvent,
    ) -> Result<Arc<Pdu>> {
        let extremities = self.extremities(room_id).await?;
        let replaced = self.replaced_state(&state, None, &HashMap::new(), &ev.kind, ev.state_key.as_deref()).await?;
        let pdu = Arc::new(self.build_pdu(room_id, &state, replaced.as_deref(), &extremities, sender, ev)?);
        let new_state = with_event(state.clone(), &pdu);
        let groups = self.local_groups(room_id, &state, &pdu, &new_state).await?;
        let pos = self.stream.allocate();
        self.store.persist_event_with_groups(&pdu, pos.pos, Some(sender), groups.as_ref().map(|g| &g.0)).await?;
        if let Some((_, next)) = groups {
            self.set_current_group(room_id, next);
        }
        self.advance_extremities(&pdu).await?;
        self.fan_out(&pdu, &new_state);
        self.after_persist(&pdu, new_state, pos);
        Ok(pdu)
    }

    /// Write several server-authored events (possibly in several rooms) in one database
    /// transaction: the profile-room publisher's batch. No auth rules, like `send_as_server`.
    pub(crate) async fn send_batch_as_server(&self, items: Vec<(String, String, NewEvent)>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let _guard = self.write_lock.lock().await;
        let mut states: HashMap<String, Arc<RoomState>> = HashMap::new();
        let mut heads: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        let mut group_heads: HashMap<String, GroupHead> = HashMap::new();
        let mut groups = Vec::with_capacity(items.len());
        let mut built = Vec::with_capacity(items.len());
        let mut pending = HashMap::new();
        // Each room's state when the batch began: what the caller read (and decoded) is read
        // there again, not decoded anew from a copy.
        let mut before: HashMap<String, Arc<RoomState>> = HashMap::new();
        for (room_id, sender, ev) in items {
            let state = match states.get(&room_id) {
                Some(s) => s.clone(),
                None => {
                    let s = self.state(&room_id).await?;
                    before.insert(room_id.clone(), s.clone());
                    s
                }
            };
            let head = match heads.get(&room_id) {
                Some(h) => h.clone(),
                None => self.extremities(&room_id).await?.to_vec(),
            };
            let at_start = before.get(&room_id).map(|s| &**s);
            let replaced = self.replaced_state(&state, at_start, &pending, &ev.kind, ev.state_key.as_deref()).await?;
            let pdu = Arc::new(self.build_pdu(&room_id, &state, replaced.as_deref(), &head, &sender, ev)?);
            pending.insert(pdu.event_id.clone(), pdu.clone());
            let new_state = with_event(state.clone(), &pdu);
            let grouped = match group_heads.get(&room_id) {
                Some(g) => Some(self.groups_on(*g, Vec::new(), &pdu, &new_state)),
                None => self.local_groups(&room_id, &state, &pdu, &new_state).await?,
            };
            match grouped {
                Some((g, next)) => {
                    groups.push(Some(g));
                    group_heads.insert(room_id.clone(), next);
                }
                None => groups.push(None),
            }
            heads.insert(room_id.clone(), dag::extremities_after(&head, &pdu));
            states.insert(room_id, new_state.clone());
            built.push((pdu, new_state, self.stream.allocate()));
        }
        let rows: Vec<(&Pdu, i64, Option<&EventGroups>)> =
            built.iter().zip(&groups).map(|((p, _, pos), g)| (p.as_ref(), pos.pos, g.as_ref())).collect();
        self.store.persist_events_grouped(&rows).await?;
        for (room_id, head) in group_heads {
            self.set_current_group(&room_id, head);
        }
        for (pdu, _, _) in &built {
            self.advance_extremities(pdu).await?;
        }
        for (pdu, state, pos) in built {
            self.fan_out(&pdu, &state);
            self.after_persist(&pdu, state, pos);
        }
        Ok(())
    }

    /// Caches, stream position and wake-ups once an event is stored: the room's members,
    /// the membership's target and the room's peekers are woken; e2ee notes membership
    /// changes for device-list deltas.
    pub(super) fn after_persist(&self, pdu: &Arc<Pdu>, new_state: Arc<RoomState>, pos: StreamPos) {
        let room_id = pdu.room_id.as_str();
        let before = self.states.insert(room_id.to_owned(), new_state.clone());
        if pdu.kind == "m.room.member" {
            // Before `last_pos`, so whoever sees the room's new position sees this too.
            self.member_pos.insert(room_id.to_owned(), pos.pos);
        }
        self.last_pos.insert(room_id.to_owned(), pos.pos);
        if let (Some(target), Some(membership)) = (&pdu.state_key, pdu.membership()) {
            self.note_membership(room_id, target, membership, pos.pos);
            // The room state keeps only its id; a new member event is the likeliest to be read.
            self.event_cache.put(pdu.clone());
        }
        // After both the state and the per-user joined rooms are current (state resolution
        // may also have changed memberships other than this event's).
        self.note_joined_change(before.as_deref(), &new_state);
        let position = pos.pos;
        pos.complete();

        let mut wake: HashSet<String> = new_state.members_with(&["join", "invite"]).map(str::to_owned).collect();
        if let (Some(target), Some(_)) = (&pdu.state_key, pdu.membership()) {
            wake.insert(target.clone());
        }
        let links = self.links.get();
        if let Some(l) = links {
            wake.extend(l.peeks.watchers(room_id));
        }
        // A profile room's `m.presence`/`m.status` is presence-only news: a long-poll may hold
        // it for the delivery window (README "Presence delivery window").
        let presence_only = pdu.state_key.as_deref() == Some("")
            && matches!(pdu.kind.as_str(), crate::profile::PRESENCE_EVENT | crate::profile::STATUS_EVENT)
            && (links.is_some_and(|l| l.profiles.owner_of(room_id).is_some())
                || crate::profile::owner_in_state(&new_state).is_some());
        if presence_only {
            self.notifier.wake_presence(wake.iter().map(String::as_str), position);
        } else {
            self.notifier.wake(wake.iter().map(String::as_str), position);
        }
    }

    /// Store a rewritten copy of an event (a redaction); the copy replaces the event in the
    /// current state if it is there.
    pub(super) async fn rewrite_event(&self, pdu: Pdu) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        let json = serde_json::to_string(&pdu).map_err(|e| MatrixError::Internal(e.into()))?;
        self.store.replace_event_json(&pdu.event_id, &json).await?;
        let pdu = Arc::new(pdu);
        self.event_cache.replace(&pdu);
        let Some(sk) = pdu.state_key.clone() else { return Ok(()) };
        let Some(state) = self.states.get(&pdu.room_id).map(|s| s.clone()) else { return Ok(()) };
        if state.is_current(&pdu.kind, &sk, &pdu.event_id) {
            let mut s = (*state).clone();
            let room_id = pdu.room_id.clone();
            s.apply(pdu);
            let s = Arc::new(s);
            let before = self.states.insert(room_id, s.clone());
            self.note_joined_change(before.as_deref(), &s);
        }
        Ok(())
    }
}

/// The state after `pdu` (unchanged for a message event).
pub(super) fn with_event(state: Arc<RoomState>, pdu: &Arc<Pdu>) -> Arc<RoomState> {
    if !pdu.is_state() {
        return state;
    }
    let mut s = (*state).clone();
    s.apply(pdu.clone());
    Arc::new(s)
}
