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
    pending: BTreeMap<i64, (i64, User)>,
    boxes: HashMap<Arc<str>, Inbox>,
    /// No inbox is complete for a `since` below this (set at start, and when a pending change
    /// could not be delivered).
    floor: i64,
}

#[derive(Default)]
struct Inbox {
    floor: i64,
    entries: VecDeque<Entry>,
}

struct Entry {
    pos: i64,
    at: i64,
    user: Arc<str>,
}

/// A changed user's id, as the interned copy room states share when there is one
/// (`rooms::state::interned`; every local user with a profile room has one): finding the
/// user's older entry in an inbox then compares addresses, not text (issue #13: the text
/// comparisons of 100 viewers × 100 entries per change were a tenth of the delivery cost).
#[derive(Clone)]
struct User {
    id: Arc<str>,
    interned: bool,
}

impl User {
    fn new(user: &str) -> Self {
        match crate::rooms::state::interned(user) {
            Some(id) => Self { id, interned: true },
            None => Self { id: Arc::from(user), interned: false },
        }
    }

    /// Whether `e` is this user's entry. An interned id is one allocation per user, so the
    /// address decides; an entry written before the id was interned is not found, and the
    /// inbox holds the user twice until it ages out (readers see each user once either way).
    fn owns(&self, e: &Entry) -> bool {
        if self.interned {
            Arc::ptr_eq(&self.id, &e.user)
        } else {
            *self.id == *e.user
        }
    }
}

impl Inbox {
    /// Drop entries past the bounds, raising the floor over what was dropped.
    fn trim(&mut self, now: i64) {
        while let Some(front) = self.entries.front() {
            if self.entries.len() <= MAX_ENTRIES && now - front.at <= MAX_AGE_MS {
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
            inner: Mutex::new(Inner { pending: BTreeMap::new(), boxes: HashMap::new(), floor: start }),
        }
    }

    /// A public change of `user` at `pos`, before `pos` completes; its viewers follow in
    /// [`Self::deliver`] (or [`Self::abandon`]).
    pub(super) fn begin(&self, pos: i64, user: &str, now: i64) {
        let user = User::new(user);
        self.inner.lock().pending.insert(pos, (now, user));
    }

    /// The change at `pos` (registered by [`Self::begin`]) is for these viewers.
    pub(super) fn deliver<'a>(&self, pos: i64, viewers: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.inner.lock();
        let Some((at, user)) = inner.pending.remove(&pos) else { return };
        Self::append(&mut inner, &self.local_suffix, pos, at, &user, viewers);
    }

    /// A change whose viewers are known at once (remote users: the viewers are read before).
    pub(super) fn begin_and_deliver<'a>(
        &self,
        pos: i64,
        user: &str,
        now: i64,
        viewers: impl IntoIterator<Item = &'a str>,
    ) {
        let user = User::new(user);
        let mut inner = self.inner.lock();
        Self::append(&mut inner, &self.local_suffix, pos, now, &user, viewers);
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
        user: &User,
        viewers: impl IntoIterator<Item = &'a str>,
    ) {
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
            if let Some(i) = inbox.entries.iter().position(|e| user.owns(e)) {
                inbox.entries.remove(i);
            }
            inbox.entries.push_back(Entry { pos, at, user: user.id.clone() });
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
        let mut inner = self.inner.lock();
        let global_floor = inner.floor;
        let mut users: Vec<String> =
            inner.pending.range(since + 1..=upto).map(|(_, (_, u))| u.id.to_string()).collect();
        let floor = match inner.boxes.get_mut(viewer) {
            Some(inbox) => {
                inbox.trim(now);
                users.extend(
                    inbox.entries.iter().filter(|e| e.pos > since && e.pos <= upto).map(|e| e.user.to_string()),
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

    /// The same with an interned id (as every local user with a profile room has): the older
    /// entry is found by address.
    #[test]
    fn an_interned_user_s_newer_change_replaces_the_older_entry() {
        let i = inboxes();
        let carl = crate::rooms::state::intern("@carl:hs");
        for p in 11..11 + 2 * MAX_ENTRIES as i64 {
            i.begin_and_deliver(p, "@carl:hs", 0, ["@amy:hs"]);
            i.begin_and_deliver(p + 10_000, "@dan:hs", 0, ["@amy:hs"]);
        }
        assert_eq!(i.sizes(), (1, 2), "one entry each for carl (interned) and dan (not)");
        let inner = i.inner.lock();
        let kept = inner.boxes.get("@amy:hs").unwrap();
        assert!(kept.entries.iter().any(|e| Arc::ptr_eq(&e.user, &carl)), "carl's entry shares the interned id");
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
