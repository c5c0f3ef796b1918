//! Who is in which room, and who may read a room: the membership caches kept current by
//! membership events, and the history-visibility rules.
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use super::event::Pdu;
use super::peers::PeerSet;
use super::service::{Membership, NewEvent, Rooms};
use super::state::RoomState;
use crate::error::{MatrixError, Result};

impl Rooms {
    /// Keep the per-user caches current after a membership event at `pos`.
    pub(super) fn note_membership(&self, room_id: &str, target: &str, membership: &str, pos: i64) {
        self.membership_gen.fetch_add(1, Ordering::SeqCst);
        if let Some(mut all) = self.memberships.get_mut(target) {
            let mut list: Vec<Membership> = all.iter().filter(|(r, _, _)| r != room_id).cloned().collect();
            list.push((room_id.to_owned(), membership.to_owned(), pos));
            *all = Arc::new(list);
        }
        if let Some(mut rooms) = self.joined.get_mut(target) {
            let mut set = (**rooms).clone();
            if membership == "join" {
                set.insert(room_id.to_owned());
            } else {
                set.remove(room_id);
            }
            *rooms = Arc::new(set);
        }
        if membership == "join" {
            if let Ok(links) = self.links() {
                links.presence.note_join(room_id, target);
            }
        }
    }

    /// The rooms `user_id` is joined to.
    pub(crate) async fn joined_rooms(&self, user_id: &str) -> Result<Arc<HashSet<String>>> {
        if let Some(r) = self.joined.get(user_id) {
            return Ok(r.clone());
        }
        let gen = self.membership_gen.load(Ordering::SeqCst);
        tracing::debug!(user_id, "joined-rooms cache miss");
        let rooms: HashSet<String> = self
            .store
            .rooms_for_user(user_id)
            .await?
            .into_iter()
            .filter(|(_, m, _)| m == "join")
            .map(|(r, _, _)| r)
            .collect();
        let rooms = Arc::new(rooms);
        if gen == self.membership_gen.load(Ordering::SeqCst) {
            self.joined.insert(user_id.to_owned(), rooms.clone());
        }
        Ok(rooms)
    }

    /// Every room the user has a membership in: (room id, membership, stream position).
    pub(crate) async fn memberships(&self, user_id: &str) -> Result<Arc<Vec<Membership>>> {
        if let Some(m) = self.memberships.get(user_id) {
            return Ok(m.clone());
        }
        let gen = self.membership_gen.load(Ordering::SeqCst);
        tracing::debug!(user_id, "membership cache miss");
        let list = Arc::new(self.store.rooms_for_user(user_id).await?);
        if gen == self.membership_gen.load(Ordering::SeqCst) {
            self.memberships.insert(user_id.to_owned(), list.clone());
        }
        Ok(list)
    }

    /// Everyone who shares a joined room with `user_id` (including the user).
    pub(crate) async fn room_peers(&self, user_id: &str) -> Result<HashSet<String>> {
        let mut peers = HashSet::new();
        peers.insert(user_id.to_owned());
        for room in self.joined_rooms(user_id).await?.iter() {
            let state = self.state(room).await?;
            peers.extend(state.members_with(&["join"]).map(str::to_owned));
        }
        Ok(peers)
    }

    /// Everyone who shares a joined room with `user_id` (the user too, when joined anywhere),
    /// rooms with more than `max_members` joined left out; see `peers`.
    pub(crate) async fn peer_set(&self, user_id: &str, max_members: Option<usize>) -> Result<PeerSet> {
        let rooms = self.joined_rooms(user_id).await?;
        let mut states = Vec::with_capacity(rooms.len());
        for room in rooms.iter() {
            states.push(self.state(room).await?);
        }
        Ok(PeerSet::from_rooms(states.iter().map(|s| &**s), max_members))
    }

    /// A room's joined members changed from `before` to `after` (a new state was just put in
    /// place, `before` is `None` if none was cached): whoever shared it may see different
    /// people now. Told before the event's stream position completes, so a `/sync` that
    /// reads up to it sees the change.
    pub(super) fn note_joined_change(&self, before: Option<&RoomState>, after: &RoomState) {
        if before.is_some_and(|b| b.members_rev() == after.members_rev()) {
            return;
        }
        let after_ids: Vec<&str> = after.joined_ids().map(|u| &**u).collect();
        let before_ids: Vec<&str> = before.map(|b| b.joined_ids().map(|u| &**u).collect()).unwrap_or_default();
        // A member event that leaves the joined set as it was (a profile change, an invite).
        if before.is_some() && before_ids == after_ids {
            return;
        }
        if let Ok(links) = self.links() {
            links.presence.access.joined_changed(&before_ids, &after_ids);
        }
    }

    /// Do `a` and `b` share a joined room?
    pub(crate) async fn share_a_room(&self, a: &str, b: &str) -> Result<bool> {
        if a == b {
            return Ok(true);
        }
        let (ra, rb) = (self.joined_rooms(a).await?, self.joined_rooms(b).await?);
        let (small, big) = if ra.len() <= rb.len() { (ra, rb) } else { (rb, ra) };
        Ok(small.iter().any(|r| big.contains(r)))
    }

    /// Change `target`'s membership as `sender` (join, invite, leave/kick, ban). A join
    /// carries the user's display name and avatar (spec "m.room.member").
    pub(crate) async fn set_membership(
        &self,
        room_id: &str,
        sender: &str,
        target: &str,
        membership: &str,
        reason: Option<String>,
    ) -> Result<Arc<Pdu>> {
        let mut content = json!({ "membership": membership });
        if membership == "join" {
            let (displayname, avatar_url) = self.accounts.profile(target).await?;
            content = member_join_content(&displayname, &avatar_url);
        }
        if let Some(r) = reason {
            content["reason"] = json!(r);
        }
        self.send(room_id, sender, NewEvent::state("m.room.member", target, content)).await
    }

    /// `POST /rooms/{roomId}/unban`: only a banned user can be unbanned.
    pub(crate) async fn unban(&self, room_id: &str, sender: &str, target: &str, reason: Option<String>) -> Result<()> {
        let state = self.state(room_id).await?;
        if state.membership(target) != Some("ban") {
            return Err(MatrixError::forbidden("user is not banned"));
        }
        self.set_membership(room_id, sender, target, "leave", reason).await?;
        Ok(())
    }

    /// Who may read a room's state and history: members, or anyone if world-readable.
    /// Returns the stream position up to which the user may read.
    async fn visible_upto(&self, room_id: &str, user_id: &str) -> Result<i64> {
        let state = self.state(room_id).await?;
        match state.membership(user_id) {
            Some("join") => Ok(i64::MAX),
            _ if state.history_visibility() == "world_readable" => Ok(i64::MAX),
            Some("leave" | "ban") => {
                let id = state.event_id("m.room.member", user_id).unwrap_or_default();
                let (pos, ev) =
                    self.store.get_event(&id).await?.ok_or_else(|| MatrixError::forbidden("not a member"))?;
                // A member who left may still read up to the moment they left (shared history),
                // unless the member left by rejecting an invite.
                let was_joined =
                    ev.unsigned.get("prev_content").and_then(|c| c.get("membership")).and_then(Value::as_str)
                        == Some("join");
                if was_joined {
                    Ok(pos)
                } else {
                    Err(MatrixError::forbidden("You are not a member of this room"))
                }
            }
            _ => Err(MatrixError::forbidden("You are not a member of this room")),
        }
    }

    /// Up to which stream position `user_id` may read a room's history: members (and former
    /// members up to their leave), and anyone allowed to peek the room.
    pub(crate) async fn readable_upto(&self, room_id: &str, user_id: &str) -> Result<i64> {
        match self.visible_upto(room_id, user_id).await {
            Err(MatrixError::Forbidden(_)) if self.links()?.peeks.can_peek(user_id, room_id).await? => Ok(i64::MAX),
            other => other,
        }
    }

    /// Members, peekers allowed by the room's rules, and anyone for world-readable rooms may
    /// read a room's current state.
    pub(crate) async fn check_can_read_state(&self, room_id: &str, user_id: &str) -> Result<()> {
        if self.links()?.peeks.can_peek(user_id, room_id).await? {
            return Ok(());
        }
        Err(MatrixError::forbidden("You are not a member of this room"))
    }
}

/// The content of a user's own `m.room.member` join: display name and avatar when set
/// (spec: every join carries them; clients show the raw user id otherwise).
pub(crate) fn member_join_content(displayname: &Option<String>, avatar_url: &Option<String>) -> Value {
    let mut c = json!({"membership": "join"});
    if let Some(n) = displayname {
        c["displayname"] = json!(n);
    }
    if let Some(a) = avatar_url {
        c["avatar_url"] = json!(a);
    }
    c
}
