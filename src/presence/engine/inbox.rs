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
//! An entry is 8 bytes: the position as an offset from its inbox's base, and the changed user
//! as the number of its interned id (`ground::user_ids::intern_ix`, shared with room states and
//! peer sets). 10,000 viewers with 100 changed peers each hold a million entries: 41 MB at the
//! first 32 bytes, 16 MB at 16 (issue #13, heaptrack). Entries carry no time: the inboxes keep
//! one mark per second in which changes were delivered (the highest position delivered then),
//! and an entry ages by its position against those marks.
//!
//! Inboxes are bounded ([`MAX_ENTRIES`], [`MAX_AGE_MS`]). When an entry is dropped, the inbox
//! remembers the position below which it is no longer complete (its floor); a sync whose
//! `since` is older than that (a device coming back after a while, a token from before a
//! restart) falls back to the engine's whole change list, as before.
use std::collections::hash_map::Entry as Slot;
use std::collections::{BTreeMap, VecDeque};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::ground::user_ids::{intern_ix, interned_ix, user_at, UserIx};

/// Most changed users one inbox holds (one entry each); older ones are dropped (and the
/// inbox's floor raised).
pub(super) const MAX_ENTRIES: usize = 256;

/// Changes older than this are dropped from an inbox when it is next written or read. Longer
/// than a long-poll (30 s by default) plus a delivery window, so a client syncing in a loop
/// never falls back.
pub(super) const MAX_AGE_MS: i64 = 90_000;

/// How far below an inbox's first position its base is put, so that changes delivered out of
/// order (a lower position after a higher one) still fit an entry's offset.
const BASE_MARGIN: i64 = 1 << 31;

pub(super) struct Inboxes {
    /// `@user:server` ends with this: only local users sync here, so only they get an inbox.
    local_suffix: String,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Public changes whose viewers are not known yet: position -> (time, user).
    pending: BTreeMap<i64, (i64, UserIx)>,
    /// By the viewer's interned id.
    boxes: FxHashMap<UserIx, Inbox>,
    /// Per second (since the Unix epoch) in which changes were delivered, oldest first: the
    /// highest position delivered in it. Only the last [`MAX_AGE_MS`] are kept.
    marks: VecDeque<(u32, i64)>,
    /// The highest position delivered in a second that is past [`MAX_AGE_MS`]: entries at or
    /// below it are too old.
    aged: i64,
    /// No inbox is complete for a `since` below this (set at start, and when a pending change
    /// could not be delivered).
    floor: i64,
}

struct Inbox {
    floor: i64,
    /// Entry positions are offsets from this.
    base: i64,
    /// In delivery order.
    entries: VecDeque<Entry>,
}

/// One changed user in an inbox: 8 bytes.
#[derive(Clone, Copy)]
struct Entry {
    /// The change's position minus the inbox's base.
    off: u32,
    user: UserIx,
}

/// `now_ms` in whole seconds since the Unix epoch, as marks keep it (rounded down, so an
/// entry's age is never under-estimated: it may leave up to a second early).
fn seconds(now_ms: i64) -> u32 {
    u32::try_from(now_ms.max(0) / 1000).unwrap_or(u32::MAX)
}

impl Inner {
    /// Changes at or below the returned position are older than [`MAX_AGE_MS`] at `now`.
    fn aged_below(&mut self, now: i64) -> i64 {
        while let Some(&(second, pos)) = self.marks.front() {
            if now - i64::from(second) * 1000 <= MAX_AGE_MS {
                break;
            }
            self.aged = self.aged.max(pos);
            self.marks.pop_front();
        }
        self.aged
    }

    /// Changes up to `pos` were delivered at `at`.
    fn mark(&mut self, pos: i64, at: i64) {
        let second = seconds(at);
        match self.marks.back_mut() {
            // A change that began before the last mark's second counts as of that second: it
            // may stay longer than its age, never leave because of this.
            Some((last, top)) if *last >= second => *top = (*top).max(pos),
            _ => self.marks.push_back((second, pos)),
        }
    }
}

impl Inbox {
    /// Empty, and complete from the global floor on (its own floor is below every position).
    fn new() -> Self {
        Self { floor: i64::MIN, base: 0, entries: VecDeque::new() }
    }

    fn pos(&self, e: &Entry) -> i64 {
        self.base + i64::from(e.off)
    }

    /// Drop entries past the bounds, raising the floor over what was dropped.
    fn trim(&mut self, aged: i64) {
        while let Some(front) = self.entries.front() {
            let pos = self.pos(front);
            if self.entries.len() <= MAX_ENTRIES && pos > aged {
                break;
            }
            self.floor = self.floor.max(pos);
            self.entries.pop_front();
        }
    }

    /// The change of `user` at `pos`, replacing the user's older entry.
    fn push(&mut self, pos: i64, user: UserIx) {
        // One entry per changed user: a newer change replaces the older one (the section
        // shows a user's current presence either way), so a burst of changes by the same
        // few users cannot push other users' changes out.
        if let Some(i) = self.entries.iter().position(|e| e.user == user) {
            self.entries.remove(i);
        }
        if self.entries.is_empty() {
            self.base = pos - BASE_MARGIN;
        }
        let off = match u32::try_from(pos - self.base) {
            Ok(off) => off,
            Err(_) => {
                // Over 2^31 positions from the first entry: start again from this one (the
                // dropped entries raise the floor, as any dropped entry does).
                let dropped = self.entries.iter().map(|e| self.pos(e)).max();
                self.floor = self.floor.max(dropped.unwrap_or(i64::MIN));
                self.entries.clear();
                self.base = pos - BASE_MARGIN;
                BASE_MARGIN as u32
            }
        };
        self.entries.push_back(Entry { off, user });
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
                boxes: FxHashMap::default(),
                marks: VecDeque::new(),
                aged: i64::MIN,
                floor: start,
            }),
        }
    }

    /// A public change of `user` at `pos`, before `pos` completes; its viewers follow in
    /// [`Self::deliver`] (or [`Self::abandon`]).
    pub(super) fn begin(&self, pos: i64, user: &str, now: i64) {
        let user = intern_ix(user).1;
        self.inner.lock().pending.insert(pos, (now, user));
    }

    /// The change at `pos` (registered by [`Self::begin`]) is for these viewers.
    pub(super) fn deliver(&self, pos: i64, viewers: impl IntoIterator<Item = UserIx>) {
        let mut inner = self.inner.lock();
        let Some((at, user)) = inner.pending.remove(&pos) else { return };
        Self::append(&mut inner, &self.local_suffix, pos, at, user, viewers);
    }

    /// A change whose viewers are known at once (remote users: the viewers are read before).
    pub(super) fn begin_and_deliver(&self, pos: i64, user: &str, now: i64, viewers: impl IntoIterator<Item = UserIx>) {
        let user = intern_ix(user).1;
        let mut inner = self.inner.lock();
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

    fn append(
        inner: &mut Inner,
        local_suffix: &str,
        pos: i64,
        at: i64,
        user: UserIx,
        viewers: impl IntoIterator<Item = UserIx>,
    ) {
        inner.mark(pos, at);
        let aged = inner.aged_below(at);
        for viewer in viewers {
            // Only local users have an inbox, so a viewer with one is local; the id's text is
            // read only for a viewer without one yet. A new inbox is complete from the global
            // floor on: nothing was delivered to this viewer before (inboxes are never removed).
            let inbox = match inner.boxes.entry(viewer) {
                Slot::Occupied(e) => e.into_mut(),
                Slot::Vacant(e) if user_at(viewer).ends_with(local_suffix) => e.insert(Inbox::new()),
                Slot::Vacant(_) => continue,
            };
            inbox.push(pos, user);
            inbox.trim(aged);
        }
    }

    /// The users (by number) whose public change in `(since, upto]` may concern `viewer`: what was
    /// delivered to their inbox plus the changes whose viewers are not known yet. `None` when
    /// the inbox is not complete back to `since` (the caller reads the whole change list).
    pub(super) fn read(&self, viewer: &str, since: i64, upto: i64, now: i64) -> Option<Vec<UserIx>> {
        if since >= upto {
            return Some(vec![]);
        }
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let global_floor = inner.floor;
        let aged = inner.aged_below(now);
        let mut users: Vec<UserIx> = inner.pending.range(since + 1..=upto).map(|(_, (_, u))| *u).collect();
        let inbox = interned_ix(viewer).and_then(|v| inner.boxes.get_mut(&v));
        let floor = match inbox {
            Some(inbox) => {
                inbox.trim(aged);
                users.extend(inbox.entries.iter().filter_map(|e| {
                    let pos = inbox.pos(e);
                    (pos > since && pos <= upto).then_some(e.user)
                }));
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

    /// `Inboxes::read` with the users by name.
    fn names(i: &Inboxes, viewer: &str, since: i64, upto: i64, now: i64) -> Option<Vec<String>> {
        i.read(viewer, since, upto, now).map(|u| u.into_iter().map(|ix| user_at(ix).to_owned()).collect())
    }

    fn inboxes() -> Inboxes {
        Inboxes::new("hs", 10)
    }

    /// Viewers by number, as the engine hands them over.
    fn ixs<const N: usize>(users: [&str; N]) -> Vec<UserIx> {
        users.iter().map(|u| intern_ix(u).1).collect()
    }

    #[test]
    fn a_delivered_change_reaches_only_its_local_viewers() {
        let i = inboxes();
        i.begin(11, "@bob:hs", 0);
        i.deliver(11, ixs(["@amy:hs", "@zed:other"]));
        assert_eq!(names(&i, "@amy:hs", 10, 11, 0), Some(vec!["@bob:hs".to_owned()]));
        assert_eq!(names(&i, "@cat:hs", 10, 11, 0), Some(vec![]));
        assert_eq!(i.sizes(), (1, 1), "no inbox for a remote viewer");
    }

    #[test]
    fn a_pending_change_is_read_by_everyone_until_delivered() {
        let i = inboxes();
        i.begin(11, "@bob:hs", 0);
        assert_eq!(names(&i, "@cat:hs", 10, 11, 0), Some(vec!["@bob:hs".to_owned()]));
        assert_eq!(names(&i, "@cat:hs", 11, 11, 0), Some(vec![]), "not before since");
        i.deliver(11, ixs(["@amy:hs"]));
        assert_eq!(names(&i, "@cat:hs", 10, 11, 0), Some(vec![]));
    }

    #[test]
    fn tokens_from_before_the_start_or_past_the_bounds_fall_back() {
        let i = inboxes();
        assert_eq!(names(&i, "@amy:hs", 9, 20, 0), None, "older than the start");
        for p in 11..11 + MAX_ENTRIES as i64 + 1 {
            i.begin_and_deliver(p, &format!("@u{p}:hs"), 0, ixs(["@amy:hs"]));
        }
        assert_eq!(names(&i, "@amy:hs", 10, 10_000, 0), None, "the oldest entry was dropped");
        assert_eq!(names(&i, "@amy:hs", 11, 10_000, 0).map(|u| u.len()), Some(MAX_ENTRIES));
        assert_eq!(names(&i, "@amy:hs", 11, 10_000, MAX_AGE_MS + 1), None, "aged out");
    }

    #[test]
    fn a_newer_change_of_the_same_user_replaces_the_older_entry() {
        let i = inboxes();
        for p in 11..11 + 2 * MAX_ENTRIES as i64 {
            i.begin_and_deliver(p, "@bob:hs", 0, ixs(["@amy:hs"]));
        }
        assert_eq!(i.sizes(), (1, 1), "one entry for bob, however often he changes");
        let last = 10 + 2 * MAX_ENTRIES as i64;
        assert_eq!(names(&i, "@amy:hs", 10, last, 0), Some(vec!["@bob:hs".to_owned()]), "nothing was dropped");
        assert_eq!(names(&i, "@amy:hs", last, last, 0), Some(vec![]));
    }

    /// Entries name users by their interned id's number, and positions by an offset.
    #[test]
    fn entries_are_small_and_name_users_by_their_interned_id() {
        assert_eq!(std::mem::size_of::<Entry>(), 8);
        let i = inboxes();
        let (carl, carl_ix) = crate::ground::user_ids::intern_ix("@carl:hs");
        for p in 11..11 + 2 * MAX_ENTRIES as i64 {
            i.begin_and_deliver(p, "@carl:hs", 0, ixs(["@amy:hs", "@bea:hs"]));
            i.begin_and_deliver(p + 10_000, "@dan:hs", 0, ixs(["@amy:hs"]));
        }
        assert_eq!(i.sizes(), (2, 3), "one entry each for carl and dan in amy's inbox, carl's in bea's");
        let inner = i.inner.lock();
        let bea = inner.boxes.get(&interned_ix("@bea:hs").expect("bea interned")).expect("bea's inbox");
        assert_eq!(bea.entries[0].user, carl_ix);
        assert!(std::ptr::eq(user_at(carl_ix), &*carl), "the interned copy, not another");
        assert_eq!(bea.pos(&bea.entries[0]), 10 + 2 * MAX_ENTRIES as i64, "carl's last change");
    }

    /// A change delivered after a later one (out of position order) is kept, and positions
    /// more than 2^31 apart start the inbox again, raising its floor.
    #[test]
    fn positions_out_of_order_or_far_apart_are_kept_or_fall_back() {
        let i = inboxes();
        i.begin_and_deliver(1_000, "@bob:hs", 0, ixs(["@amy:hs"]));
        i.begin_and_deliver(500, "@cat:hs", 0, ixs(["@amy:hs"]));
        let mut got = names(&i, "@amy:hs", 10, 1_000, 0).expect("complete");
        got.sort();
        assert_eq!(got, ["@bob:hs", "@cat:hs"]);
        let far = 1_000 + (1i64 << 32);
        i.begin_and_deliver(far, "@dan:hs", 0, ixs(["@amy:hs"]));
        assert_eq!(names(&i, "@amy:hs", 10, far, 0), None, "bob's and cat's entries were dropped");
        assert_eq!(names(&i, "@amy:hs", 1_000, far, 0), Some(vec!["@dan:hs".to_owned()]));
    }

    /// An entry's age is counted in whole seconds, never less than it is.
    #[test]
    fn an_entry_ages_out_by_its_delivery_second() {
        let i = inboxes();
        i.begin_and_deliver(11, "@bob:hs", 1_999, ixs(["@amy:hs"]));
        let at = 1_000; // 1,999 ms kept as second 1
        assert_eq!(names(&i, "@amy:hs", 10, 11, at + MAX_AGE_MS).map(|u| u.len()), Some(1));
        assert_eq!(names(&i, "@amy:hs", 10, 11, at + MAX_AGE_MS + 1), None, "aged out");
    }

    #[test]
    fn an_abandoned_change_makes_older_tokens_fall_back() {
        let i = inboxes();
        i.begin(12, "@bob:hs", 0);
        i.abandon(12);
        assert_eq!(names(&i, "@amy:hs", 11, 12, 0), None);
        assert_eq!(names(&i, "@amy:hs", 12, 12, 0), Some(vec![]));
    }
}
