//! Per-viewer presence inboxes: for each local user, the public presence changes they were
//! told about, so an incremental `/sync` reads the changes meant for its viewer instead of
//! every change on the server (issue #13: with N users each syncing a few times a second,
//! reading the whole change list per sync costs O(N × churn), which grew faster than the
//! deliveries themselves).
//!
//! A public change is `begin`-registered (pending, with its stream position) while the user's
//! entry is locked, before the position completes; once the engine knows who may see the user
//! (`PresenceAccess::viewers_of`, the same set it wakes) it is `deliver`ed into each viewer's
//! inbox. A reader takes the pending changes and its own inbox under one lock, so a change
//! whose position is already covered by a sync token is always in one of the two.
//!
//! An entry is 16 bytes (position, changed user as an index into the inboxes' user table,
//! time in seconds): 10,000 viewers with 100 changed peers each hold a million entries, 41 MB
//! at the earlier 32 bytes (issue #13, heaptrack).
//!
//! Inboxes are bounded ([`MAX_ENTRIES`], [`MAX_AGE_MS`]). When an entry is dropped, the inbox
//! remembers the position below which it is no longer complete (its floor); a sync whose
//! `since` is older than that (a device coming back after a while, a token from before a
//! restart) falls back to the engine's whole change list, as before.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

/// Most changed users one inbox holds (one entry each); older ones are dropped (and the
/// inbox's floor raised).
pub(super) const MAX_ENTRIES: usize = 256;

/// Changes older than this are dropped from an inbox when it is next written or read. Longer
/// than a long-poll (30 s by default) plus a delivery window, so a client syncing in a loop
/// never falls back.
pub(super) const MAX_AGE_MS: i64 = 90_000;

pub(super) struct Inboxes {
    /// `@user:server` ends with this: only local users sync here, so only they get an inbox.
    local_suffix: String,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Public changes whose viewers are not known yet: position -> (time, user).
    pending: BTreeMap<i64, (i64, UserIx)>,
    boxes: HashMap<Arc<str>, Inbox>,
    users: Users,
    /// No inbox is complete for a `since` below this (set at start, and when a pending change
    /// could not be delivered).
    floor: i64,
}

#[derive(Default)]
struct Inbox {
    floor: i64,
    entries: VecDeque<Entry>,
}

/// One changed user in an inbox: 16 bytes.
#[derive(Clone, Copy)]
struct Entry {
    pos: i64,
    user: UserIx,
    /// When the change was delivered, in whole seconds since the Unix epoch ([`seconds`]).
    at: u32,
}

/// A changed user's place in [`Users`].
type UserIx = u32;

/// The ids of the users that changed, each kept once and named in entries by its index: an
/// entry is smaller, and finding a user's older entry in an inbox compares integers. The
/// table grows with the users whose changes had a local viewer (local users, and remote users
/// sharing a room with one), as the interned room-state ids do; it is never pruned.
#[derive(Default)]
struct Users {
    ids: Vec<Arc<str>>,
    index: HashMap<Arc<str>, UserIx>,
}

impl Users {
    fn ix(&mut self, user: &str) -> UserIx {
        if let Some(ix) = self.index.get(user) {
            return *ix;
        }
        // Shares the interned copy room states hold, when there is one.
        let id = crate::rooms::state::interned(user).unwrap_or_else(|| Arc::from(user));
        // Each id is tens of bytes: memory runs out long before 2^32 of them.
        let ix = UserIx::try_from(self.ids.len()).expect("fewer than 2^32 users changed");
        self.ids.push(id.clone());
        self.index.insert(id, ix);
        ix
    }

    fn id(&self, ix: UserIx) -> &str {
        &self.ids[ix as usize]
    }
}

/// `now_ms` in whole seconds since the Unix epoch, as entries keep it (rounded down, so an
/// entry's age is never under-estimated: it may leave up to a second early).
fn seconds(now_ms: i64) -> u32 {
    u32::try_from(now_ms.max(0) / 1000).unwrap_or(u32::MAX)
}

impl Inbox {
    /// Drop entries past the bounds, raising the floor over what was dropped.
    fn trim(&mut self, now: i64) {
        while let Some(front) = self.entries.front() {
            if self.entries.len() <= MAX_ENTRIES && now - i64::from(front.at) * 1000 <= MAX_AGE_MS {
                break;
            }
            self.floor = self.floor.max(front.pos);
            self.entries.pop_front();
        }
    }
}

impl Inboxes {
    /// `server_name`: this server's (inboxes are kept for its users only); `start`: the stream
    /// position when the engine starts (tokens older than it read the whole change list).
    pub(super) fn new(server_name: &str, start: i64) -> Self {
        Self {
            local_suffix: format!(":{server_name}"),
            inner: Mutex::new(Inner {
                pending: BTreeMap::new(),
                boxes: HashMap::new(),
                users: Users::default(),
                floor: start,
            }),
        }
    }

    /// A public change of `user` at `pos`, before `pos` completes; its viewers follow in
    /// [`Self::deliver`] (or [`Self::abandon`]).
    pub(super) fn begin(&self, pos: i64, user: &str, now: i64) {
        let mut inner = self.inner.lock();
        let user = inner.users.ix(user);
        inner.pending.insert(pos, (now, user));
    }

    /// The change at `pos` (registered by [`Self::begin`]) is for these viewers.
    pub(super) fn deliver<'a>(&self, pos: i64, viewers: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.inner.lock();
        let Some((at, user)) = inner.pending.remove(&pos) else { return };
        Self::append(&mut inner, &self.local_suffix, pos, at, user, viewers);
    }

    /// A change whose viewers are known at once (remote users: the viewers are read before).
    pub(super) fn begin_and_deliver<'a>(
        &self,
        pos: i64,
        user: &str,
        now: i64,
        viewers: impl IntoIterator<Item = &'a str>,
    ) {
        let mut inner = self.inner.lock();
        let user = inner.users.ix(user);
        Self::append(&mut inner, &self.local_suffix, pos, now, user, viewers);
    }

    /// The viewers of the change at `pos` could not be found: no inbox is complete past it, so
    /// syncs from before it read the whole change list.
    pub(super) fn abandon(&self, pos: i64) {
        let mut inner = self.inner.lock();
        if inner.pending.remove(&pos).is_some() {
            inner.floor = inner.floor.max(pos);
        }
    }

    fn append<'a>(
        inner: &mut Inner,
        local_suffix: &str,
        pos: i64,
        at: i64,
        user: UserIx,
        viewers: impl IntoIterator<Item = &'a str>,
    ) {
        let entry = Entry { pos, user, at: seconds(at) };
        for viewer in viewers.into_iter().filter(|v| v.ends_with(local_suffix)) {
            let inbox = match inner.boxes.get_mut(viewer) {
                Some(inbox) => inbox,
                // A new inbox is complete from the global floor on: nothing was delivered to
                // this viewer before (inboxes are never removed).
                None => inner.boxes.entry(Arc::from(viewer)).or_default(),
            };
            // One entry per changed user: a newer change replaces the older one (the section
            // shows a user's current presence either way), so a burst of changes by the same
            // few users cannot push other users' changes out.
            if let Some(i) = inbox.entries.iter().position(|e| e.user == user) {
                inbox.entries.remove(i);
            }
            inbox.entries.push_back(entry);
            inbox.trim(at);
        }
    }

    /// The users whose public change in `(since, upto]` may concern `viewer`: what was
    /// delivered to their inbox plus the changes whose viewers are not known yet. `None` when
    /// the inbox is not complete back to `since` (the caller reads the whole change list).
    pub(super) fn read(&self, viewer: &str, since: i64, upto: i64, now: i64) -> Option<Vec<String>> {
        if since >= upto {
            return Some(vec![]);
        }
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let global_floor = inner.floor;
        let mut users: Vec<String> =
            inner.pending.range(since + 1..=upto).map(|(_, (_, u))| inner.users.id(*u).to_owned()).collect();
        let floor = match inner.boxes.get_mut(viewer) {
            Some(inbox) => {
                inbox.trim(now);
                users.extend(
                    inbox
                        .entries
                        .iter()
                        .filter(|e| e.pos > since && e.pos <= upto)
                        .map(|e| inner.users.id(e.user).to_owned()),
                );
                inbox.floor.max(global_floor)
            }
            None => global_floor,
        };
        (since >= floor).then_some(users)
    }

    /// Inboxes kept and entries in them (metrics, tests).
    #[cfg(test)]
    pub(super) fn sizes(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.boxes.len(), inner.boxes.values().map(|b| b.entries.len()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inboxes() -> Inboxes {
        Inboxes::new("hs", 10)
    }

    #[test]
    fn a_delivered_change_reaches_only_its_local_viewers() {
        let i = inboxes();
        i.begin(11, "@bob:hs", 0);
        i.deliver(11, ["@amy:hs", "@zed:other"]);
        assert_eq!(i.read("@amy:hs", 10, 11, 0), Some(vec!["@bob:hs".to_owned()]));
        assert_eq!(i.read("@cat:hs", 10, 11, 0), Some(vec![]));
        assert_eq!(i.sizes(), (1, 1), "no inbox for a remote viewer");
    }

    #[test]
    fn a_pending_change_is_read_by_everyone_until_delivered() {
        let i = inboxes();
        i.begin(11, "@bob:hs", 0);
        assert_eq!(i.read("@cat:hs", 10, 11, 0), Some(vec!["@bob:hs".to_owned()]));
        assert_eq!(i.read("@cat:hs", 11, 11, 0), Some(vec![]), "not before since");
        i.deliver(11, ["@amy:hs"]);
        assert_eq!(i.read("@cat:hs", 10, 11, 0), Some(vec![]));
    }

    #[test]
    fn tokens_from_before_the_start_or_past_the_bounds_fall_back() {
        let i = inboxes();
        assert_eq!(i.read("@amy:hs", 9, 20, 0), None, "older than the start");
        for p in 11..11 + MAX_ENTRIES as i64 + 1 {
            i.begin_and_deliver(p, &format!("@u{p}:hs"), 0, ["@amy:hs"]);
        }
        assert_eq!(i.read("@amy:hs", 10, 10_000, 0), None, "the oldest entry was dropped");
        assert_eq!(i.read("@amy:hs", 11, 10_000, 0).map(|u| u.len()), Some(MAX_ENTRIES));
        assert_eq!(i.read("@amy:hs", 11, 10_000, MAX_AGE_MS + 1), None, "aged out");
    }

    #[test]
    fn a_newer_change_of_the_same_user_replaces_the_older_entry() {
        let i = inboxes();
        for p in 11..11 + 2 * MAX_ENTRIES as i64 {
            i.begin_and_deliver(p, "@bob:hs", 0, ["@amy:hs"]);
        }
        assert_eq!(i.sizes(), (1, 1), "one entry for bob, however often he changes");
        let last = 10 + 2 * MAX_ENTRIES as i64;
        assert_eq!(i.read("@amy:hs", 10, last, 0), Some(vec!["@bob:hs".to_owned()]), "nothing was dropped");
        assert_eq!(i.read("@amy:hs", last, last, 0), Some(vec![]));
    }

    /// Entries name users by index: each id is kept once, and shares the interned copy room
    /// states hold when there is one.
    #[test]
    fn entries_are_small_and_each_user_id_is_kept_once() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        let i = inboxes();
        let carl = crate::rooms::state::intern("@carl:hs");
        for p in 11..11 + 2 * MAX_ENTRIES as i64 {
            i.begin_and_deliver(p, "@carl:hs", 0, ["@amy:hs", "@bea:hs"]);
            i.begin_and_deliver(p + 10_000, "@dan:hs", 0, ["@amy:hs"]);
        }
        assert_eq!(i.sizes(), (2, 3), "one entry each for carl and dan in amy's inbox, carl's in bea's");
        let inner = i.inner.lock();
        assert_eq!(inner.users.ids.len(), 2, "two user ids kept");
        assert!(inner.users.ids.iter().any(|id| Arc::ptr_eq(id, &carl)), "carl's id is the interned copy");
    }

    /// An entry's age is counted in whole seconds, never less than it is.
    #[test]
    fn an_entry_ages_out_by_its_delivery_second() {
        let i = inboxes();
        i.begin_and_deliver(11, "@bob:hs", 1_999, ["@amy:hs"]);
        let at = 1_000; // 1,999 ms kept as second 1
        assert_eq!(i.read("@amy:hs", 10, 11, at + MAX_AGE_MS).map(|u| u.len()), Some(1));
        assert_eq!(i.read("@amy:hs", 10, 11, at + MAX_AGE_MS + 1), None, "aged out");
    }

    #[test]
    fn an_abandoned_change_makes_older_tokens_fall_back() {
        let i = inboxes();
        i.begin(12, "@bob:hs", 0);
        i.abandon(12);
        assert_eq!(i.read("@amy:hs", 11, 12, 0), None);
        assert_eq!(i.read("@amy:hs", 12, 12, 0), Some(vec![]));
    }
}
