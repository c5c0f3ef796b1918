//! Per-user wake-ups for long-polling `/sync` (and legacy `/events`). A change wakes only the
//! users who may see it: no thundering herd over every waiting connection.
//!
//! A waiter subscribes *before* it reads state and then awaits the subscription, so a change
//! that lands between the read and the wait is never missed (the classic lost-wakeup race).
//!
//! Wake-ups come in two kinds (README "Presence delivery window"): [`Notifier::wake`] for
//! changes a client must get at once (messages, state, to-device, typing, …) and
//! [`Notifier::wake_presence`] for presence-only changes, which a long-poll may hold for
//! `presence_delivery_window_ms` to answer several of them in one response.
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use tokio::sync::{watch, Notify};

use super::user_ids::{intern_ix, interned_ix, UserIx};

/// One waiting user: the newest positions they were woken for (any change, and the newest
/// change that is not presence-only) and the two ways to wait for them.
///
/// A parked long-poll waits on `any_changed`; a long-poll inside its presence delivery
/// window waits only on `urgent_changed`, so the presence changes that arrive during the
/// window cost an atomic store each and wake nothing (the window's end reads them).
struct Marks {
    any: AtomicI64,
    urgent: AtomicI64,
    any_changed: Notify,
    urgent_changed: Notify,
    /// Every change above this stream position that concerned the user is in `any`,
    /// `urgent` or `counted_before`: see [`Subscription::quiet_since`]. `i64::MAX` where
    /// nobody asked for it.
    from: i64,
    /// The newest position counted in the user's [`Quiet`] record before these marks
    /// existed. Kept apart from `any`, which starts at 0: positions complete out of order,
    /// and a change below this one that completes later must still wake a waiter.
    counted_before: i64,
}

impl Marks {
    fn new(from: i64, counted_before: i64) -> Self {
        Marks {
            any: AtomicI64::new(0),
            urgent: AtomicI64::new(0),
            any_changed: Notify::new(),
            urgent_changed: Notify::new(),
            from,
            counted_before,
        }
    }
}

/// What a user who is not waiting right now was woken for: the newest position of a change
/// that concerned them, counted for every change above `from`. Kept from the end of one
/// long-poll to the start of the next, so the next can tell at once whether anything
/// happened for the user since its token (issue #13: most long-polls find nothing when they
/// start, and the empty answer they built walked all the user's rooms). One per local user
/// who long-polled, like their interned number.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    from: i64,
    last: i64,
}

/// Waiting users by their number (`user_ids`): a presence change wakes a hundred viewers by
/// hashing integers, not text. A user is in `marks` while a subscription of theirs lives, in
/// `quiet` after; the two move under the lock of the user's `marks` shard, so no wake-up
/// falls between them.
#[derive(Default)]
struct Tables {
    marks: DashMap<UserIx, Arc<Marks>, FxBuildHasher>,
    quiet: DashMap<UserIx, Quiet, FxBuildHasher>,
}

type Users = Arc<Tables>;

#[derive(Default)]
pub struct Notifier {
    users: Users,
    /// Set when the server stops: every long-poll answers at once with what it has.
    closing: watch::Sender<bool>,
    /// Waiting users whose marks a change advanced so far (the `seed_sync_wakeups_total`
    /// metric).
    woken: AtomicU64,
    /// Long-polls parked right now, waiting for a wake-up (see [`Notifier::park`]).
    parked: Arc<AtomicU64>,
}

/// Counts one parked long-poll while it lives.
pub struct Parked(Arc<AtomicU64>);

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What woke a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeKind {
    /// Only presence changed (legacy `presence`, profile-room `m.presence`/`m.status`): the
    /// long-poll may wait a little for more.
    Presence,
    /// Anything else: answer now.
    Urgent,
}

/// One wake-up: the stream position of the newest change and whether any change since the
/// previous wake-up was urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    pub pos: i64,
    pub kind: WakeKind,
}

/// A subscription to one user's changes. Dropping the last subscription of a user frees the
/// user's entry, also when the request holding it is cancelled (client gone mid long-poll).
pub struct Subscription {
    marks: Option<Arc<Marks>>,
    users: Users,
    user: UserIx,
    /// The newest positions this subscription has reported.
    seen_any: i64,
    seen_urgent: i64,
}

impl Notifier {
    /// Interns `user_id` (a local user: bounded by the accounts).
    pub fn subscribe(&self, user_id: &str) -> Subscription {
        self.subscribe_from(user_id, i64::MAX)
    }

    /// [`Notifier::subscribe`], counting the changes for the user from stream position
    /// `allocated` on, which the caller reads (`StreamHub::allocated`) before it subscribes:
    /// a change above it completes, and wakes, only after this call. While the user is
    /// counted without a break, [`Subscription::quiet_since`] can answer for any token at or
    /// above the earliest such position.
    pub fn subscribe_from(&self, user_id: &str, allocated: i64) -> Subscription {
        let user = intern_ix(user_id).1;
        let marks = self
            .users
            .marks
            .entry(user)
            .or_insert_with(|| match self.users.quiet.remove(&user) {
                // Counted while nobody waited: the count goes on.
                Some((_, q)) => Arc::new(Marks::new(q.from.min(allocated), q.last)),
                None => Arc::new(Marks::new(allocated, 0)),
            })
            .clone();
        let (seen_any, seen_urgent) = (marks.any.load(Ordering::SeqCst), marks.urgent.load(Ordering::SeqCst));
        Subscription { marks: Some(marks), users: self.users.clone(), user, seen_any, seen_urgent }
    }

    /// Tell `user_ids` that a change at stream position `pos` concerns them and must be
    /// delivered at once.
    pub fn wake<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>, pos: i64) {
        self.send(user_ids, pos, true);
    }

    /// Tell `user_ids` that a presence-only change at `pos` concerns them (a long-poll may
    /// batch it with others for up to the delivery window).
    pub fn wake_presence<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>, pos: i64) {
        self.send(user_ids, pos, false);
    }

    /// [`Notifier::wake_presence`] for users given by number (a change's viewers).
    pub fn wake_presence_ixs(&self, users: impl IntoIterator<Item = UserIx>, pos: i64) {
        self.send_ixs(users, pos, false);
    }

    fn send<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>, pos: i64, urgent: bool) {
        // A user never interned never subscribed (`subscribe` interns).
        self.send_ixs(user_ids.into_iter().filter_map(interned_ix), pos, urgent);
    }

    fn send_ixs(&self, users: impl IntoIterator<Item = UserIx>, pos: i64, urgent: bool) {
        let mut woken = 0;
        for user in users {
            if let Some(marks) = self.users.marks.get(&user) {
                woken += u64::from(advance(&marks, pos, urgent));
                continue;
            }
            // Nobody waits: note the position in the user's quiet record, under the lock a
            // new subscription takes that record under (a subscription that came meanwhile
            // is woken instead).
            match self.users.marks.entry(user) {
                Entry::Occupied(marks) => woken += u64::from(advance(marks.get(), pos, urgent)),
                Entry::Vacant(_held) => {
                    if let Some(mut q) = self.users.quiet.get_mut(&user) {
                        q.last = q.last.max(pos);
                    }
                }
            }
        }
        if woken > 0 {
            self.woken.fetch_add(woken, Ordering::Relaxed);
        }
    }

    /// The server is stopping: end every long-poll now and any that starts later at once.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Notifier::close`] was called (at once if it was already).
    pub async fn closed(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    pub fn wakeups(&self) -> u64 {
        self.woken.load(Ordering::Relaxed)
    }

    pub fn waiting_users(&self) -> usize {
        self.users.marks.len()
    }

    /// Mark a long-poll as parked (it has read everything and now only waits) while the
    /// guard lives: the `seed_sync_parked_long_polls` gauge.
    pub fn park(&self) -> Parked {
        self.parked.fetch_add(1, Ordering::Relaxed);
        Parked(self.parked.clone())
    }

    pub fn parked_polls(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }
}

/// Store `pos` in `marks` and wake its waiters; whether it was news to them.
fn advance(marks: &Marks, pos: i64, urgent: bool) -> bool {
    // Stored before the notifications, so a waiter that registers after them finds the new
    // position when it looks (`Subscription::take`).
    let mut advanced = marks.any.fetch_max(pos, Ordering::SeqCst) < pos;
    // Positions complete out of order: an urgent change below `any` still counts.
    if urgent && marks.urgent.fetch_max(pos, Ordering::SeqCst) < pos {
        advanced = true;
        marks.urgent_changed.notify_waiters();
    }
    if advanced {
        marks.any_changed.notify_waiters();
    }
    advanced
}

impl Subscription {
    fn marks(&self) -> Arc<Marks> {
        self.marks.clone().expect("a subscription holds its marks until dropped")
    }

    /// Whether no change above stream position `since` had concerned the user when this
    /// subscription began: every change for them was counted from at or below `since` on
    /// (see [`Notifier::subscribe_from`]) and none was above it. A `/sync` from `since` would
    /// then find nothing, and can wait at once; a change that completes later wakes it.
    pub fn quiet_since(&self, since: i64) -> bool {
        let (from, before) = self.marks.as_ref().map_or((i64::MAX, i64::MAX), |m| (m.from, m.counted_before));
        from <= since && before <= since && self.seen_any <= since && self.seen_urgent <= since
    }

    /// What changed since the last wake-up this subscription reported, if anything.
    fn take(&mut self, marks: &Marks) -> Option<Wake> {
        let (any, urgent) = (marks.any.load(Ordering::SeqCst), marks.urgent.load(Ordering::SeqCst));
        if any <= self.seen_any && urgent <= self.seen_urgent {
            return None;
        }
        let kind = if urgent > self.seen_urgent { WakeKind::Urgent } else { WakeKind::Presence };
        self.seen_any = self.seen_any.max(any);
        self.seen_urgent = self.seen_urgent.max(urgent);
        Some(Wake { pos: any.max(urgent), kind })
    }

    /// Resolves with the stream position of the change that woke us.
    pub async fn changed(&mut self) -> i64 {
        self.next().await.pos
    }

    /// Resolves with the next wake-up and its kind: `Urgent` if any change since the previous
    /// wake-up (or the subscription) was not presence-only.
    pub async fn next(&mut self) -> Wake {
        let marks = self.marks();
        loop {
            // Registered before looking, so a change between the look and the wait wakes us.
            let notified = marks.any_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(wake) = self.take(&marks) {
                return wake;
            }
            notified.await;
        }
    }

    /// The delivery window: after the presence-only wake-up `first`, wait until `end` or an
    /// urgent change (which ends it at once), then take every change that arrived; returns
    /// the newest position seen. Presence changes during the window do not wake the waiter.
    pub async fn collect_presence(&mut self, first: Wake, end: tokio::time::Instant) -> i64 {
        if first.kind == WakeKind::Urgent {
            return first.pos;
        }
        let marks = self.marks();
        let sleep = tokio::time::sleep_until(end);
        tokio::pin!(sleep);
        loop {
            let notified = marks.urgent_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if marks.urgent.load(Ordering::SeqCst) > self.seen_urgent {
                break;
            }
            tokio::select! {
                _ = notified => {}
                _ = &mut sleep => break,
            }
        }
        self.take(&marks).map_or(first.pos, |w| w.pos.max(first.pos))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.marks.take());
        if let Entry::Occupied(entry) = self.users.marks.entry(self.user) {
            // Only the map holds the marks now: nobody waits for this user any more. The
            // count goes on in their quiet record (under the shard's lock, see `send_ixs`).
            let marks = entry.get();
            if Arc::strong_count(marks) == 1 {
                if marks.from != i64::MAX {
                    let last = marks
                        .any
                        .load(Ordering::SeqCst)
                        .max(marks.urgent.load(Ordering::SeqCst))
                        .max(marks.counted_before);
                    self.users.quiet.insert(self.user, Quiet { from: marks.from, last });
                }
                entry.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn presence_and_urgent_wakes_are_told_apart() {
        let n = Notifier::default();
        let mut sub = n.subscribe("@a:x");
        n.wake_presence(["@a:x"], 5);
        assert_eq!(sub.next().await, Wake { pos: 5, kind: WakeKind::Presence });
        n.wake(["@a:x"], 7);
        n.wake_presence(["@a:x"], 8);
        assert_eq!(sub.next().await, Wake { pos: 8, kind: WakeKind::Urgent });
        // An urgent change completing below the newest position is still urgent.
        n.wake_presence(["@a:x"], 10);
        n.wake(["@a:x"], 9);
        assert_eq!(sub.next().await, Wake { pos: 10, kind: WakeKind::Urgent });
        assert_eq!(n.wakeups(), 5);
    }

    #[tokio::test]
    async fn a_new_subscription_ignores_earlier_wakes_and_frees_the_channel() {
        let n = Notifier::default();
        let first = n.subscribe("@a:x");
        n.wake(["@a:x"], 3);
        let mut sub = n.subscribe("@a:x");
        n.wake_presence(["@a:x"], 4);
        assert_eq!(sub.next().await.kind, WakeKind::Presence);
        drop(first);
        drop(sub);
        assert_eq!(n.waiting_users(), 0);
        // Nobody waits: waking costs nothing and counts nothing.
        n.wake(["@a:x"], 9);
        assert_eq!(n.wakeups(), 2);
    }

    #[tokio::test]
    async fn the_window_collects_presence_until_its_end_or_an_urgent_wake() {
        use std::time::Duration;
        let n = Notifier::default();
        let mut sub = n.subscribe("@a:x");
        n.wake_presence(["@a:x"], 1);
        let first = sub.next().await;
        n.wake_presence(["@a:x"], 2);
        let end = tokio::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(sub.collect_presence(first, end).await, 2);
        assert!(tokio::time::Instant::now() >= end, "the window ran to its end");

        n.wake_presence(["@a:x"], 3);
        let first = sub.next().await;
        n.wake_presence(["@a:x"], 4);
        n.wake(["@a:x"], 5);
        let far = tokio::time::Instant::now() + Duration::from_secs(600);
        let got = tokio::time::timeout(Duration::from_secs(60), sub.collect_presence(first, far)).await;
        assert_eq!(got, Ok(5), "an urgent wake-up ends the window at once");
    }

    /// A waker that counts how often it was woken.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn presence_changes_inside_the_window_wake_nothing_until_its_end() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        use std::time::Duration;
        let n = Notifier::default();
        let mut sub = n.subscribe("@a:x");
        n.wake_presence(["@a:x"], 1);
        let first = sub.next().await;
        let end = tokio::time::Instant::now() + Duration::from_secs(600);
        let counter = Arc::new(Counting(Default::default()));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut window = Box::pin(sub.collect_presence(first, end));
        assert!(window.as_mut().poll(&mut cx).is_pending());
        for pos in 2..=50 {
            n.wake_presence(["@a:x"], pos);
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "49 presence changes woke the window");
        assert_eq!(n.wakeups(), 50, "each change is still counted");
        // An urgent change ends the window at once, with every position that came before it.
        n.wake(["@a:x"], 51);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(window.as_mut().poll(&mut cx), Poll::Ready(51));
        drop(window);
        // Nothing is left over for the next wait.
        let mut next = Box::pin(sub.next());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        n.wake_presence(["@a:x"], 52);
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(Wake { pos: 52, kind: WakeKind::Presence }));
    }

    /// A change's viewers come by number; a name nobody subscribed under wakes nothing and is
    /// not interned by waking.
    #[tokio::test]
    async fn waking_by_number_reaches_the_subscriber_of_that_name() {
        let n = Notifier::default();
        let mut sub = n.subscribe("@num:x");
        let ix = interned_ix("@num:x").expect("subscribing interns the user");
        n.wake_presence_ixs([ix], 4);
        assert_eq!(sub.next().await, Wake { pos: 4, kind: WakeKind::Presence });
        n.wake(["@never-subscribed-anywhere:x"], 5);
        assert_eq!(interned_ix("@never-subscribed-anywhere:x"), None);
        assert_eq!(n.wakeups(), 1);
    }

    /// Between two long-polls nobody waits, yet a change for the user is still counted, so
    /// the next poll knows whether its token is current; only from where counting began.
    #[tokio::test]
    async fn changes_between_long_polls_are_counted_for_the_next_one() {
        let n = Notifier::default();
        let first = n.subscribe_from("@q:x", 5);
        assert!(first.quiet_since(5) && first.quiet_since(9));
        assert!(!first.quiet_since(4), "nothing was counted below 5");
        drop(first);
        assert_eq!(n.waiting_users(), 0, "a quiet record is not a waiting user");
        let second = n.subscribe_from("@q:x", 20);
        assert!(second.quiet_since(5), "counted without a break from 5 on");
        drop(second);
        n.wake_presence(["@q:x"], 7);
        let third = n.subscribe_from("@q:x", 30);
        assert!(!third.quiet_since(6), "the change at 7 came while nobody waited");
        assert!(third.quiet_since(7));
        drop(third);
        n.wake(["@q:x"], 31);
        assert!(!n.subscribe_from("@q:x", 40).quiet_since(30));
        assert_eq!(n.wakeups(), 0, "nobody was waiting to be woken");
        // A subscription that asked for no count answers for no token.
        let plain = n.subscribe("@p:x");
        assert!(!plain.quiet_since(i64::MAX - 1));
        drop(plain);
        // No record was left for @p: counting starts again where the next subscriber says.
        let again = n.subscribe_from("@p:x", 3);
        assert!(!again.quiet_since(2) && again.quiet_since(3));
    }

    /// A change while the user's subscription lives is counted there; the quiet record goes
    /// on from it when the subscription ends.
    #[tokio::test]
    async fn the_count_passes_from_a_subscription_to_the_quiet_record_and_back() {
        let n = Notifier::default();
        let mut sub = n.subscribe_from("@r:x", 2);
        n.wake_presence(["@r:x"], 12);
        assert_eq!(sub.next().await.pos, 12);
        drop(sub);
        let next = n.subscribe_from("@r:x", 50);
        assert!(!next.quiet_since(11) && next.quiet_since(12));
        assert!(!next.quiet_since(1), "counting began at 2");
    }

    /// Positions complete out of order: a change below one counted while nobody waited,
    /// completing only once the next poll waits, still wakes that poll.
    #[tokio::test]
    async fn a_late_change_below_one_counted_between_polls_still_wakes() {
        use std::time::Duration;
        let n = Notifier::default();
        drop(n.subscribe_from("@l:x", 1));
        n.wake_presence(["@l:x"], 20);
        let mut sub = n.subscribe_from("@l:x", 25);
        assert!(!sub.quiet_since(19) && sub.quiet_since(20));
        n.wake(["@l:x"], 18);
        let woke = tokio::time::timeout(Duration::from_secs(5), sub.next()).await;
        assert_eq!(woke, Ok(Wake { pos: 18, kind: WakeKind::Urgent }));
    }

    #[tokio::test]
    async fn a_parked_waiter_is_woken_once_per_change_and_a_second_subscription_too() {
        let n = Notifier::default();
        let mut a = n.subscribe("@a:x");
        let mut b = n.subscribe("@a:x");
        let task = tokio::spawn(async move { (a.next().await, a) });
        tokio::task::yield_now().await;
        n.wake_presence(["@a:x"], 3);
        let (wake, a) = task.await.unwrap();
        assert_eq!(wake, Wake { pos: 3, kind: WakeKind::Presence });
        assert_eq!(b.next().await, Wake { pos: 3, kind: WakeKind::Presence });
        drop(a);
        assert_eq!(n.waiting_users(), 1, "b still waits");
        drop(b);
        assert_eq!(n.waiting_users(), 0);
    }
}
