//! Who may see whose presence. One permission model for every route (legacy `m.presence`
//! in `/sync`, `GET /presence/.../status`, peeking the profile room): a viewer sees a user
//! if they are the user, share a joined room, or the user allowed them through the presence
//! list (see `lists`).
//!
//! Sharing a room is symmetric, so one set per user answers both "whom does the viewer see"
//! and "who sees the target": the user's room peers ([`PeerSet`]), kept in a bounded cache
//! between requests (issue #13: rebuilding ~200 names from ~100 rooms on every `/sync` and
//! every change was a third of the server's CPU). A set changes only when the joined members
//! of one of the user's rooms change, which `Rooms` announces ([`PresenceAccess::joined_changed`]);
//! a room crossing `presence_max_room_members` is such a change. Presence-list grants are not
//! cached: `lists` answers them from its own index.
use std::sync::Arc;

use super::lists::{ListEntry, PresenceLists};
use crate::error::Result;
use crate::ground::user_ids::{intern_ix, interned_ix, user_at, UserIx};
use crate::rooms::peers::{PeerCache, PeerSet};
use crate::rooms::Rooms;

pub struct PresenceAccess {
    rooms: Arc<Rooms>,
    /// Grants beyond shared rooms: accepted presence-list entries.
    lists: Arc<PresenceLists>,
    /// A shared room with more joined members than this grants no visibility
    /// (`presence_max_room_members`; seed 000 "in large public rooms this could be undesirable").
    max_room_members: Option<usize>,
    peers: PeerCache,
}

/// The users on one side of the visibility relation of `user`: everyone `user` may see
/// ([`PresenceAccess::visible_to`]) or everyone who may see `user`
/// ([`PresenceAccess::viewers_of`]). `user` is always in it.
pub struct Audience {
    /// `user`, by number (its name is `user_at(user_ix)`).
    user_ix: UserIx,
    peers: Arc<PeerSet>,
    /// Presence-list grants (targets or viewers), often empty.
    granted: Vec<String>,
}

impl Audience {
    /// Whether `other` is in the set: [`Self::contains_ix`] for a name ever numbered (the
    /// user and every peer are), else only a grant can name it.
    pub fn contains(&self, other: &str) -> bool {
        match interned_ix(other) {
            Some(ix) => self.contains_ix(ix),
            None => self.granted.iter().any(|g| g == other),
        }
    }

    /// [`Self::contains`] by number: a binary search of the peers, no hashing.
    pub fn contains_ix(&self, other: UserIx) -> bool {
        other == self.user_ix || self.peers.contains_ix(other) || self.granted.iter().any(|g| g == user_at(other))
    }

    /// Each user once.
    pub fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.ixs().map(user_at)
    }

    /// Each user once, by number (`ground::user_ids`): what the hot paths that deliver and
    /// wake take, so a change reaching a hundred viewers hashes no text.
    pub fn ixs(&self) -> impl Iterator<Item = UserIx> + '_ {
        let user = self.user_ix;
        let peers = self.peers.ixs().filter(move |&p| p != user);
        let granted =
            self.granted.iter().map(|g| intern_ix(g).1).filter(move |&g| g != user && !self.peers.contains_ix(g));
        std::iter::once(user).chain(peers).chain(granted)
    }
}

impl PresenceAccess {
    /// `max_room_members`: `None` or 0, no limit. `cached_users`: how many users' room peers
    /// are kept between requests (`presence_visibility_cache_users`; 0: none).
    pub fn new(
        rooms: Arc<Rooms>,
        lists: Arc<PresenceLists>,
        max_room_members: Option<usize>,
        cached_users: usize,
    ) -> Self {
        Self {
            rooms,
            lists,
            max_room_members: max_room_members.filter(|&n| n > 0),
            peers: PeerCache::new(cached_users),
        }
    }

    /// Everyone sharing a joined room with `user` (and the user, when joined anywhere), rooms
    /// over the limit left out.
    async fn room_peers(&self, user: &str) -> Result<Arc<PeerSet>> {
        match self.peers.get(user) {
            Ok(set) => Ok(set),
            Err(epoch) => {
                let set = Arc::new(self.rooms.peer_set(user, self.max_room_members).await?);
                self.peers.insert(user, set.clone(), epoch);
                Ok(set)
            }
        }
    }

    /// The joined members of a room changed from `before` to `after` (see `Rooms`): forget
    /// the cached peers of everyone the room granted visibility to, before or after.
    pub(crate) fn joined_changed(&self, before: &[&str], after: &[&str]) {
        let grants = |m: &[&str]| self.max_room_members.is_none_or(|max| m.len() <= max);
        let before = if grants(before) { before } else { &[] };
        let after = if grants(after) { after } else { &[] };
        self.peers.invalidate(before.iter().chain(after).copied());
    }

    pub async fn can_see(&self, viewer: &str, target: &str) -> Result<bool> {
        if viewer == target || self.lists.entry(viewer, target) == Some(ListEntry::Accepted) {
            return Ok(true);
        }
        Ok(self.room_peers(viewer).await?.contains(target))
    }

    /// May some user of `server` see `target`? Peeks over federation (MSC2444) are made by a
    /// server, not a user: a server may peek a profile room if one of its users could.
    pub async fn server_can_see(&self, server: &str, target: &str) -> Result<bool> {
        let of_server = |u: &str| u.split_once(':').map(|(_, s)| s) == Some(server);
        Ok(self.viewers_of(target).await?.iter().any(of_server))
    }

    /// Everyone who may see `target` (to wake them when it changes).
    pub async fn viewers_of(&self, target: &str) -> Result<Audience> {
        let peers = self.room_peers(target).await?;
        Ok(Audience { user_ix: intern_ix(target).1, peers, granted: self.lists.granted_viewers(target) })
    }

    /// Users granted to `viewer` in `(since, upto]` (for an incremental sync).
    pub fn newly_visible(&self, viewer: &str, since: i64, upto: i64) -> Vec<String> {
        self.lists.granted_between(viewer, since, upto)
    }

    /// Everyone `viewer` may see: for an initial sync, and for checking many users at once
    /// (each check is a lookup, whatever the viewer's rooms).
    pub async fn visible_to(&self, viewer: &str) -> Result<Audience> {
        let peers = self.room_peers(viewer).await?;
        Ok(Audience { user_ix: intern_ix(viewer).1, peers, granted: self.lists.granted_targets(viewer) })
    }

    /// This server's name (whose users are local).
    pub fn server_name(&self) -> &str {
        &self.rooms.server_name
    }

    /// Users whose room peers are cached (for tests and the benchmark).
    pub fn cached_users(&self) -> usize {
        self.peers.len()
    }
}
