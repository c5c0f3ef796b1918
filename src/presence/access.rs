//! Who may see whose presence. One permission model for every route (legacy `m.presence`
//! in `/sync`, `GET /presence/.../status`, peeking the profile room): a viewer sees a user
//! if they are the user, share a joined room, or the user allowed them through the presence
//! list (see `lists`).
use std::collections::HashSet;
use std::sync::Arc;

use super::lists::PresenceLists;
use crate::error::Result;
use crate::rooms::Rooms;

pub struct PresenceAccess {
    rooms: Arc<Rooms>,
    /// Grants beyond shared rooms: accepted presence-list entries.
    lists: Arc<PresenceLists>,
    /// A shared room with more joined members than this grants no visibility
    /// (`presence_max_room_members`; seed 000 "in large public rooms this could be undesirable").
    max_room_members: Option<usize>,
}

impl PresenceAccess {
    /// `max_room_members`: `None` or 0, no limit.
    pub fn new(rooms: Arc<Rooms>, lists: Arc<PresenceLists>, max_room_members: Option<usize>) -> Self {
        Self { rooms, lists, max_room_members: max_room_members.filter(|&n| n > 0) }
    }

    /// Joined members of `room` if the room grants presence visibility (not over the limit).
    async fn members_if_small(&self, room: &str, max: usize) -> Result<Option<Vec<String>>> {
        let state = self.rooms.state(room).await?;
        let members: Vec<String> = state.members_with(&["join"]).map(str::to_owned).collect();
        Ok((members.len() <= max).then_some(members))
    }

    /// Everyone sharing a joined room with `user` (and the user), rooms over the limit left out.
    async fn room_peers(&self, user: &str) -> Result<HashSet<String>> {
        let Some(max) = self.max_room_members else { return self.rooms.room_peers(user).await };
        let mut peers = HashSet::from([user.to_owned()]);
        for room in self.rooms.joined_rooms(user).await?.iter() {
            peers.extend(self.members_if_small(room, max).await?.unwrap_or_default());
        }
        Ok(peers)
    }

    async fn share_a_room(&self, a: &str, b: &str) -> Result<bool> {
        let Some(max) = self.max_room_members else { return self.rooms.share_a_room(a, b).await };
        let theirs = self.rooms.joined_rooms(b).await?;
        for room in self.rooms.joined_rooms(a).await?.iter().filter(|r| theirs.contains(*r)) {
            if self.members_if_small(room, max).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn can_see(&self, viewer: &str, target: &str) -> Result<bool> {
        if viewer == target || self.share_a_room(viewer, target).await? {
            return Ok(true);
        }
        Ok(self.lists.granted_targets(viewer).iter().any(|t| t == target))
    }

    /// May some user of `server` see `target`? Peeks over federation (MSC2444) are made by a
    /// server, not a user: a server may peek a profile room if one of its users could.
    pub async fn server_can_see(&self, server: &str, target: &str) -> Result<bool> {
        let of_server = |u: &String| u.split_once(':').map(|(_, s)| s) == Some(server);
        if self.room_peers(target).await?.iter().any(of_server) {
            return Ok(true);
        }
        Ok(self.lists.granted_viewers(target).iter().any(of_server))
    }

    /// Everyone who may see `target` (to wake them when it changes).
    pub async fn viewers_of(&self, target: &str) -> Result<HashSet<String>> {
        let mut set = self.room_peers(target).await?;
        set.extend(self.lists.granted_viewers(target));
        Ok(set)
    }

    /// Users granted to `viewer` in `(since, upto]` (for an incremental sync).
    pub fn newly_visible(&self, viewer: &str, since: i64, upto: i64) -> HashSet<String> {
        self.lists.granted_between(viewer, since, upto).into_iter().collect()
    }

    /// This server's name (whose users are local).
    pub fn server_name(&self) -> &str {
        &self.rooms.server_name
    }

    /// Everyone `viewer` may see (for an initial sync).
    pub async fn visible_to(&self, viewer: &str) -> Result<HashSet<String>> {
        let mut set = self.room_peers(viewer).await?;
        set.extend(self.lists.granted_targets(viewer));
        Ok(set)
    }
}
