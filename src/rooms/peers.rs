//! Everyone a user shares a joined room with, as a set of interned user ids (issue #13).
//!
//! The room state numbers each user it names ([`UserIx`], `state.rs`), so a set of users is a
//! sorted array of 4-byte numbers: building one sorts integers instead of copying and hashing
//! every name of every room, and asking "is this user in it" costs one interner lookup and a
//! binary search. [`PeerCache`] keeps such sets between requests, bounded, for callers that
//! say when they stop being true ([`PeerCache::invalidate`]).
use std::sync::Arc;

use hashlink::LruCache;
use parking_lot::Mutex;

use super::state::RoomState;
use crate::ground::user_ids::{interned_ix, user_at, UserIx};

/// A set of users, each an interned id's number, sorted.
#[derive(Debug, Default)]
pub struct PeerSet {
    ixs: Box<[UserIx]>,
}

impl PeerSet {
    /// The joined members of `rooms`, leaving out a room with more than `max_members` joined
    /// (`presence_max_room_members`; `None`: no limit).
    pub fn from_rooms<'a>(rooms: impl IntoIterator<Item = &'a RoomState>, max_members: Option<usize>) -> Self {
        let mut ixs: Vec<UserIx> = Vec::new();
        for state in rooms {
            // Counting first costs a second walk of a small room, and spares copying a large one.
            if max_members.is_some_and(|max| state.joined_ixs().nth(max).is_some()) {
                continue;
            }
            ixs.extend(state.joined_ixs());
        }
        ixs.sort_unstable();
        ixs.dedup();
        Self { ixs: ixs.into_boxed_slice() }
    }

    pub fn contains(&self, user_id: &str) -> bool {
        interned_ix(user_id).is_some_and(|ix| self.contains_ix(ix))
    }

    pub fn contains_ix(&self, ix: UserIx) -> bool {
        self.ixs.binary_search(&ix).is_ok()
    }

    /// The members' numbers, in order.
    pub fn ixs(&self) -> impl Iterator<Item = UserIx> + '_ {
        self.ixs.iter().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.ixs.iter().map(|&ix| user_at(ix))
    }

    pub fn len(&self) -> usize {
        self.ixs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ixs.is_empty()
    }

    /// Heap bytes held (the ids themselves are shared with the room states).
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + std::mem::size_of_val(&*self.ixs)
    }
}

/// Peer sets by user, least recently used dropped first.
///
/// A set computed while a change was being announced must not be kept: [`PeerCache::get`]
/// hands out an epoch, [`PeerCache::insert`] keeps the set only if no
/// [`PeerCache::invalidate`] came in between (the same rule as `Rooms::joined_rooms`).
pub struct PeerCache {
    inner: Mutex<Inner>,
}

struct Inner {
    sets: LruCache<String, Arc<PeerSet>>,
    /// Bumped by every invalidation.
    epoch: u64,
    keep: bool,
}

/// The cache's state when a lookup missed (see [`PeerCache::insert`]).
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

impl PeerCache {
    /// At most `capacity` users' sets (0: nothing is kept).
    pub fn new(capacity: usize) -> Self {
        let sets = LruCache::new(capacity.max(1));
        Self { inner: Mutex::new(Inner { sets, epoch: 0, keep: capacity > 0 }) }
    }

    pub fn get(&self, user_id: &str) -> Result<Arc<PeerSet>, Epoch> {
        let mut inner = self.inner.lock();
        match inner.sets.get(user_id) {
            Some(set) => Ok(set.clone()),
            None => Err(Epoch(inner.epoch)),
        }
    }

    /// Keep `set` for `user_id` unless the cache was invalidated since `epoch`.
    pub fn insert(&self, user_id: &str, set: Arc<PeerSet>, epoch: Epoch) {
        let mut inner = self.inner.lock();
        if inner.keep && inner.epoch == epoch.0 {
            inner.sets.insert(user_id.to_owned(), set);
        }
    }

    /// Forget these users' sets, and any set being computed now.
    pub fn invalidate<'a>(&self, users: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.inner.lock();
        inner.epoch += 1;
        for u in users {
            inner.sets.remove(u);
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::Pdu;
    use serde_json::json;

    fn member(room: &str, user: &str, membership: &str) -> Pdu {
        Pdu {
            event_id: format!("${room}{user}{membership}"),
            room_id: room.into(),
            sender: user.into(),
            kind: "m.room.member".into(),
            state_key: Some(user.into()),
            content: json!({ "membership": membership }),
            ..Default::default()
        }
    }

    fn room(id: &str, members: &[(&str, &str)]) -> RoomState {
        RoomState::compact_from_events(members.iter().map(|(u, m)| member(id, u, m)))
    }

    #[test]
    fn peers_are_the_joined_members_of_small_rooms() {
        let a = room("!a:x", &[("@p1:x", "join"), ("@p2:x", "join"), ("@p3:x", "invite")]);
        let b = room("!b:x", &[("@p1:x", "join"), ("@p4:x", "join"), ("@p5:x", "join")]);
        let all = PeerSet::from_rooms([&a, &b], None);
        let mut names: Vec<&str> = all.iter().collect();
        names.sort();
        assert_eq!(names, ["@p1:x", "@p2:x", "@p4:x", "@p5:x"]);
        assert!(all.contains("@p4:x"));
        assert!(!all.contains("@p3:x"), "invited is not joined");
        assert!(!all.contains("@never-seen:x"));
        // Room b (3 joined) is over a limit of 2: only room a counts.
        let small = PeerSet::from_rooms([&a, &b], Some(2));
        assert!(small.contains("@p2:x") && !small.contains("@p4:x"));
        assert_eq!(small.len(), 2);
    }

    #[test]
    fn a_set_computed_across_an_invalidation_is_not_kept() {
        let cache = PeerCache::new(10);
        let Err(epoch) = cache.get("@v:x") else { panic!("empty cache") };
        cache.invalidate(["@someone-else:x"]);
        cache.insert("@v:x", Arc::default(), epoch);
        assert!(cache.get("@v:x").is_err(), "computed before the change, so maybe stale");
        let Err(epoch) = cache.get("@v:x") else { panic!() };
        cache.insert("@v:x", Arc::default(), epoch);
        assert!(cache.get("@v:x").is_ok());
        cache.invalidate(["@v:x"]);
        assert!(cache.get("@v:x").is_err());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = PeerCache::new(2);
        for u in ["@a:x", "@b:x", "@c:x"] {
            let Err(epoch) = cache.get(u) else { panic!() };
            cache.insert(u, Arc::default(), epoch);
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get("@a:x").is_err(), "the least recently used went first");
        let none = PeerCache::new(0);
        let Err(epoch) = none.get("@a:x") else { panic!() };
        none.insert("@a:x", Arc::default(), epoch);
        assert!(none.is_empty());
    }
}
