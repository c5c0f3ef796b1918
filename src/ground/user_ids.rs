//! User ids numbered once per process (issue #13).
//!
//! Room states, peer sets, presence inboxes and long-poll wake-ups all name users; each keeps
//! the 4-byte number of an interned id ([`UserIx`]) instead of the text or a pointer to it, so
//! the hot paths (a presence change delivered to a hundred viewers and waking them) compare
//! and hash integers. Ground floor: it imports no domain.
use std::sync::{Arc, OnceLock};

/// A user id shared by every room state that names it: a user in 100 rooms costs one
/// allocation, not 100. Interned ids are never freed (accounts are never removed; remote ids
/// only arrive with a membership, bounded by the rooms, or with a presence change a local user
/// may see, i.e. a room peer's or a presence-list grant's; local users are also interned when
/// they wait for wake-ups, `notifier`).
///
/// Each interned id also has a number ([`UserIx`], its place in the order ids were first
/// interned): sets of users built from room states (`rooms::peers`) and the presence inboxes
/// keep 4-byte numbers instead of 16-byte pointers, and compare integers, not text.
pub fn intern_ix(user_id: &str) -> (Arc<str>, UserIx) {
    let ids = user_ids();
    if let Some(found) = ids.index.get(user_id) {
        return (found.key().clone(), *found.value());
    }
    // The entry locks its shard: of two racing callers one numbers the id, the other finds it.
    match ids.index.entry(Arc::from(user_id)) {
        dashmap::Entry::Occupied(e) => (e.key().clone(), *e.get()),
        dashmap::Entry::Vacant(e) => {
            let id = e.key().clone();
            // Each id is tens of bytes: memory runs out long before 2^32 of them.
            let ix = UserIx::try_from(ids.by_ix.push(id.clone())).expect("fewer than 2^32 user ids");
            e.insert(ix);
            (id, ix)
        }
    }
}

/// A user id's number among the interned ids (see [`intern_ix`]).
pub type UserIx = u32;

struct UserIds {
    index: dashmap::DashMap<Arc<str>, UserIx>,
    /// Append-only: an id's number is its place here.
    by_ix: boxcar::Vec<Arc<str>>,
}

fn user_ids() -> &'static UserIds {
    static USER_IDS: OnceLock<UserIds> = OnceLock::new();
    USER_IDS.get_or_init(|| UserIds { index: dashmap::DashMap::new(), by_ix: boxcar::Vec::new() })
}

/// The number of `user_id` if it was interned (none: no room state this process loaded named
/// it, nor a presence change a local user could see). Never interns, so any text may be asked
/// about.
pub fn interned_ix(user_id: &str) -> Option<UserIx> {
    user_ids().index.get(user_id).map(|e| *e.value())
}

/// The user id numbered `ix` (see [`intern_ix`]). Numbers only come from interning, so every
/// number handed out names an id; an unknown one (a bug) reads as the empty id.
pub fn user_at(ix: UserIx) -> &'static str {
    user_ids().by_ix.get(ix as usize).map_or("", |id| &**id)
}
